"""The bodies the service answers with for a batch: one entry per row, exact counts, bounded details.

A batch (``{"records": [...]}``, a CSV upload) is answered in input order with a prediction or the row's
errors, and warnings (broken expectations) alongside. Every count is exact; the detail lists keep the
first error of every failed row, then at most ``MAX_DETAILS`` more in all (``inputs.Details``).
Rows are checked into ``Problem``s; the JSON forms below are made from them only here.
"""
from __future__ import annotations

from collections.abc import Iterable

from tabpipe.schema import Problem, problem_rows, rule_counts
from tabpipe.serving.inputs import Details

MAX_DETAILS = 1000      # row-level detail objects per answer beyond the first error of each failed row
CSV_SUMMARY_HEADERS = ("X-Model-Version", "X-Rows", "X-Scored", "X-Failed", "X-Rows-With-Warnings", "X-Warning-Counts")


def not_an_object(row: int) -> Problem:
    """The problem of a batch item that is not a JSON object (it names no field)."""
    return Problem(None, "type", "is not a JSON object", (row,))


def details_of(problems: Iterable[Problem]) -> list[dict]:
    """The answer's row-level details ``{row, field, rule, message}``: one per row a problem names (row null if none)."""
    return [d for p in problems for d in p.details()]


def _entry_detail(problem: Problem) -> dict:
    """A problem inside its row's entry of a batch answer: ``{field, rule, message}``."""
    return {"field": problem.column, "rule": problem.rule, "message": problem.message}


def _count(problems: list[Problem], counts: dict[str, dict[str, int]]) -> None:
    for p in problems:
        per_rule = counts.setdefault(str(p.column), {})
        per_rule[p.rule] = per_rule.get(p.rule, 0) + 1


def batch_summary(rows: list[tuple], details: Details) -> dict:
    """Exact counts of a JSON batch: rows, scored, failed, rows with warnings, per field and rule.

    ``rows``: per record (checked values or None, error Problems, warning Problems), each problem naming one row."""
    errors: dict[str, dict[str, int]] = {}
    warnings: dict[str, dict[str, int]] = {}
    for _, errs, warns in rows:
        _count(errs, errors)
        _count(warns, warnings)
    failed = sum(1 for _, errs, _ in rows if errs)
    return {"rows": len(rows), "scored": len(rows) - failed, "failed": failed,
            "rows_with_warnings": sum(1 for _, _, warns in rows if warns), "warnings": warnings, "errors": errors,
            "details_truncated": details.truncated}


def batch_answer(rows: list[tuple], scored: dict[int, tuple], reasons: dict[int, dict] | None = None) -> dict:
    """``predictions``: one entry per record, in order — ``{row, prediction, probability, score[, reasons][, warnings]}``
    or ``{row, prediction: null, probability: null, score: null, errors[, warnings]}`` — and the exact ``summary``.
    ``scored``: per scored record (label, calibrated probability, raw score); ``reasons``: per scored row its
    explanation (``Reasons.entries``), when asked for.
    Detail lists are bounded: each failed row keeps its first error, then MAX_DETAILS more in all."""
    details = Details(MAX_DETAILS)
    predictions = []
    for i, (_, errs, warns) in enumerate(rows):
        prediction, probability, score = scored.get(i, (None, None, None))
        entry: dict = {"row": i, "prediction": prediction, "probability": probability, "score": score}
        if reasons is not None and i in reasons:
            entry["reasons"] = reasons[i]
        if errs:
            entry["errors"] = [_entry_detail(p) for p in details.take(errs, first_free=True)]
        if warns:
            kept = details.take(warns)
            if kept:
                entry["warnings"] = [_entry_detail(p) for p in kept]
        predictions.append(entry)
    return {"predictions": predictions, "summary": batch_summary(rows, details)}


def csv_counts(problems: list[Problem], rows: int, scored: int) -> dict:
    """Exact counts of a scored CSV: rows, scored, failed, rows with warnings, per column and rule."""
    return {"rows": rows, "scored": scored, "failed": len(problem_rows(problems, hard=True)),
            "rows_with_warnings": len(problem_rows(problems, hard=False)),
            "warnings": rule_counts(problems, hard=False), "errors": rule_counts(problems, hard=True)}


def problem_details(problems: list[Problem], details: Details) -> list[dict]:
    """At most ``details.budget`` row-level details ``{row, field, rule, message}``, ordered by row."""
    items: list[dict] = []
    for p in problems:
        for row in p.rows[:details.budget + 1]:   # one more than fits: take() then knows it truncated
            items.append({"row": row, "field": p.column, "rule": p.rule, "message": p.message})
    items.sort(key=lambda d: d["row"])
    return details.take(items)

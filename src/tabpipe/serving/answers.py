"""The bodies the service answers with for a batch: one entry per row, exact counts, bounded details.

A batch (``{"records": [...]}``, a CSV upload) is answered in input order with a prediction or the row's
errors, and warnings (broken expectations) alongside. Every count is exact; the detail lists keep the
first error of every failed row, then at most ``MAX_DETAILS`` more in all (``inputs.Details``).
"""
from __future__ import annotations

from tabpipe.schema import Problem, warning_counts
from tabpipe.serving.inputs import Details

MAX_DETAILS = 1000      # row-level detail objects per answer beyond the first error of each failed row
CSV_SUMMARY_HEADERS = ("X-Model-Version", "X-Rows", "X-Scored", "X-Failed", "X-Rows-With-Warnings", "X-Warning-Counts")


def native(value):
    """A NumPy scalar as the Python value JSON can carry; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def detail(problem: dict) -> dict:
    """A record checker's problem as an answer's detail ``{row, field, rule, message}``."""
    return {k: problem[k] for k in ("row", "field", "rule", "message")}


def _count(details: list[dict], counts: dict[str, dict[str, int]]) -> None:
    for d in details:
        per_rule = counts.setdefault(str(d["field"]), {})
        per_rule[d["rule"]] = per_rule.get(d["rule"], 0) + 1


def batch_summary(rows: list[tuple], details: Details) -> dict:
    """Exact counts of a JSON batch: rows, scored, failed, rows with warnings, per field and rule."""
    errors: dict[str, dict[str, int]] = {}
    warnings: dict[str, dict[str, int]] = {}
    for _, errs, warns in rows:
        _count(errs, errors)
        _count(warns, warnings)
    failed = sum(1 for _, errs, _ in rows if errs)
    return {"rows": len(rows), "scored": len(rows) - failed, "failed": failed,
            "rows_with_warnings": sum(1 for _, _, warns in rows if warns), "warnings": warnings, "errors": errors,
            "details_truncated": details.truncated}


def batch_answer(rows: list[tuple], scored: dict[int, tuple]) -> dict:
    """``predictions``: one entry per record, in order — ``{row, prediction, probability[, warnings]}``
    or ``{row, prediction: null, probability: null, errors[, warnings]}`` — and the exact ``summary``.
    Detail lists are bounded: each failed row keeps its first error, then MAX_DETAILS more in all."""
    details = Details(MAX_DETAILS)
    predictions = []
    for i, (_, errs, warns) in enumerate(rows):
        prediction, probability = scored.get(i, (None, None))
        entry: dict = {"row": i, "prediction": prediction, "probability": probability}
        if errs:
            entry["errors"] = [{k: d[k] for k in ("field", "rule", "message")} for d in details.take(errs, first_free=True)]
        if warns:
            kept = details.take(warns)
            if kept:
                entry["warnings"] = [{k: d[k] for k in ("field", "rule", "message")} for d in kept]
        predictions.append(entry)
    return {"predictions": predictions, "summary": batch_summary(rows, details)}


def csv_counts(problems: list[Problem], rows: int, scored: int) -> dict:
    """Exact counts of a scored CSV: rows, scored, failed, rows with warnings, per column and rule."""
    hard = {r for p in problems if p.hard for r in p.rows}
    warned = {r for p in problems if not p.hard for r in p.rows}
    errors: dict[str, dict[str, int]] = {}
    for p in problems:
        if p.hard:
            errors.setdefault(p.column, {})[p.rule] = errors.get(p.column, {}).get(p.rule, 0) + p.count
    return {"rows": rows, "scored": scored, "failed": len(hard), "rows_with_warnings": len(warned),
            "warnings": warning_counts(problems), "errors": errors}


def problem_details(problems: list[Problem], details: Details) -> list[dict]:
    """At most ``details.budget`` row-level details ``{row, field, rule, message}``, ordered by row."""
    items: list[dict] = []
    for p in problems:
        for row in p.rows[:details.budget + 1]:   # one more than fits: take() then knows it truncated
            items.append({"row": row, "field": p.column, "rule": p.rule, "message": p.message})
    items.sort(key=lambda d: d["row"])
    return details.take(items)

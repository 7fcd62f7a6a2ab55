"""A broken rule: ``Problem``, the one shape every schema check reports, and its forms at the edges.

Both checking paths (``coerce_frame`` over a frame, ``RecordChecker`` over one record) produce
``Problem``s. The forms other code shows are made from them here: the service's JSON details,
``validation_report.json``'s ``schema_checks``, the ``{column: {rule: rows}}`` counts monitoring
reads, and the readable lines of errors and logs.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class Problem:
    """A broken rule: ``rows`` are 0-based positions in the checked frame (empty for a missing column).

    ``hard``: the rows cannot be scored (or trained on); otherwise the rule is an expectation and
    the rows are used with a warning.
    """

    column: str
    rule: str
    message: str
    rows: tuple[int, ...] = ()
    hard: bool = True

    @property
    def count(self) -> int:
        """Rows affected (1 when no row is named: the whole column)."""
        return len(self.rows) if self.rows else 1

    @property
    def text(self) -> str:
        """``column (rule): message``, as a scored row's warnings/error and the prediction log show it."""
        return f"{self.column} ({self.rule}): {self.message}"

    def details(self, *, with_hard: bool = False) -> list[dict]:
        """The service's JSON form: one ``{"row", "field", "rule", "message"}`` per row (row None if none);
        ``with_hard`` adds ``"hard"`` (the record scorer's form, which the service splits into errors and warnings)."""
        if with_hard:
            return [{"row": row, "field": self.column, "rule": self.rule, "message": self.message, "hard": self.hard}
                    for row in self.rows or (None,)]
        return [{"row": row, "field": self.column, "rule": self.rule, "message": self.message}
                for row in self.rows or (None,)]


def problem_rows(problems: Iterable[Problem], *, hard: bool) -> set[int]:
    """Positions of the rows that break a hard rule (``hard=True``) or an expectation (``hard=False``)."""
    return {row for p in problems if p.hard == hard for row in p.rows}


def rule_counts(problems: Iterable[Problem], *, hard: bool) -> dict[str, dict[str, int]]:
    """{column: {rule: number of rows}} of the hard rules (``hard=True``) or the expectations broken."""
    counts: dict[str, dict[str, int]] = {}
    for p in problems:
        if p.hard == hard:
            per_rule = counts.setdefault(p.column, {})
            per_rule[p.rule] = per_rule.get(p.rule, 0) + p.count
    return counts


def warning_counts(problems: Iterable[Problem]) -> dict[str, dict[str, int]]:
    """{column: {rule: number of rows}} of the expectations broken (the figures monitoring reads)."""
    return rule_counts(problems, hard=False)


def problems_report(problems: list[Problem], n_rows: int) -> dict:
    """Machine-readable summary: hard problems (``errors``) and expectations (``warnings``), each per
    column with rule, message, count and example row numbers."""
    out: dict = {"rows_checked": n_rows}
    for kind, hard in (("errors", True), ("warnings", False)):
        columns: dict[str, list[dict]] = {}
        for p in problems:
            if p.hard == hard:
                columns.setdefault(p.column, []).append(
                    {"rule": p.rule, "message": p.message, "count": p.count, "example_rows": list(p.rows[:EXAMPLE_ROWS])})
        out[f"rows_with_{kind}"] = len(problem_rows(problems, hard=hard))
        out[kind] = columns
    return out


def summarize(problems: list[Problem], limit: int = 10) -> str:
    """Readable lines such as ``latency_ms: 3 rows is below the minimum 0 (rows 4, 17, 90)``."""
    lines = []
    for p in problems[:limit]:
        rows = f" (rows {', '.join(map(str, p.rows[:EXAMPLE_ROWS]))}{', ...' if p.count > EXAMPLE_ROWS else ''})" if p.rows else ""
        count = f"{p.count} row{'s' if p.count != 1 else ''} " if p.rows else ""
        lines.append(f"  {p.column}: {count}{p.message}{rows}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more problems")
    return "\n".join(lines)

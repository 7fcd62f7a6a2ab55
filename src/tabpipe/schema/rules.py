"""The value rules: one table (``VALUE_RULES``), run by both checking paths so they cannot disagree.

Two strengths of rule. Presence (every feature column/key is there) and type (the value can be read
as its type) are always hard: such a row cannot be scored. Ranges (``min``/``max``), category lists
and ``nullable: false`` are expectations unless listed under the column's ``hard:`` key: a row that
breaks one is still used and the problem is reported as a warning.

``check_value`` runs the table on one value and ``RecordChecker`` on one record (the service's
fast path); ``frame.coerce_frame`` runs it on whole columns, vectorised.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.schema.problems import Problem
from tabpipe.schema.spec import ColumnSpec, Schema
from tabpipe.schema.values import ABSENT, is_missing, parse_value

SHOWN_CATEGORIES = 10


@dataclass(frozen=True)
class ValueRule:
    """One rule on a typed value. ``test(values, spec)`` is true where the rule is broken and takes a
    single typed value or a numpy array of them (never missing ones); ``test=None`` is the rule on
    missing values. ``rule`` is the name used in problems and in a column's ``hard:`` list."""

    rule: str
    applies: Callable[[ColumnSpec], bool]
    test: Callable[[Any, ColumnSpec], Any] | None
    message: Callable[[ColumnSpec], str]


def _unlisted(values: Any, spec: ColumnSpec) -> Any:
    if isinstance(values, np.ndarray):   # hash each row once, test each distinct value once
        codes, distinct = pd.factorize(values)
        listed = set(spec.categories)
        return np.array([v not in listed for v in distinct], dtype=bool)[codes] if len(values) else np.zeros(0, bool)
    return values not in spec.categories


def _infinite(values: Any, spec: ColumnSpec) -> Any:
    return np.isinf(values) if isinstance(values, np.ndarray) else values in (np.inf, -np.inf)


def _fractional(values: Any, spec: ColumnSpec) -> Any:
    return np.mod(values, 1) != 0 if isinstance(values, np.ndarray) else not float(values).is_integer()


def _category_message(spec: ColumnSpec) -> str:
    cats = spec.categories or []
    shown = ", ".join(cats[:SHOWN_CATEGORIES]) + (f", ... ({len(cats)} in all)" if len(cats) > SHOWN_CATEGORIES else "")
    return f"is not one of the {'allowed' if spec.is_hard('category') else 'listed'} categories [{shown}]"


VALUE_RULES: tuple[ValueRule, ...] = (
    ValueRule("type", lambda s: s.type in ("int", "float"), _infinite, lambda s: "is infinite"),
    ValueRule("type", lambda s: s.type == "int", _fractional, lambda s: "is not a whole number (expected int)"),
    ValueRule("range", lambda s: s.type in ("int", "float") and s.min is not None, lambda x, s: x < s.min,
              lambda s: f"is below the minimum {s.min:g}"),
    ValueRule("range", lambda s: s.type in ("int", "float") and s.max is not None, lambda x, s: x > s.max,
              lambda s: f"is above the maximum {s.max:g}"),
    ValueRule("category", lambda s: s.type == "category" and bool(s.categories), _unlisted, _category_message),
    ValueRule("null", lambda s: not s.nullable, None, lambda s: "is missing (column is not nullable)"),
)


def rules_for(spec: ColumnSpec) -> tuple[ValueRule, ...]:
    """The rules of ``VALUE_RULES`` that apply to a column, in table order."""
    return tuple(r for r in VALUE_RULES if r.applies(spec))


def check_value(value: Any, spec: ColumnSpec, rules: tuple[ValueRule, ...] | None = None, *,
                column: str, row: int = 0) -> tuple[Any, list[Problem]]:
    """One raw value of ``column`` (at position ``row``) -> (typed value to score or None, problems).

    The same rules, in the same order, as ``coerce_frame``: a hard problem ends the check (the value
    is None and the row cannot be scored); an expectation is reported and the value kept.
    """
    rules = rules_for(spec) if rules is None else rules
    if is_missing(value):
        return None, [Problem(column, r.rule, r.message(spec), (row,), spec.is_hard(r.rule))
                      for r in rules if r.test is None]
    typed, error = parse_value(value, spec)
    if error:
        return None, [Problem(column, "type", error, (row,))]
    problems: list[Problem] = []
    for r in rules:
        if r.test is not None and r.test(typed, spec):
            hard = spec.is_hard(r.rule)
            problems.append(Problem(column, r.rule, r.message(spec), (row,), hard))
            if hard:
                return None, problems
    return typed, problems


class RecordChecker:
    """``check_value`` over a schema's features for one record (a mapping of field -> raw value).

    A feature key that is absent is a hard ``missing_column`` problem, as an absent column is for
    ``coerce_frame``; a key sent as null (or an empty string) is a missing value."""

    def __init__(self, schema: Schema):
        self.columns = [(name, spec, rules_for(spec)) for name, spec in schema.columns.items() if spec.role == "feature"]

    def __call__(self, record: Any, row: int = 0) -> tuple[list, list[Problem]]:
        """(typed values in feature order, problems naming ``row``, the record's position in its request)."""
        values: list = []
        problems: list[Problem] = []
        for name, spec, rules in self.columns:
            if name not in record:
                problems.append(Problem(name, "missing_column", ABSENT, (row,)))
                values.append(None)
                continue
            value, found = check_value(record[name], spec, rules, column=name, row=row)
            if found:
                problems += found
            values.append(value)
        return values, problems

"""The data contract (`schema.yaml`): what columns exist, their types, ranges and categories.

One ``Schema`` drives three things, so they can never disagree:
validation of training data, the preprocessing built for the model, and validation of rows sent
for prediction (the fitted model carries the schema it was trained with).

Two strengths of rule. Presence (every feature column/key is there) and type (the value can be
read as its type) are always hard: such a row cannot be scored. Ranges (``min``/``max``), category
lists and ``nullable: false`` are expectations unless listed under the column's ``hard:`` key:
a row that breaks one is still used (out of range -> as is, unseen category -> the encoder's unknown
handling, missing -> imputation) and the problem is reported as a warning.

``VALUE_RULES`` is the one table of value rules (rule, test, message). Both checking paths run it:
``coerce_frame`` (whole columns, vectorised: training data, files, CSV uploads) and ``check_value``
(one value: the service's fast path). Reading a raw value as its type is ``parse_value``, also used by
both (on the distinct values of a text column in the batch path).
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, model_validator

from tabpipe.config_base import StrictModel

ColumnType = Literal["int", "float", "bool", "category", "datetime", "string"]
SoftRule = Literal["range", "category", "null"]
NUMERIC_TYPES = ("int", "float", "bool")
TRUE_STRINGS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_STRINGS = {"false", "f", "no", "n", "0", "0.0"}
EXAMPLE_ROWS = 5


class ColumnSpec(StrictModel):
    """One column. ``role: feature`` columns feed the model; ``id``/``ignore`` columns do not.

    ``hard`` lists the expectations (``range``, ``category``, ``null``) that refuse a row instead of
    warning; ``allow_unknown: false`` is the older spelling of ``hard: [category]``.
    """

    type: ColumnType
    role: Literal["feature", "id", "ignore"] = "feature"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    allow_unknown: bool = True
    hard: list[SoftRule] = []
    description: str | None = None
    sensitive: bool = False  # personal data: keyed hash or dropped in prediction logs, reports, run folders

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max only apply to int/float columns, not type {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"categories only apply to type 'category', not {self.type!r}")
        if self.type == "category" and not self.allow_unknown and not self.categories:
            raise ValueError("allow_unknown: false needs a list of categories")
        if self.type == "string" and self.role == "feature":
            raise ValueError("free-text 'string' columns cannot be features: use type 'category' or role 'id'")
        needs = {"range": (self.min is not None or self.max is not None, "min or max"),
                 "category": (bool(self.categories), "a list of categories"),
                 "null": (not self.nullable, "nullable: false")}
        for rule in self.hard:
            if not needs[rule][0]:
                raise ValueError(f"hard: [{rule}] needs {needs[rule][1]}")
        return self

    def __setstate__(self, state: dict) -> None:
        """Unpickling a model saved before a field existed gives that field its default."""
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values:
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)

    def is_hard(self, rule: str) -> bool:
        """Does breaking ``rule`` refuse the row (True) or only warn (False)?"""
        return rule not in ("range", "category", "null") or rule in self.hard or (
            rule == "category" and not self.allow_unknown)


class TargetSpec(StrictModel):
    """The label column and which of its two values is the positive class."""

    name: str
    positive: str | int | float | bool


class Schema(StrictModel):
    target: TargetSpec
    columns: dict[str, ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _target_not_a_column(self) -> Schema:
        if self.target.name in self.columns:
            raise ValueError(f"target {self.target.name!r} must not also be listed under columns")
        if not self.features:
            raise ValueError("no column has role 'feature'")
        return self

    @property
    def features(self) -> list[str]:
        """Names of the model's input columns, in schema order."""
        return [name for name, spec in self.columns.items() if spec.role == "feature"]

    @property
    def sensitive(self) -> frozenset[str]:
        """Names of the ``sensitive: true`` columns (any role)."""
        return frozenset(name for name, spec in self.columns.items() if spec.sensitive)

    def features_of_type(self, *types: str) -> list[str]:
        return [name for name in self.features if self.columns[name].type in types]


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
        return len(self.rows) if self.rows else 1


def load_schema(path: Path) -> Schema:
    """Read and validate ``schema.yaml`` (errors become ConfigError via ``tabpipe.config``)."""
    with open(path) as fh:
        return Schema.model_validate(yaml.safe_load(fh) or {})


# --------------------------------------------------------------------------- reading one value

ABSENT = "is absent from the input (send null or an empty value for a missing value)"
NOT_SINGLE = "is not a single value"
SHOWN_CATEGORIES = 10
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?", re.IGNORECASE | re.ASCII)
_NESTED = (dict, list, tuple, set, np.ndarray)


def type_message(spec: ColumnSpec) -> str:
    """What a value that cannot be read as the column's type is told."""
    return {"int": "is not a number (expected int)", "float": "is not a number (expected float)",
            "bool": "is not a boolean (true/false/yes/no/1/0)", "datetime": "is not a date/time"}.get(spec.type, NOT_SINGLE)


def is_missing(value: Any) -> bool:
    """None, NaN, NaT, pd.NA or a blank string: missing, in every path."""
    if value is None:
        return True
    exact = type(value)
    if exact is float:
        return value != value
    if exact is str:
        return not value.strip()
    if exact is int:
        return False
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (float, np.generic)):
        return bool(pd.isna(value))
    return False


def category_text(value: Any) -> str:
    """A category value as text: whole floats print as ints (3.0 -> '3'), everything else as ``str``."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def parse_value(value: Any, spec: ColumnSpec) -> tuple[Any, str | None]:
    """A non-missing raw value read as the column's type: ``(typed, None)`` or ``(None, type message)``.

    Typed values: float for int/float/bool, a naive UTC ``Timestamp`` for datetime, str otherwise.
    Booleans are not numbers, numbers are not dates, text numbers are ASCII (``1_000``, ``0x10`` fail).
    """
    kind, exact = spec.type, type(value)
    if exact is str and kind in ("category", "string"):     # the common cases first: no isinstance chain
        return value, None
    if (exact is float or exact is int) and kind in ("int", "float"):
        try:
            number = float(value)
        except OverflowError:
            return None, type_message(spec)
        return (None, type_message(spec)) if number != number else (number, None)
    if isinstance(value, _NESTED):
        return None, NOT_SINGLE
    if kind in ("int", "float"):
        if isinstance(value, (bool, np.bool_)):
            return None, type_message(spec)
        if isinstance(value, str):
            text = value.strip()
            return (float(text), None) if _NUMBER.fullmatch(text) else (None, type_message(spec))
        if isinstance(value, numbers.Number):
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                return None, type_message(spec)
            return (None, type_message(spec)) if number != number else (number, None)
        return None, type_message(spec)
    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return float(value), None
        text = str(value).strip().lower()
        if text in TRUE_STRINGS:
            return 1.0, None
        if text in FALSE_STRINGS:
            return 0.0, None
        return None, type_message(spec)
    if kind == "datetime":
        if not isinstance(value, (str, datetime, date, np.datetime64)):
            return None, type_message(spec)
        if isinstance(value, str):
            iso = _iso(value.strip())
            if iso is not None:
                return (iso, None) if _NS_FIRST <= iso <= _NS_LAST else (None, type_message(spec))
        try:
            ts = pd.Timestamp(value.strip() if isinstance(value, str) else value)
            if ts is pd.NaT:
                return None, type_message(spec)
            if ts.tzinfo is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            return ts.as_unit("ns"), None
        except (TypeError, ValueError, OverflowError):
            return None, type_message(spec)
    return category_text(value), None


_NS_FIRST, _NS_LAST = datetime(1677, 9, 22), datetime(2262, 4, 11)   # what datetime64[ns] holds


def _iso(text: str) -> datetime | None:
    """ISO 8601 text through the standard library's fast parser, as naive UTC; None if not ISO
    (then pandas' parser has its turn)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo is not None else parsed


# --------------------------------------------------------------------------- the value rules

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


def check_value(value: Any, spec: ColumnSpec, rules: tuple[ValueRule, ...] | None = None) -> tuple[Any, list[tuple[str, bool, str]]]:
    """One raw value -> (typed value to score or None, [(rule, hard, message)]).

    The same rules, in the same order, as ``coerce_frame``: a hard problem ends the check (the value
    is None and the row cannot be scored); an expectation is reported and the value kept.
    """
    rules = rules_for(spec) if rules is None else rules
    if is_missing(value):
        return None, [(r.rule, spec.is_hard(r.rule), r.message(spec)) for r in rules if r.test is None]
    typed, error = parse_value(value, spec)
    if error:
        return None, [("type", True, error)]
    problems: list[tuple[str, bool, str]] = []
    for r in rules:
        if r.test is not None and r.test(typed, spec):
            hard = spec.is_hard(r.rule)
            problems.append((r.rule, hard, r.message(spec)))
            if hard:
                return None, problems
    return typed, problems


class RecordChecker:
    """``check_value`` over a schema's features for one record (a mapping of field -> raw value).

    A feature key that is absent is a hard ``missing_column`` problem, as an absent column is for
    ``coerce_frame``; a key sent as null (or an empty string) is a missing value."""

    def __init__(self, schema: Schema):
        self.columns = [(name, spec, rules_for(spec)) for name, spec in schema.columns.items() if spec.role == "feature"]

    def __call__(self, record: Any) -> tuple[list, list[tuple[str, str, bool, str]]]:
        """(typed values in feature order, [(field, rule, hard, message)])."""
        values: list = []
        problems: list[tuple[str, str, bool, str]] = []
        for name, spec, rules in self.columns:
            if name not in record:
                problems.append((name, "missing_column", True, ABSENT))
                values.append(None)
                continue
            value, issues = check_value(record[name], spec, rules)
            problems += [(name, rule, hard, message) for rule, hard, message in issues]
            values.append(value)
        return values, problems


# --------------------------------------------------------------------------- whole columns

def _rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(np.flatnonzero(mask).tolist())


def _missing(raw: pd.Series) -> np.ndarray:
    missing = raw.isna().to_numpy().copy()
    if raw.dtype == object:
        missing |= np.fromiter((isinstance(v, str) and not v.strip() for v in raw.to_numpy()), dtype=bool, count=len(raw))
    elif pd.api.types.is_string_dtype(raw):
        missing |= raw.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    return missing


def _parse_objects(items: np.ndarray, spec: ColumnSpec) -> tuple[list, list]:
    """``parse_value`` over raw values: once per distinct value when they are all text."""
    if len(items) and pd.api.types.infer_dtype(items, skipna=False) == "string":
        codes, uniques = pd.factorize(items)
        parsed = [parse_value(v, spec) for v in uniques]
        return [parsed[c][0] for c in codes], [parsed[c][1] for c in codes]
    parsed = [parse_value(v, spec) for v in items]
    return [p[0] for p in parsed], [p[1] for p in parsed]


def _parse_column(raw: pd.Series, spec: ColumnSpec, missing: np.ndarray) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Typed values (float64, datetime64[ns] or object; missing as NaN/NaT) and (type message, mask)s.

    Columns that already hold the type (numeric, datetime, text) are converted in bulk; anything else
    goes value by value through ``parse_value``."""
    kind, n = spec.type, len(raw)
    if kind in ("int", "float") and pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=float, na_value=np.nan), []
    if kind == "bool" and pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=float, na_value=np.nan), []
    if kind == "datetime" and pd.api.types.is_datetime64_any_dtype(raw):
        values = raw.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(raw.dt, "tz", None) is not None else raw
        return values.to_numpy(dtype="datetime64[ns]"), []
    if kind in ("category", "string") and pd.api.types.is_integer_dtype(raw):
        return np.where(missing, np.nan, raw.astype(str).to_numpy(dtype=object)), []
    present = np.flatnonzero(~missing)
    items = raw.to_numpy(dtype=object)[present]
    if kind in ("category", "string") and (pd.api.types.is_string_dtype(raw.dtype) and raw.dtype != object or (
            len(items) and pd.api.types.infer_dtype(items, skipna=False) == "string")):
        out = np.full(n, np.nan, dtype=object)   # text is its own category text
        out[present] = items
        return out, []
    typed, errors = _parse_objects(items, spec)
    failed = np.array([e is not None for e in errors], dtype=bool)
    if kind in ("int", "float", "bool"):
        out = np.full(n, np.nan)
        out[present[~failed]] = np.array([t for t, f in zip(typed, failed) if not f], dtype=float)
    elif kind == "datetime":
        out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        out[present[~failed]] = np.array([t for t, f in zip(typed, failed) if not f], dtype="datetime64[ns]")
    else:
        out = np.full(n, np.nan, dtype=object)
        out[present[~failed]] = [t for t, f in zip(typed, failed) if not f]
    by_message: dict[str, list[int]] = {}
    for pos, error in zip(present[failed], (e for e in errors if e is not None)):
        by_message.setdefault(error, []).append(int(pos))
    issues = []
    for message, rows in by_message.items():
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        issues.append((message, mask))
    return out, issues


def _coerce_column(raw: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, list[tuple[str, bool, str, np.ndarray]]]:
    """Typed column plus (rule, hard, message, row mask) for each broken rule; see ``check_value``."""
    missing = _missing(raw)
    values, type_issues = _parse_column(raw, spec, missing)
    issues = [("type", True, message, mask) for message, mask in type_issues]
    usable = ~missing
    for _, _, _, mask in issues:
        usable &= ~mask
    for r in rules_for(spec):
        if r.test is None:
            mask = missing
        else:
            where = np.flatnonzero(usable)
            mask = np.zeros(len(raw), dtype=bool)
            mask[where[np.asarray(r.test(values[where], spec), dtype=bool)]] = True
        if mask.any():
            hard = spec.is_hard(r.rule)
            issues.append((r.rule, hard, r.message(spec), mask))
            if hard:
                usable &= ~mask
    if spec.type in NUMERIC_TYPES:
        values = np.where(usable | missing, values, np.nan)
    elif spec.type == "datetime":
        values = np.where(usable | missing, values, np.datetime64("NaT"))
    else:
        values = np.where(usable | missing, values, np.nan).astype(object)
        return pd.Series(values, index=raw.index, dtype=object), issues
    return pd.Series(values, index=raw.index), issues


def coerce_frame(df: pd.DataFrame, schema: Schema, *, with_target: bool) -> tuple[pd.DataFrame, list[Problem]]:
    """Type every schema column of ``df`` and collect every broken rule (hard and expectations).

    Returns a new frame with the schema's feature columns (float64 for int/float/bool,
    datetime64 for datetime, object strings for category/string; missing values as NaN/NaT)
    followed by the target column as-is when ``with_target``; extra columns are dropped.
    Columns with role id/ignore are optional and their problems are only warnings. A value that
    breaks a hard rule becomes missing; a value that breaks an expectation is kept as it is.
    """
    out: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for name, spec in schema.columns.items():
        feature = spec.role == "feature"
        if name not in df.columns:
            if feature:
                problems.append(Problem(name, "missing_column", ABSENT))
                out[name] = pd.Series(np.nan, index=df.index, dtype=float if spec.type in NUMERIC_TYPES else object)
            continue
        values, issues = _coerce_column(df[name], spec)
        for rule, hard, message, mask in issues:
            problems.append(Problem(name, rule, message, _rows(mask), hard and feature))
        if feature:
            out[name] = values
    typed = pd.DataFrame(out, index=df.index)
    if with_target:
        problems.extend(target_problems(df, schema))
        if schema.target.name in df.columns:
            typed[schema.target.name] = df[schema.target.name]
    return typed, problems


def absent_columns(columns: Any, schema: Schema) -> list[str]:
    """Feature columns of ``schema`` missing from ``columns`` (a header): such input cannot be scored."""
    present = set(map(str, columns))
    return [name for name in schema.features if name not in present]


def target_problems(df: pd.DataFrame, schema: Schema) -> list[Problem]:
    """The target must exist, have no missing values and exactly two classes incl. the positive one."""
    name = schema.target.name
    if name not in df.columns:
        return [Problem(name, "missing_column", "target column is missing from the data")]
    target = df[name]
    problems = []
    if target.isna().any():
        problems.append(Problem(name, "null", "target value is missing", _rows(target.isna().to_numpy())))
    classes = target.dropna().unique()
    if len(classes) != 2:
        shown = ", ".join(map(repr, sorted(map(str, classes))[:10]))
        problems.append(Problem(name, "classes", f"target must have exactly two classes, found {len(classes)}: {shown}"))
    elif not positive_mask(target.dropna(), schema.target.positive).any():
        problems.append(Problem(name, "classes", f"positive class {schema.target.positive!r} not found in target values"))
    return problems


def positive_mask(target: pd.Series, positive: Any) -> np.ndarray:
    """Boolean array: which target values equal the positive class (numeric-aware: 1 == 1.0 == '1')."""
    text = target.astype(str).str.strip().str.lower()
    if isinstance(positive, bool):  # YAML reads `positive: yes` as True: match yes/true/1 (or no/false/0)
        return text.isin(TRUE_STRINGS if positive else FALSE_STRINGS).to_numpy()
    numeric = pd.to_numeric(target, errors="coerce")
    if numeric.notna().all():
        try:
            return (numeric == float(positive)).to_numpy()
        except (TypeError, ValueError):
            pass
    return (text == str(positive).strip().lower()).to_numpy()


def problems_report(problems: list[Problem], n_rows: int) -> dict:
    """Machine-readable summary: hard problems (``errors``) and expectations (``warnings``), each per
    column with rule, message, count and example row numbers."""
    out: dict = {"rows_checked": n_rows}
    for kind, hard in (("errors", True), ("warnings", False)):
        columns: dict[str, list[dict]] = {}
        rows: set[int] = set()
        for p in problems:
            if p.hard == hard:
                columns.setdefault(p.column, []).append(
                    {"rule": p.rule, "message": p.message, "count": p.count, "example_rows": list(p.rows[:EXAMPLE_ROWS])})
                rows.update(p.rows)
        out[f"rows_with_{kind}"] = len(rows)
        out[kind] = columns
    return out


def warning_counts(problems: list[Problem]) -> dict[str, dict[str, int]]:
    """{column: {rule: number of rows}} of the expectations broken (the figures monitoring reads)."""
    counts: dict[str, dict[str, int]] = {}
    for p in problems:
        if not p.hard:
            per_rule = counts.setdefault(p.column, {})
            per_rule[p.rule] = per_rule.get(p.rule, 0) + p.count
    return counts


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


# --------------------------------------------------------------------------- inference

def infer_schema(df: pd.DataFrame, target: str, *, max_categories: int = 50) -> Schema:
    """Propose a schema from data (for ``tabpipe init``); the user edits it afterwards.

    Rules: numeric -> int/float with widened observed bounds (see ``_widened_range``; integers that
    happen to be 0/1 stay int); real booleans and true/false text -> bool; few distinct strings ->
    category (categories listed, unknowns allowed); many distinct strings or a unique
    integer key -> ``role: id``; parseable dates -> datetime. Positive class = minority class.
    """
    if target not in df.columns:
        raise KeyError(target)
    columns: dict[str, dict] = {}
    n = len(df)
    for name in df.columns:
        if name == target:
            continue
        columns[name] = _infer_column(df[name], n, max_categories)
    counts = df[target].dropna().value_counts()
    positive = counts.index[-1] if len(counts) else 1
    positive = positive.item() if hasattr(positive, "item") else positive
    return Schema.model_validate({"target": {"name": target, "positive": positive}, "columns": columns})


def _widened_range(lo: float, hi: float) -> dict:
    """Plausibility bounds: the observed range padded by half its width on each side, so new data
    may wander but absurd values (unit mix-ups, sentinels like -999) are caught. A column that was
    never negative is never allowed to be (ages, counts, amounts)."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    low = lo - span / 2
    if lo >= 0:
        low = max(low, 0.0)
    return {"min": low, "max": hi + span / 2}  # unrounded: rounding could cut into the observed range


def _infer_column(s: pd.Series, n: int, max_categories: int) -> dict:
    missing = _missing(s)
    spec: dict[str, Any] = {"nullable": bool(missing.any())}
    non_null = s[~missing]
    if pd.api.types.is_bool_dtype(s) or _boolean_values(non_null):
        return {"type": "bool", **spec}
    if pd.api.types.is_numeric_dtype(s):
        is_int = len(non_null) > 0 and bool(np.all(np.mod(non_null.astype(float), 1) == 0))
        if is_int and non_null.nunique() == n and n > 100:
            return {"type": "int", "role": "id", **spec}
        spec["type"] = "int" if is_int else "float"
        if len(non_null):
            spec.update(_widened_range(float(non_null.min()), float(non_null.max())))
        return spec
    if pd.api.types.is_datetime64_any_dtype(s):
        return {"type": "datetime", **spec}
    text = non_null.astype(str)
    if len(text) and text.str.match(r"^\d{4}-\d{2}-\d{2}").mean() > 0.95:
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        if parsed.notna().mean() > 0.95:
            return {"type": "datetime", **spec}
    distinct = text.nunique()
    if distinct > max_categories and distinct > 0.05 * max(n, 1):
        return {"type": "string", "role": "id", **spec}
    cats = sorted({category_text(v) for v in non_null.unique().tolist()})
    return {"type": "category", "categories": cats, "allow_unknown": True, **spec}


def _boolean_values(values: pd.Series) -> bool:
    """Only Python/numpy booleans or the words true/false (any case): a real boolean column."""
    if not len(values) or pd.api.types.is_numeric_dtype(values):
        return False
    distinct = values.unique().tolist()
    return all(isinstance(v, (bool, np.bool_)) for v in distinct) or (
        all(isinstance(v, str) for v in distinct) and {v.strip().lower() for v in distinct} <= {"true", "false"})

"""The data contract (`schema.yaml`): what columns exist, their types, ranges and categories.

One ``Schema`` drives three things, so they can never disagree:
validation of training data, the preprocessing built for the model, and validation of rows sent
for prediction (the fitted model carries the schema it was trained with).

``coerce_frame`` is the single place where raw values (CSV strings, Mongo documents, SQL rows,
JSON) become typed columns; every rule it breaks is returned as a ``Problem`` with row positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, model_validator

from tabpipe.config_base import StrictModel

ColumnType = Literal["int", "float", "bool", "category", "datetime", "string"]
NUMERIC_TYPES = ("int", "float", "bool")
TRUE_STRINGS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_STRINGS = {"false", "f", "no", "n", "0", "0.0"}
EXAMPLE_ROWS = 5


class ColumnSpec(StrictModel):
    """One column. ``role: feature`` columns feed the model; ``id``/``ignore`` columns do not."""

    type: ColumnType
    role: Literal["feature", "id", "ignore"] = "feature"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    allow_unknown: bool = True
    description: str | None = None
    sensitive: bool = False  # personal data: keyed hash or dropped in prediction logs, reports, run folders

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC_TYPES:
            raise ValueError(f"min/max only apply to numeric columns, not type {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"categories only apply to type 'category', not {self.type!r}")
        if self.type == "category" and not self.allow_unknown and not self.categories:
            raise ValueError("allow_unknown: false needs a list of categories")
        if self.type == "string" and self.role == "feature":
            raise ValueError("free-text 'string' columns cannot be features: use type 'category' or role 'id'")
        return self


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

    def features_of_type(self, *types: str) -> list[str]:
        return [name for name in self.features if self.columns[name].type in types]


@dataclass(frozen=True)
class Problem:
    """A broken rule: ``rows`` are 0-based positions in the checked frame (empty for a missing column)."""

    column: str
    rule: str
    message: str
    rows: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return len(self.rows) if self.rows else 1


def load_schema(path: Path) -> Schema:
    """Read and validate ``schema.yaml`` (errors become ConfigError via ``tabpipe.config``)."""
    with open(path) as fh:
        return Schema.model_validate(yaml.safe_load(fh) or {})


# --------------------------------------------------------------------------- coercion

def _rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(mask))


def _category_strings(series: pd.Series) -> pd.Series:
    """Values as strings (missing stays missing); whole floats print as ints: 3.0 -> '3'."""
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if len(whole) and np.all(np.mod(whole, 1) == 0):
            series = series.astype("Int64")
    return series.astype(str).astype(object).where(series.notna().to_numpy(), np.nan)


def _to_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    text = series.astype(object).where(series.notna(), None).map(
        lambda v: None if v is None else str(v).strip().lower()
    )
    return text.map(lambda v: 1.0 if v in TRUE_STRINGS else 0.0 if v in FALSE_STRINGS else np.nan).astype(float)


def _coerce_column(raw: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, list[tuple[str, str, np.ndarray]]]:
    """Typed column plus (rule, message, row-mask) for each broken rule."""
    present = raw.notna().to_numpy()
    issues: list[tuple[str, str, np.ndarray]] = []
    if spec.type in ("int", "float"):
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = present & values.isna().to_numpy()
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            issues.append(("type", "is infinite", infinite))
            values = values.where(~infinite, np.nan)
        if bad.any():
            issues.append(("type", f"is not a number (expected {spec.type})", bad))
        if spec.type == "int":
            frac = values.notna().to_numpy() & (np.mod(values.fillna(0).to_numpy(), 1) != 0)
            if frac.any():
                issues.append(("type", "is not a whole number (expected int)", frac))
    elif spec.type == "bool":
        values = _to_bool(raw)
        bad = present & values.isna().to_numpy()
        if bad.any():
            issues.append(("type", "is not a boolean (true/false/yes/no/1/0)", bad))
    elif spec.type == "datetime":
        values = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
        bad = present & values.isna().to_numpy()
        if bad.any():
            issues.append(("type", "is not a date/time", bad))
    else:  # category / string
        values = _category_strings(raw)
        if spec.type == "category" and not spec.allow_unknown and spec.categories:
            unknown = values.notna().to_numpy() & ~values.isin(spec.categories).to_numpy()
            if unknown.any():
                issues.append(("category", f"is not one of the allowed categories {spec.categories}", unknown))
    if spec.type in NUMERIC_TYPES:
        arr = values.to_numpy()
        if spec.min is not None:
            low = ~np.isnan(arr) & (arr < spec.min)
            if low.any():
                issues.append(("range", f"is below the minimum {spec.min:g}", low))
        if spec.max is not None:
            high = ~np.isnan(arr) & (arr > spec.max)
            if high.any():
                issues.append(("range", f"is above the maximum {spec.max:g}", high))
    if not spec.nullable:
        missing = ~present
        if missing.any():
            issues.append(("null", "is missing (column is not nullable)", missing))
    return values, issues


def coerce_frame(df: pd.DataFrame, schema: Schema, *, with_target: bool) -> tuple[pd.DataFrame, list[Problem]]:
    """Type every schema column of ``df`` and collect every broken rule.

    Returns a new frame with the schema's feature columns (float64 for int/float/bool,
    datetime64 for datetime, object strings for category/string; missing values as NaN/NaT)
    followed by the target column as-is when ``with_target``; extra columns are dropped.
    Columns with role id/ignore are optional. A value that breaks a rule becomes missing.
    """
    out: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for name, spec in schema.columns.items():
        if name not in df.columns:
            if spec.role == "feature":
                problems.append(Problem(name, "missing_column", "column is missing from the data"))
                out[name] = pd.Series(np.nan, index=df.index, dtype=float if spec.type in NUMERIC_TYPES else object)
            continue
        values, issues = _coerce_column(df[name], spec)
        for rule, message, mask in issues:
            problems.append(Problem(name, rule, message, _rows(mask)))
            if rule != "null":
                values = values.where(~mask)
        if spec.role == "feature":
            out[name] = values
    typed = pd.DataFrame(out, index=df.index)
    if with_target:
        problems.extend(target_problems(df, schema))
        if schema.target.name in df.columns:
            typed[schema.target.name] = df[schema.target.name]
    return typed, problems


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
    """Machine-readable summary: per column, per rule, count and example row numbers."""
    columns: dict[str, list[dict]] = {}
    bad_rows: set[int] = set()
    for p in problems:
        columns.setdefault(p.column, []).append(
            {"rule": p.rule, "message": p.message, "count": p.count, "example_rows": list(p.rows[:EXAMPLE_ROWS])}
        )
        bad_rows.update(p.rows)
    return {"rows_checked": n_rows, "rows_with_problems": len(bad_rows), "columns": columns}


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

    Rules: numeric -> int/float with widened observed bounds (see ``_widened_range``), only 0/1 ->
    bool; few distinct strings ->
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
    spec: dict[str, Any] = {"nullable": bool(s.isna().any())}
    non_null = s.dropna()
    if pd.api.types.is_bool_dtype(s):
        return {"type": "bool", **spec}
    if pd.api.types.is_numeric_dtype(s):
        is_int = len(non_null) > 0 and bool(np.all(np.mod(non_null.astype(float), 1) == 0))
        if is_int and set(non_null.unique().tolist()) <= {0, 1}:
            return {"type": "bool", **spec}
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
    cats = sorted(_category_strings(non_null).unique().tolist())
    return {"type": "category", "categories": cats, "allow_unknown": True, **spec}

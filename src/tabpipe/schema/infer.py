"""A schema proposed from a sample of data, for ``tabpipe init`` (the user edits it afterwards)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabpipe.schema.spec import Schema
from tabpipe.schema.values import category_text, missing_mask


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
    missing = missing_mask(s)
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

"""Whole frames against the schema: typed columns and every broken rule, vectorised.

``coerce_frame`` is the batch path (training data, files, CSV uploads): it runs ``VALUE_RULES`` on
whole columns and reads values with ``parse_value`` (once per distinct text), so each row gets what
``RecordChecker`` says for that value. The target's own checks and ``positive_mask`` live here too.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabpipe.schema.problems import Problem
from tabpipe.schema.rules import rules_for
from tabpipe.schema.spec import NUMERIC_TYPES, ColumnSpec, Schema
from tabpipe.schema.values import ABSENT, FALSE_STRINGS, TRUE_STRINGS, missing_mask, parse_value


def _rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(np.flatnonzero(mask).tolist())


# a decimal number as text, nothing around it: what ``parse_value`` reads with ``float`` (a subset of its
# ``_NUMBER``: no blanks to strip, no inf), tested by Arrow on a whole column at once
_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


def _plain_numbers(items: np.ndarray) -> np.ndarray | None:
    """``items`` (text) as float64 when every one is a plain decimal number (text from a message or a form),
    converted in one pass (numpy calls ``float`` on each, as ``parse_value`` does); None otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(items, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if text.null_count or not pc.all(pc.match_substring_regex(text, _PLAIN_NUMBER)).as_py():
        return None
    return items.astype(np.float64)


def _parse_objects(items: np.ndarray, spec: ColumnSpec) -> tuple[np.ndarray, list, list]:
    """``parse_value`` over raw values, once per distinct value when they are all text:
    (per item the index of its value, per value its typed form, per value its error or None)."""
    if len(items) and pd.api.types.infer_dtype(items, skipna=False) == "string":
        codes, uniques = pd.factorize(items)
    else:
        codes, uniques = np.arange(len(items)), items
    parsed = [parse_value(v, spec) for v in uniques]
    return codes, [p[0] for p in parsed], [p[1] for p in parsed]


def _parse_column(raw: pd.Series, spec: ColumnSpec, missing: np.ndarray) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Typed values (float64, datetime64[ns] or object; missing as NaN/NaT) and {type message: rows}.

    Columns that already hold the type (numeric, datetime, text) are converted in bulk; anything else
    goes value by value through ``parse_value``."""
    kind, n = spec.type, len(raw)
    if kind in ("int", "float") and pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=float, na_value=np.nan), {}
    if kind == "bool" and pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=float, na_value=np.nan), {}
    if kind == "datetime" and pd.api.types.is_datetime64_any_dtype(raw):
        values = raw.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(raw.dt, "tz", None) is not None else raw
        return values.to_numpy(dtype="datetime64[ns]"), {}
    if kind in ("category", "string") and pd.api.types.is_integer_dtype(raw):
        return np.where(missing, np.nan, raw.astype(str).to_numpy(dtype=object)), {}
    present = np.flatnonzero(~missing)
    items = raw.to_numpy(dtype=object)[present]
    if kind in ("category", "string") and (pd.api.types.is_string_dtype(raw.dtype) and raw.dtype != object or (
            len(items) and pd.api.types.infer_dtype(items, skipna=False) == "string")):
        out = np.full(n, np.nan, dtype=object)   # text is its own category text
        out[present] = items
        return out, {}
    if kind in ("int", "float") and len(items) and type(items[0]) is str:
        numbers = _plain_numbers(items)
        if numbers is not None:
            out = np.full(n, np.nan)
            out[present] = numbers
            return out, {}
    codes, typed, errors = _parse_objects(items, spec)
    bad = np.array([e is not None for e in errors], dtype=bool)
    failed = bad[codes]
    if kind in ("int", "float", "bool"):
        values = np.array([np.nan if e else t for t, e in zip(typed, bad)], dtype=float)
        out = np.full(n, np.nan)
    elif kind == "datetime":
        values = np.array([np.datetime64("NaT") if e else t for t, e in zip(typed, bad)], dtype="datetime64[ns]")
        out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    else:
        values = np.empty(len(typed), dtype=object)
        values[:] = [np.nan if e else t for t, e in zip(typed, bad)]
        out = np.full(n, np.nan, dtype=object)
    out[present] = values[codes]                 # one conversion per distinct value, then a gather
    by_message: dict[str, list[int]] = {}
    for pos, code in zip(present[failed].tolist(), codes[failed].tolist()):
        by_message.setdefault(errors[code], []).append(int(pos))
    return out, by_message


def _text_categories(raw: pd.Series) -> bool:
    """Whether ``raw`` is a pandas Categorical of text (e.g. a dictionary column read from Parquet)."""
    if not isinstance(raw.dtype, pd.CategoricalDtype):
        return False
    categories = raw.cat.categories
    return len(categories) == 0 or pd.api.types.infer_dtype(categories, skipna=False) == "string"


def _parse_categorical(raw: pd.Series, spec: ColumnSpec) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    """``missing_mask`` and ``_parse_column`` of a Categorical of text, done once per category and gathered by
    the codes: each row gets exactly what its text alone would get (as a text column): (missing, typed values,
    {type message: rows})."""
    codes = raw.cat.codes.to_numpy()
    categories = pd.Series(raw.cat.categories.astype(str))    # one row per distinct text
    cat_missing = missing_mask(categories)
    cat_values, cat_errors = _parse_column(categories, spec, cat_missing)
    absent = codes < 0
    safe = np.where(absent, 0, codes)
    missing = absent | (cat_missing[safe] if len(categories) else True)
    if len(categories):
        values = cat_values[safe]
    else:
        values = np.empty(len(raw), dtype=cat_values.dtype)
    if values.dtype.kind == "M":
        values[absent] = np.datetime64("NaT")
    else:
        values[absent] = np.nan
    errors = {message: np.flatnonzero(np.isin(codes, rows)).tolist() for message, rows in cat_errors.items()}
    return missing, values, errors


def _coerce_column(raw: pd.Series, spec: ColumnSpec, name: str, feature: bool,
                   categorical: bool = False) -> tuple[pd.Series, list[Problem]]:
    """Typed column plus its problems (hard only for a feature); the rules of ``check_value``, vectorised.
    A Categorical of text is read once per category (``_parse_categorical``); with ``categorical``, its typed
    text column stays a Categorical (see ``coerce_frame``)."""
    text_categories = _text_categories(raw)
    if text_categories:
        missing, values, type_errors = _parse_categorical(raw, spec)
    else:
        missing = missing_mask(raw)
        values, type_errors = _parse_column(raw, spec, missing)
    problems = [Problem(name, "type", message, tuple(rows), feature) for message, rows in type_errors.items()]
    usable = ~missing
    for rows in type_errors.values():
        usable[rows] = False
    for r in rules_for(spec):
        if r.test is None:
            mask = missing
        else:
            where = np.flatnonzero(usable)
            mask = np.zeros(len(raw), dtype=bool)
            mask[where[np.asarray(r.test(values[where], spec), dtype=bool)]] = True
        if mask.any():
            hard = spec.is_hard(r.rule)
            problems.append(Problem(name, r.rule, r.message(spec), _rows(mask), hard and feature))
            if hard:
                usable &= ~mask
    if spec.type in NUMERIC_TYPES:
        values = np.where(usable | missing, values, np.nan)
    elif spec.type == "datetime":
        values = np.where(usable | missing, values, np.datetime64("NaT"))
    elif categorical and text_categories:     # a usable row keeps its category's text, any other is missing
        codes = np.where(usable, raw.cat.codes.to_numpy(), -1)
        return pd.Series(pd.Categorical.from_codes(codes, dtype=raw.dtype), index=raw.index), problems
    else:
        values = np.where(usable | missing, values, np.nan).astype(object)
        return pd.Series(values, index=raw.index, dtype=object), problems
    return pd.Series(values, index=raw.index), problems


def coerce_frame(df: pd.DataFrame, schema: Schema, *, with_target: bool,
                 categorical: bool = False) -> tuple[pd.DataFrame, list[Problem]]:
    """Type every schema column of ``df`` and collect every broken rule (hard and expectations).

    Returns a new frame with the schema's feature columns (float64 for int/float/bool,
    datetime64 for datetime, object strings for category/string; missing values as NaN/NaT)
    followed by the target column as-is when ``with_target``; extra columns are dropped.
    Columns with role id/ignore are optional and their problems are only warnings. A value that
    breaks a hard rule becomes missing; a value that breaks an expectation is kept as it is.
    ``categorical``: a category/string column given as a pandas Categorical of text is returned as a
    Categorical of the same values (missing where the object column has NaN), not object strings: for
    callers that count values (monitoring), not for the model's preprocessor.
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
        values, found = _coerce_column(df[name], spec, name, feature, categorical)
        problems += found
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

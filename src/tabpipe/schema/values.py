"""Reading one raw value as its column's type; what counts as missing.

``parse_value`` is the one reader: the record path calls it per value, the batch path per distinct
value of a column it cannot convert in bulk. Missing (None, NaN, NaT, pd.NA, blank text) is decided
by ``is_missing`` for one value and ``missing_mask`` for a column, alike.
"""
from __future__ import annotations

import numbers
import re
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.schema.spec import ColumnSpec

TRUE_STRINGS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_STRINGS = {"false", "f", "no", "n", "0", "0.0"}
ABSENT = "is absent from the input (send null or an empty value for a missing value)"
NOT_SINGLE = "is not a single value"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?", re.IGNORECASE | re.ASCII)
_NESTED = (dict, list, tuple, set, np.ndarray)
_NS_FIRST, _NS_LAST = datetime(1677, 9, 22), datetime(2262, 4, 11)   # what datetime64[ns] holds


_TYPE_MESSAGES = {"int": "is not a number (expected int)", "float": "is not a number (expected float)",
                  "bool": "is not a boolean (true/false/yes/no/1/0)", "datetime": "is not a date/time"}


def type_message(spec: ColumnSpec) -> str:
    """What a value that cannot be read as the column's type is told."""
    return _TYPE_MESSAGES.get(spec.type, NOT_SINGLE)


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


def missing_mask(raw: pd.Series) -> np.ndarray:
    """(n,) bool: ``is_missing`` over a column, vectorised."""
    missing = raw.isna().to_numpy().copy()
    if raw.dtype == object:
        missing |= np.fromiter((isinstance(v, str) and not v.strip() for v in raw.to_numpy()), dtype=bool, count=len(raw))
    elif getattr(raw.dtype, "storage", None) == "pyarrow" and pd.api.types.is_string_dtype(raw):
        import pyarrow as pa
        import pyarrow.compute as pc

        # what ``raw.str.strip().eq("")`` computes for Arrow-backed text (the same kernel), without two Series
        blank = pc.equal(pc.utf8_trim_whitespace(pa.array(raw.array)), "")
        missing |= blank.fill_null(False).to_numpy(zero_copy_only=False)
    elif pd.api.types.is_string_dtype(raw):
        missing |= raw.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    return missing


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


def _iso(text: str) -> datetime | None:
    """ISO 8601 text through the standard library's fast parser, as naive UTC; None if not ISO
    (then pandas' parser has its turn)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo is not None else parsed

"""Values as JSON can carry them (``to_json_ready``): NumPy and pandas values, times, paths, dataclasses.

NaN and ±inf are where callers differ, so they are parameters: strict JSON files (``monitor.json``)
write both as null, the prediction log keeps ±inf as sent, registry metadata keeps both (and refuses
values of any other type: ``strict``).
"""
from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import PurePath
from typing import Any

import numpy as np


def to_json_ready(value: Any, *, nan_as_null: bool = True, inf_as_null: bool = True, strict: bool = False) -> Any:
    """``value`` as dicts (str keys), lists, str, int, float, bool and None, recursively.

    NumPy scalars and arrays (pandas Series too) become Python values and lists; datetimes, dates and
    times (pandas Timestamps too) their ISO text, NaT/NA None; paths their text; dataclasses dicts.
    NaN becomes None unless ``nan_as_null`` is off, ±inf unless ``inf_as_null`` is off. Any other value
    becomes its ``str``, or raises TypeError when ``strict`` (usable as ``json.dumps(default=...)``).
    """
    if isinstance(value, np.generic):                     # a NumPy scalar: its Python value first
        if isinstance(value, np.datetime64):
            import pandas as pd
            value = pd.Timestamp(value)
        else:
            value = value.item()
    if value is None or isinstance(value, (str, int)):   # bool is an int
        return value
    if isinstance(value, float):
        value = float(value)                              # a float subclass (NumPy's float64) as a plain one
        if math.isfinite(value):
            return value
        if value != value:
            return None if nan_as_null else value
        return None if inf_as_null else value
    again = {"nan_as_null": nan_as_null, "inf_as_null": inf_as_null, "strict": strict}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(v, **again) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json_ready(v, **again) for k, v in value.items()}
    if hasattr(value, "tolist"):                          # NumPy arrays, pandas Series and Index
        return to_json_ready(value.tolist(), **again)
    pd = sys.modules.get("pandas")                        # NaT and NA exist only once pandas is imported
    if pd is not None and (value is pd.NaT or value is pd.NA):
        return None
    if isinstance(value, (dt.date, dt.time)):             # datetime and pandas Timestamp are dates
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return to_json_ready(asdict(value), **again)
    if strict:
        raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable")
    return str(value)

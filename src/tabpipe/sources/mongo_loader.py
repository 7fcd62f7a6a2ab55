"""The data helper that writes a DataFrame into a MongoDB collection (``tabpipe data push-mongo``).

Kept apart from the reader: training only ever reads. The URI is passed in by the caller.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.errors import DataError
from tabpipe.sources.base import mongo_location, scrub
from tabpipe.sources.mongodb import default_client_factory, mongo_errors

# every wait of a write bounded, as for reads
_CLIENT_OPTIONS = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, "socketTimeoutMS": 120_000}


def push_to_mongo(df: pd.DataFrame, uri: str, database: str, collection: str, *,
                  batch_size: int = 10_000, replace: bool = False,
                  client_factory: Callable | None = None) -> int:
    """Insert the rows of ``df`` as documents into ``database.collection``; return rows inserted.

    Missing values (NaN, NaT, NA) are stored as null, numpy scalars as Python numbers and
    Timestamps as ``datetime``. ``replace=True`` drops the collection first. Inserts are
    unordered ``insert_many`` calls of ``batch_size`` documents.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be > 0")
    factory = client_factory or default_client_factory()
    _, any_mongo_error = mongo_errors()
    try:
        return _insert_frame(factory(uri, **_CLIENT_OPTIONS), df, database, collection, batch_size, replace)
    except (any_mongo_error, ValueError, TypeError) as exc:
        text = scrub(str(exc), uri).strip()
        first = text.splitlines()[0][:300] if text else ""
        raise DataError(f"MongoDB write to {database}.{collection} at {mongo_location(uri)} failed: "
                        f"{type(exc).__name__}: {first}") from None


def _insert_frame(client: Any, df: pd.DataFrame, database: str, collection: str,
                  batch_size: int, replace: bool) -> int:
    """Drop (if asked) then fill the collection batch by batch; close the client."""
    try:
        coll = client[database][collection]
        if replace:
            coll.drop()
        inserted = 0
        for batch in _batches(_frame_to_documents(df), batch_size):
            inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
        return inserted
    finally:
        client.close()


def _batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Yield lists of at most ``size`` items."""
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _frame_to_documents(df: pd.DataFrame) -> Iterator[dict]:
    """Yield one BSON-ready dict per row (string keys, Python values, None for missing)."""
    keys = [str(column) for column in df.columns]
    columns = [_column_values(df.iloc[:, i]) for i in range(df.shape[1])]
    for row in zip(*columns):
        yield dict(zip(keys, row))


def _column_values(series: pd.Series) -> list:
    """Convert one column to a list of plain Python values (vectorised for numbers and datetimes)."""
    if series.dtype.kind == "M":  # datetime64[*] and datetime64[*, tz]
        values = pd.DatetimeIndex(series).to_pydatetime().tolist()
    elif series.dtype.kind in "biuf" and isinstance(series.dtype, np.dtype):
        values = series.to_numpy().tolist()
    else:
        return [_python_value(v) for v in series.tolist()]
    missing = series.isna().to_numpy()
    return [None if gone else v for v, gone in zip(values, missing)] if missing.any() else values


def _python_value(value: Any) -> Any:
    """Return ``value`` as something BSON can store: None for missing, builtins for numpy/pandas."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)  # BSON has no date-only type
    if isinstance(value, Mapping):
        return {str(k): _python_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_python_value(v) for v in value]
    return value

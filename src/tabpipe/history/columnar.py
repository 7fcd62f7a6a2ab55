"""The columnar prediction log's files: logged rows as Parquet, one file per (hour, model version) of a write.

A file holds the log columns (``META``) and one column per logged input, ``inputs.<name>``, typed by
Arrow from the values (a column whose values do not share a type is kept as their JSON text). Files
live in hour partitions, ``<log folder>/hour=YYYY-MM-DDTHH/<version>-<uuid>.parquet``, written to a
temporary name and renamed, so a file either exists whole or not at all; the history store indexes
each (``log_files``) and reads only the files of a window. Rows are sorted by ``logged_at`` in a file
one write made; a file merged by compaction (``compaction.py``) holds its files' rows one file after
another, in the index's order.
Design notes: docs/monitoring_store.md#the-columnar-log
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tabpipe.jsonable import to_json_ready

INPUT = "inputs."                     # prefix of the input columns in a file
META = pa.schema([("request_id", pa.string()), ("row_index", pa.int64()), ("row_id", pa.string()),
                  ("logged_at", pa.timestamp("us")), ("model_version", pa.string()),
                  ("probability", pa.float64()), ("prediction", pa.string()), ("warnings", pa.string())])
ROW_GROUP_ROWS = 128 * 1024
COMPRESSION = "snappy"   # reads ~1.8x faster than zstd for ~6 % more bytes (logged scores and numbers barely
                         # compress); Parquet's default, which every Parquet reader knows


@dataclass(frozen=True)
class WrittenFile:
    """One file written: its path relative to the log folder and what the index keeps of it (the index
    keeps the absolute path, so every process reading the store finds the file)."""

    path: str
    hour: datetime
    model_version: str
    rows: int
    first_logged_at: datetime
    last_logged_at: datetime


def _input_column(values: list[Any]) -> pa.Array:
    """One input column: Arrow's inferred type (NaN as null), or text when the values do not share a number,
    bool or string type (``_text``: times as ISO text, as the SQL log's JSON has them)."""
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None and any(check(array.type) for check in _PLAIN_TYPES):
        return array
    return pa.array([_text(v) for v in values], pa.string())


def _text(value: Any) -> str | None:
    """A value as text the way the SQL log keeps it: JSON-ready (times as ISO text); a string as it is,
    anything else as its JSON."""
    ready = to_json_ready(value, inf_as_null=False)
    return ready if ready is None or isinstance(ready, str) else json.dumps(ready)


_PLAIN_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
                pa.types.is_null)


def log_table(columns: Mapping[str, Sequence], inputs: Mapping[str, Sequence]) -> pa.Table:
    """A log table from the ``META`` columns (``logged_at`` naive UTC) and the input columns (``{name: values}``,
    None where a row lacks the value), sorted by model version, then ``logged_at`` (stable): every (hour,
    version) partition is then one run of rows."""
    arrays = [pa.array(columns[field.name], field.type) for field in META]
    names = [field.name for field in META]
    for name, values in inputs.items():
        arrays.append(values if isinstance(values, pa.Array) else
                      _input_column(values if isinstance(values, np.ndarray) else list(values)))
        names.append(INPUT + name)
    table = pa.Table.from_arrays(arrays, names=names)
    order = pc.sort_indices(table, [("model_version", "ascending"), ("logged_at", "ascending")])
    return table.take(order)


def rows_table(rows: Sequence[Mapping[str, Any]], *, row_id, logged_at, number, text) -> pa.Table:
    """``HistoryStore.log_predictions``'s rows as a log table; the helpers give each value its stored form
    (the same rules as the SQL log: ``row_id`` default, naive UTC time, plain numbers, text)."""
    columns = {
        "request_id": [str(r["request_id"]) for r in rows],
        "row_index": [int(r["row_index"]) for r in rows],
        "row_id": [row_id(r) for r in rows],
        "logged_at": [logged_at(r) for r in rows],
        "model_version": [str(r["model_version"]) for r in rows],
        "probability": [number(r.get("probability")) for r in rows],
        "prediction": [None if r.get("prediction") is None else str(number(r["prediction"])) for r in rows],
        "warnings": [text(r.get("warnings") or []) for r in rows],
    }
    records = [r.get("inputs") or {} for r in rows]
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    inputs = {name: [record.get(name) for record in records] for name in names}
    return log_table(columns, inputs)


def write_partitions(folder: Path, table: pa.Table) -> list[WrittenFile]:
    """Write ``table`` (a ``log_table``: its rows sorted by version, then time) as one file per (hour, model
    version) under ``folder``; returns them."""
    if table.num_rows == 0:
        return []
    stamps = table.column("logged_at").to_numpy().astype("datetime64[us]")
    hours = stamps.astype("datetime64[h]")
    versions = pc.dictionary_encode(table.column("model_version")).combine_chunks()
    codes = versions.indices.to_numpy(zero_copy_only=False)
    cuts = np.flatnonzero((np.diff(hours.astype(np.int64)) != 0) | (np.diff(codes) != 0)) + 1
    written = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, table.num_rows]):
        part = table.slice(start, stop - start)
        hour = hours[start].astype(datetime)
        version = str(versions.dictionary[codes[start]].as_py())
        relative = f"hour={hour:%Y-%m-%dT%H}/{_safe(version)}-{uuid.uuid4().hex}.parquet"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name("." + path.name + ".tmp")
        pq.write_table(part, temporary, row_group_size=ROW_GROUP_ROWS, compression=COMPRESSION)
        os.replace(temporary, path)
        written.append(WrittenFile(relative, hour, version, part.num_rows, stamps[start].astype(datetime),
                                   stamps[stop - 1].astype(datetime)))
    return written


def is_text(kind: pa.DataType) -> bool:
    """Whether an Arrow type is text (``string`` or ``large_string``, as pandas text is written)."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in version)


def read_batches(path: Path, columns: Sequence[str], *, since: datetime | None = None, until: datetime | None = None,
                 batch_rows: int = 65_536, dictionary: bool = False) -> Iterator[pa.Table]:
    """The rows of one file with ``since <= logged_at < until``, in batches, with only ``columns`` (those the
    file has) plus ``logged_at`` when a bound is given. ``dictionary``: the text input columns (``inputs.*``) read
    as Arrow dictionaries (each distinct text decoded once per batch; pandas Categorical), not one string per row."""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow               # built from the footer at each access: once per file
    present = set(schema.names)
    wanted = [c for c in dict.fromkeys(columns) if c in present]
    if dictionary:
        texts = [c for c in wanted if c.startswith(INPUT) and is_text(schema.field(c).type)]
        if texts:                            # reopened with the footer already read
            file = pq.ParquetFile(path, metadata=file.metadata, read_dictionary=texts)
    bounded = since is not None or until is not None
    read = wanted + (["logged_at"] if bounded and "logged_at" not in wanted else [])
    for batch in file.iter_batches(batch_size=batch_rows, columns=read):
        table = pa.Table.from_batches([batch])
        if bounded:
            stamp = table.column("logged_at")
            keep = None
            if since is not None:
                keep = pc.greater_equal(stamp, pa.scalar(since, pa.timestamp("us")))
            if until is not None:
                below = pc.less(stamp, pa.scalar(until, pa.timestamp("us")))
                keep = below if keep is None else pc.and_(keep, below)
            table = table.filter(keep)
            if "logged_at" not in wanted:
                table = table.drop_columns(["logged_at"])
        yield table


def rows_between(path: Path, since: datetime | None, until: datetime | None) -> int:
    """Rows of one file with ``since <= logged_at < until`` (only ``logged_at`` is read)."""
    return sum(t.num_rows for t in read_batches(path, [], since=since, until=until))

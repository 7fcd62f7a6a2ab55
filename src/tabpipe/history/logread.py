"""Reading a window of the prediction log back as columns, for ``tabpipe monitor``.

The stored JSON is parsed in bulk by Arrow, chunk by chunk, into exactly the frame the row-by-row
reading gives; a chunk Arrow cannot type is read row by row.
Design notes: docs/monitoring_store.md#reading-the-log-back-in-bulk
"""
from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from tabpipe.history.store import HistoryStore

BLOCK_BYTES = 1 << 20   # Arrow parses the text in blocks of this size, in parallel
_ARROW_TYPES = {"int": pa.float64(), "float": pa.float64(), "bool": pa.bool_()}   # anything else: text


@dataclass(frozen=True)
class LogRows:
    """A window of the log: ``rows`` (schema columns, log order), the logged ``proba`` and ``outcomes``
    (the stored outcome text, None where no label arrived), all of the same length."""

    rows: pd.DataFrame
    proba: np.ndarray
    outcomes: pd.Series


def arrow_schema(schema) -> pa.Schema:
    """The Arrow types the log's inputs are read with, one field per schema column."""
    return pa.schema([(name, _ARROW_TYPES.get(spec.type, pa.string())) for name, spec in schema.columns.items()])


def _careful(texts: list[str | None], columns: list[str]) -> pd.DataFrame:
    """The reference reading: every row through ``json.loads``, the frame from the dicts."""
    frame = pd.DataFrame.from_records([json.loads(text) if text else {} for text in texts])
    return frame[[c for c in columns if c in frame.columns]]


def _bulk(texts: list[str | None], types: pa.Schema) -> pa.Table | None:
    """The chunk through Arrow's JSON reader, or None if a value does not fit its column's type."""
    blob = "\n".join(text or "{}" for text in texts).encode()
    options = pa_json.ParseOptions(explicit_schema=types, unexpected_field_behavior="ignore")
    try:
        return pa_json.read_json(io.BytesIO(blob), parse_options=options,
                                 read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _keys_present(texts: list[str | None], name: str) -> bool:
    """Whether any row's JSON object has the key ``name`` (for a column Arrow read as all-null)."""
    needle = json.dumps(name) + ":"
    return any(name in json.loads(text) for text in texts if text and needle in text)


def inputs_frame(texts: list[str | None], schema) -> pd.DataFrame:
    """The logged inputs (JSON text per row, None for none) as a frame of the schema's columns."""
    columns = list(schema.columns)
    table = _bulk(texts, arrow_schema(schema)) if texts else None
    if table is None:
        return _careful(texts, columns)
    frame = table.to_pandas()
    absent = [name for name in columns if table.column(name).null_count == len(frame) and len(frame)
              and not _keys_present(texts, name)]
    return frame.drop(columns=absent) if absent else frame


def typed_frame(table: pa.Table, types: pa.Schema) -> pd.DataFrame:
    """Input columns of the columnar log as a frame: each schema column the table has, cast to the type the
    JSON log is read with (kept as stored when its values do not cast, e.g. text in a numeric column)."""
    columns = {}
    for field in types:
        if field.name not in table.column_names:
            continue
        column = table.column(field.name)
        try:
            column = column.cast(field.type) if column.type != field.type else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        columns[field.name] = column
    return pa.table(columns).to_pandas() if columns else pd.DataFrame(index=range(table.num_rows))


def log_chunks(store: HistoryStore, schema, *, since: datetime | None, until: datetime | None,
               version: str | None, chunk_rows: int = 65_536) -> Iterator[LogRows]:
    """The log rows of ``version`` logged in ``[since, until)`` chunk by chunk: first the rows of the SQL
    ``predictions`` table (JSON parsed in bulk, one chunk parsed while the next is fetched), then those of
    the columnar log (only the schema's columns of only the window's files). Memory: one chunk at a time."""
    with ThreadPoolExecutor(1, thread_name_prefix="tabpipe-logread") as parser:
        pending = None
        for texts, proba, outcome in store.prediction_chunks(since=since, until=until, version=version,
                                                             chunk_rows=chunk_rows, columnar=False):
            ready = pending
            pending = (parser.submit(inputs_frame, texts, schema), proba, outcome)
            if ready is not None:
                yield LogRows(ready[0].result(), ready[1], pd.Series(ready[2], name="outcome", dtype=object))
        if pending is not None:
            yield LogRows(pending[0].result(), pending[1], pd.Series(pending[2], name="outcome", dtype=object))
    types = arrow_schema(schema)
    parts = ((typed_frame(table, types), proba, outcome)
             for table, proba, outcome in store.columnar_chunks(list(schema.columns), since=since, until=until,
                                                                version=version, chunk_rows=chunk_rows))
    yield from ahead(_gathered(parts, chunk_rows))


def _gathered(parts: Iterator[tuple], chunk_rows: int) -> Iterator[LogRows]:
    """The columnar log's batches (one file's rows at most each) gathered into chunks of at least ``chunk_rows``
    rows (the last may be smaller): a log of many small files costs no more per row to check than one of
    large files."""
    frames, probas, outcomes, rows = [], [], [], 0
    for frame, proba, outcome in parts:
        frames.append(frame)
        probas.append(proba)
        outcomes.append(outcome)
        rows += len(proba)
        if rows >= chunk_rows:
            yield _chunk(frames, probas, outcomes)
            frames, probas, outcomes, rows = [], [], [], 0
    if frames:
        yield _chunk(frames, probas, outcomes)


def _chunk(frames: list[pd.DataFrame], probas: list[np.ndarray], outcomes: list[np.ndarray]) -> LogRows:
    rows = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return LogRows(rows, np.concatenate(probas), pd.Series(np.concatenate(outcomes), name="outcome", dtype=object))


def ahead(items: Iterator, depth: int = 2) -> Iterator:
    """``items`` made by a worker thread up to ``depth`` items ahead of the consumer (Arrow decodes Parquet
    without the GIL: the next chunk is read while this one is checked). The worker's exception is raised
    here; a consumer that stops early stops the worker."""
    waiting: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put(_Failed(exc))
            return
        put(end)

    worker = threading.Thread(target=work, name="tabpipe-logread-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = waiting.get()
            if item is end:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def read_window(store: HistoryStore, schema, *, since: datetime | None, until: datetime | None,
                version: str | None, chunk_rows: int = 20_000) -> LogRows:
    """The log rows of ``version`` logged in ``[since, until)`` in memory, read in chunks of ``chunk_rows``
    (``log_chunks``)."""
    frames, probas, outcomes = [], [], []
    for chunk in log_chunks(store, schema, since=since, until=until, version=version, chunk_rows=chunk_rows):
        frames.append(chunk.rows)
        probas.append(chunk.proba)
        outcomes.extend(chunk.outcomes)
    if not frames:
        return LogRows(pd.DataFrame(), np.empty(0), pd.Series([], dtype=object))
    rows = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return LogRows(rows.reset_index(drop=True), np.concatenate(probas), pd.Series(outcomes, name="outcome"))

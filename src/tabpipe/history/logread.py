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

from tabpipe.history.columnar import is_text
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


def typed_table(table: pa.Table, types: pa.Schema) -> pa.Table:
    """Input columns of the columnar log, as Arrow: each schema column the table has, cast to the type the JSON
    log is read with (kept as stored when its values do not cast, e.g. text in a numeric column). A dictionary
    of text read for a text column stays a dictionary (pandas Categorical: the same values, each text once)."""
    columns = {}
    for field in types:
        if field.name not in table.column_names:
            continue
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            if is_text(column.type.value_type) and is_text(field.type):
                columns[field.name] = column                 # a text column keeps its dictionary of texts
                continue
            column = column.cast(column.type.value_type)
        try:
            if column.type != field.type:
                column = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        columns[field.name] = column
    return pa.table(columns) if columns else pa.table({}).slice(0, 0)


def typed_frame(table: pa.Table, types: pa.Schema) -> pd.DataFrame:
    """``typed_table`` as a frame (no dictionaries: text as pandas text, as the JSON log is read)."""
    typed = _decoded(typed_table(table, types))
    return typed.to_pandas() if typed.num_columns else pd.DataFrame(index=range(table.num_rows))


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns decoded to their values."""
    if not any(pa.types.is_dictionary(t) for t in table.schema.types):
        return table
    return pa.table({name: column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
                     for name, column in zip(table.column_names, table.columns)})


def tables_frame(tables: list[pa.Table], rows: list[int], types: pa.Schema) -> pd.DataFrame:
    """The typed input columns of consecutive batches (``rows`` each) as one frame: concatenated by Arrow (a
    column a batch lacks is null there, as ``pd.concat`` fills it) and converted once, text columns as pandas
    Categoricals. When the batches' types do not agree (a value kept as stored), each batch is converted and
    the frames concatenated by pandas, as before."""
    typed = [typed_table(t, types) for t in tables]
    if all(t.num_columns for t in typed):
        try:
            table = typed[0] if len(typed) == 1 else pa.concat_tables(typed, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            table = None
        if table is not None:
            return table.to_pandas()
    frames = [_decoded(t).to_pandas() if t.num_columns else pd.DataFrame(index=range(n)) for t, n in zip(typed, rows)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def log_chunks(store: HistoryStore, schema, *, since: datetime | None, until: datetime | None,
               version: str | None, chunk_rows: int = 65_536) -> Iterator[LogRows]:
    """The log rows of ``version`` logged in ``[since, until)`` chunk by chunk: first the rows of the SQL
    ``predictions`` table (JSON parsed in bulk, one chunk parsed while the next is fetched), then those of
    the columnar log (only the schema's columns of only the window's files; text columns as Categoricals).
    Memory: one chunk at a time."""
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
    yield from columnar_log_chunks(store, schema, since=since, until=until, version=version, chunk_rows=chunk_rows)


def columnar_log_chunks(store: HistoryStore, schema, *, since: datetime | None, until: datetime | None,
                        version: str | None, chunk_rows: int = 65_536, files: list[dict] | None = None
                        ) -> Iterator[LogRows]:
    """The columnar log's part of ``log_chunks`` (``files``: only these of the window's files), read a chunk
    ahead by a worker thread."""
    parts = store.columnar_chunks(list(schema.columns), since=since, until=until, version=version,
                                  chunk_rows=chunk_rows, dictionary=True, files=files)
    yield from ahead(_gathered(parts, chunk_rows, arrow_schema(schema)))


def _gathered(parts: Iterator[tuple], chunk_rows: int, types: pa.Schema) -> Iterator[LogRows]:
    """The columnar log's batches (one file's rows at most each) gathered into chunks of at least ``chunk_rows``
    rows (the last may be smaller): a log of many small files costs no more per row to check than one of
    large files."""
    tables, probas, outcomes, rows = [], [], [], 0
    for table, proba, outcome in parts:
        tables.append(table)
        probas.append(proba)
        outcomes.append(outcome)
        rows += len(proba)
        if rows >= chunk_rows:
            yield _chunk(tables, probas, outcomes, types)
            tables, probas, outcomes, rows = [], [], [], 0
    if tables:
        yield _chunk(tables, probas, outcomes, types)


def _chunk(tables: list[pa.Table], probas: list[np.ndarray], outcomes: list[np.ndarray], types: pa.Schema) -> LogRows:
    rows = tables_frame(tables, [len(p) for p in probas], types)
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
    return LogRows(text_columns(rows.reset_index(drop=True)), np.concatenate(probas), pd.Series(outcomes, name="outcome"))


def text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its Categorical columns (text read as a dictionary) as pandas text, as the JSON log reads
    them: for a caller that keeps the rows (training data, per-segment metrics), not just checks them."""
    kinds = {name: frame[name].cat.categories.dtype for name in frame.columns
             if isinstance(frame[name].dtype, pd.CategoricalDtype)}
    return frame.astype(kinds) if kinds else frame

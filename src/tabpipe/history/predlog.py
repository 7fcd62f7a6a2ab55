"""The prediction log: which scored rows are kept, in what form, and how the service writes them.

- ``log_rows`` is the one rule turning scored records into log rows: sampling, only schema columns
  kept, sensitive columns protected, the row id taken from the schema's first ``role: id`` column
  (when the record has it; otherwise the store uses ``request_id:row_index``).
- ``PredictionLog`` (one per service process) takes rows in ``submit`` — a few microseconds, never
  raises, never blocks — and a daemon thread writes them in batches. The waiting rows are bounded
  (``queue_rows``): when full, new rows are dropped and counted. When the store fails, the batch
  goes back to the front of the queue, the failure is logged and counted, and the writer retries
  with a growing pause (up to ``MAX_RETRY_S``); ``stats()`` is what ``/health`` shows.
- ``log_batch`` writes synchronously, for ``tabpipe predict``; ``log_once`` writes log rows whose row id
  is not logged yet, for ``tabpipe stream`` (a redelivered message is never logged twice).
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import json
from dataclasses import dataclass

import numpy as np

from tabpipe.jsonable import to_json_ready
from tabpipe.privacy import Protector, canonical
from tabpipe.history.logged_ids import LoggedIds
from tabpipe.history.store import HistoryStore

log = logging.getLogger(__name__)
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
WRITE_CHUNK = 5000


_PROCESS_IDS: dict[int, tuple[str, itertools.count]] = {}


def new_request_id() -> str:
    """A unique request id, cheap enough for every request: a random per-process prefix + a counter."""
    pid = os.getpid()
    if pid not in _PROCESS_IDS:
        _PROCESS_IDS[pid] = (uuid.uuid4().hex[:16], itertools.count())
    prefix, counter = _PROCESS_IDS[pid]
    return f"{prefix}-{next(counter)}"


class RowFormat:
    """How a scored record becomes a log row for one schema (compiled once)."""

    def __init__(self, schema, protector: Protector, sample_rate: float, *, rng: random.Random | None = None):
        self.columns = frozenset(schema.columns)
        ids = [name for name, spec in schema.columns.items() if spec.role == "id"]
        self.id_column = ids[0] if ids else None
        self.protector = protector
        self.sample_rate = float(sample_rate)
        self._random = (rng or random.Random()).random  # nosec B311 -- log sampling, not security

    def _row_id(self, record: Mapping[str, Any]) -> str | None:
        value = record.get(self.id_column) if self.id_column else None
        if value is None or (isinstance(value, float) and value != value):
            return None
        if self.id_column in self.protector.columns:
            return self.protector.token(value) if self.protector.mode == "hash" else None
        return canonical(value)

    def rows(self, request_id: str, version: str, records: Sequence[Mapping[str, Any]], proba: Sequence[float],
             labels: Sequence[Any], warnings: Sequence[Sequence[str]] | None = None,
             logged_at: datetime | None = None, first_row: int = 0) -> list[dict]:
        """Log rows for the scored ``records`` (rows with a NaN probability — not scored — are skipped);
        ``first_row``: the row index of ``records[0]`` (a chunk of a longer file)."""
        stamp = logged_at or datetime.now(timezone.utc)
        rows = []
        for i, record in enumerate(records):
            if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
                continue
            p = float(proba[i])
            if p != p:
                continue
            inputs = {k: v for k, v in record.items() if k in self.columns}
            rows.append({"request_id": request_id, "row_index": first_row + i, "row_id": self._row_id(record),
                         "logged_at": stamp, "model_version": version, "inputs": self.protector.record(inputs),
                         "probability": p, "prediction": labels[i],
                         "warnings": list(warnings[i]) if warnings is not None else []})
        return rows


    def column_batch(self, version: str, frame, records: Sequence[Mapping[str, Any]], proba: Sequence[float],
                labels: Sequence[Any], warnings: Sequence[str | None], request_ids: Sequence[str],
                row_indexes: Sequence[int], logged_at: datetime | None = None) -> LogColumns:
        """What ``rows`` gives for one warning (or None) per record, column by column (``tabpipe stream``: no
        dict per row): ``records`` as scored, ``frame`` the DataFrame made of them, each row's request id and
        row index given; the row id is the schema's id (``_row_id``), else ``request_id:row_index``."""
        proba = np.asarray(proba, dtype=float)
        keep = ~np.isnan(proba)
        if self.sample_rate < 1.0:   # one draw per record, in order, as ``rows`` draws
            keep &= np.array([self._random() < self.sample_rate for _ in range(len(proba))], dtype=bool)
        at = np.flatnonzero(keep)
        ids = [self._row_id(records[i]) if self.id_column else None for i in at.tolist()]
        ids = [row_id or f"{request_ids[i]}:{row_indexes[i]}" for row_id, i in zip(ids, at.tolist())]
        stamp = (logged_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
        texts = {label: None if label is None else str(to_json_ready(label, inf_as_null=False))
                 for label in dict.fromkeys(np.asarray(labels, dtype=object)[at].tolist())}
        columns = {"request_id": [str(request_ids[i]) for i in at.tolist()],
                   "row_index": [int(row_indexes[i]) for i in at.tolist()], "row_id": ids,
                   "logged_at": [stamp] * len(at), "model_version": [str(version)] * len(at),
                   "probability": proba[at], "prediction": [texts[label] for label in
                                                            np.asarray(labels, dtype=object)[at].tolist()],
                   "warnings": ["[]" if not warnings[i] else json.dumps([warnings[i]], separators=(",", ":"))
                                for i in at.tolist()]}
        inputs: dict[str, Any] = {}
        for name in frame.columns:
            if name not in self.columns or (name in self.protector.columns and self.protector.mode == "drop"):
                continue
            column = frame[name]
            values = column.to_numpy()[at]
            if column.dtype == float and np.isnan(values).any() and \
                    np.all(np.isnan(values) | (values == np.floor(values))):
                values = [records[i].get(name) for i in at.tolist()]   # maybe ints with gaps, made floats: as sent
            if name in self.protector.columns:
                values = [self.protector.token(v) for v in values]
            inputs[name] = values
        return LogColumns(ids, columns, inputs)


@dataclass
class LogColumns:
    """Log rows column by column (``RowFormat.column_batch``): the row ids, the log columns in their stored form
    (``columnar.META``) and the input columns (protected)."""
    row_ids: list[str]
    columns: dict[str, Any]
    inputs: dict[str, Any]

    def take(self, at: Sequence[int]) -> LogColumns:
        """The rows at positions ``at``."""
        def pick(values):
            return values[np.asarray(at, dtype=np.int64)] if isinstance(values, np.ndarray) else [values[i] for i in at]
        return LogColumns([self.row_ids[i] for i in at], {k: pick(v) for k, v in self.columns.items()},
                          {k: pick(v) for k, v in self.inputs.items()})


def log_columns_once(store: HistoryStore, batch: LogColumns, *, since: datetime | None = None,
                     known: LoggedIds | None = None) -> tuple[int, int]:
    """``log_once`` for rows given column by column: the rows whose row id is not logged yet, the first of
    rows sharing one; returns (rows written, rows skipped)."""
    if not batch.row_ids:
        return 0, 0
    ask = known.logged if known is not None else store.logged_row_ids
    logged = ask(batch.row_ids, since=since)
    total = len(batch.row_ids)
    fresh = []
    for i, row_id in enumerate(batch.row_ids):
        if row_id not in logged:
            logged.add(row_id)
            fresh.append(i)
    if len(fresh) < total:
        batch = batch.take(fresh)
    for start in range(0, len(fresh), WRITE_CHUNK):
        part = batch if len(fresh) <= WRITE_CHUNK else batch.take(range(start, min(start + WRITE_CHUNK, len(fresh))))
        store.log_columns(part.columns, part.inputs)
    return len(fresh), total - len(fresh)


def log_batch(store: HistoryStore, fmt: RowFormat, request_id: str, version: str, frame, proba: np.ndarray,
              labels: Sequence[Any], first_row: int = 0) -> int:
    """Write the scored rows of a DataFrame now (``tabpipe predict``); returns the rows written.
    ``first_row``: the row index of the frame's first row (a chunk of a longer file)."""
    records = frame.to_dict("records")
    rows = fmt.rows(request_id, version, records, proba, labels, first_row=first_row)
    for start in range(0, len(rows), WRITE_CHUNK):
        store.log_predictions(rows[start:start + WRITE_CHUNK])
    return len(rows)


def log_once(store: HistoryStore, rows: list[dict], *, since: datetime | None = None,
             known: LoggedIds | None = None) -> tuple[int, int]:
    """Write the log rows (``RowFormat.rows``) whose ``row_id`` no logged row carries yet, the first of rows
    sharing one; returns (rows written, rows skipped). Rows need a ``row_id``. Idempotent for one writer at a
    time per row id: two writers logging the same new id at the same instant can both write it.
    ``since``: no earlier write of these rows can be older than this (``HistoryStore.logged_row_ids``).
    ``known``: the process's ``LoggedIds`` over ``store`` (the same answers, without rereading the log's files)."""
    ask = known.logged if known is not None else store.logged_row_ids
    logged = ask((row["row_id"] for row in rows), since=since) if rows else set()
    fresh = []
    for row in rows:
        if row["row_id"] not in logged:
            logged.add(row["row_id"])
            fresh.append(row)
    for start in range(0, len(fresh), WRITE_CHUNK):
        store.log_predictions(fresh[start:start + WRITE_CHUNK])
    return len(fresh), len(rows) - len(fresh)


class PredictionLog:
    """Background, batched, bounded writer of one process's prediction log."""

    def __init__(self, open_store: Callable[[], HistoryStore], fmt: RowFormat, *, queue_rows: int = 100_000,
                 batch_rows: int = 1_000, flush_interval_s: float = 1.0):
        self._open_store, self.fmt = open_store, fmt
        self.queue_rows, self.batch_rows, self.flush_interval_s = queue_rows, batch_rows, flush_interval_s
        self._store: HistoryStore | None = None
        # one tuple per request: (rows, kind, request_id, version, records, proba, labels, warnings, epoch s),
        # kind "records" | "frame"; or (rows, "rows", formatted rows) for a batch put back after a failed write.
        # Rows are formatted by the writer thread; one small object per request keeps the GC's work low.
        self._items: deque[tuple] = deque()
        self._queued = 0            # rows in _items
        self._writing = 0           # rows taken by the writer, not yet written or put back
        self._cond = threading.Condition()
        self._stop = False
        self._pid: int | None = None
        self._counters = {"logged_rows": 0, "dropped_rows": 0, "failed_writes": 0, "errors": 0}
        self.last_error: str | None = None
        atexit.register(self.close, 2.0)
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue, lock, writer and connections are not ours."""
        if self._store is not None:
            self._store.engine.dispose(close=False)
        self._store, self._pid, self._cond = None, None, threading.Condition()
        self._items, self._queued, self._writing = deque(), 0, 0

    # ---- request side: O(1), never raises, never waits for the store

    def submit(self, request_id: str, version: str, records: Sequence[Mapping[str, Any]], proba: Sequence[float],
               labels: Sequence[Any], warnings: Sequence[Sequence[str]] | None = None) -> None:
        """Queue the scored records (dicts) of one request."""
        self._enqueue((len(records), "records", request_id, version, records, proba, labels, warnings, time.time()))

    def submit_frame(self, request_id: str, version: str, frame, proba: Sequence[float], labels: Sequence[Any],
                     warnings: Sequence[Sequence[str]] | None = None) -> None:
        """Queue the scored rows of a DataFrame (converted to records by the writer, not the request)."""
        self._enqueue((len(frame), "frame", request_id, version, frame, proba, labels, warnings, time.time()))

    def _enqueue(self, item: tuple) -> None:
        try:
            if self._pid != os.getpid():
                self._start_writer()
            with self._cond:
                if self._queued + self._writing + item[0] > self.queue_rows:
                    self._counters["dropped_rows"] += item[0]
                    return
                self._items.append(item)
                self._queued += item[0]
                if self._queued >= self.batch_rows:
                    self._cond.notify()
        except Exception as exc:  # noqa: BLE001 — logging must never fail a prediction
            self._counters["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _build(self, item: tuple) -> list[dict]:
        """Log rows of one queued item (writer thread)."""
        if item[1] == "rows":
            return item[2]
        _, kind, request_id, version, records, proba, labels, warnings, epoch = item
        if kind == "frame":
            records = records.to_dict("records")
        return self.fmt.rows(request_id, version, records, proba, labels, warnings,
                             datetime.fromtimestamp(epoch, timezone.utc))

    def stats(self) -> dict:
        """Counters for /health: rows logged, dropped (queue full), failed writes, rows waiting, last error."""
        with self._cond:
            waiting = self._queued + self._writing
        return {"sample_rate": self.fmt.sample_rate, **self._counters, "waiting_rows": waiting,
                "last_error": self.last_error}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queued or self._writing:
                left = deadline - time.monotonic()
                if left <= 0 or not self._writer_alive():
                    return False
                self._cond.notify_all()
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the writer and close the store."""
        alive = self._writer_alive()
        if alive:
            self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if not alive and self._store is not None:  # else the writer closes it on its way out
            self._store.close()

    # ---- writer side

    def _writer_alive(self) -> bool:
        return self._pid == os.getpid() and not self._stop

    def _start_writer(self) -> None:
        with self._cond:  # first use in this process (also after a fork): start its writer
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._write_loop, name="tabpipe-prediction-log", daemon=True).start()

    def _take(self) -> list[dict]:
        with self._cond:
            while not self._items and not self._stop:
                self._cond.wait(self.flush_interval_s)
            if self._queued < self.batch_rows and not self._stop:
                self._cond.wait(self.flush_interval_s)  # let a partial batch fill (flush wakes us early)
            taken: list[tuple] = []
            count = 0
            while self._items and count < self.batch_rows:
                taken.append(self._items.popleft())
                count += taken[-1][0]
            self._queued -= count
            self._writing = count
        rows: list[dict] = []
        for item in taken:
            try:
                rows.extend(self._build(item))
            except Exception as exc:  # noqa: BLE001 — a row that cannot be formatted is counted, not retried
                self._counters["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("prediction log: could not format %d rows: %s", item[0], self.last_error)
        return rows

    def _write_loop(self) -> None:
        pause = FIRST_RETRY_S
        while not self._stop:
            rows = self._take()
            written = 0
            try:
                if rows and self._store is None:
                    self._store = self._open_store()
                for start in range(0, len(rows), WRITE_CHUNK):
                    self._store.log_predictions(rows[start:start + WRITE_CHUNK])
                    written = start + len(rows[start:start + WRITE_CHUNK])
            except Exception as exc:  # noqa: BLE001 — store down: keep the rows, count, retry later
                self._fail(rows[written:], exc, logged=written)
                with self._cond:
                    if not self._stop:
                        self._cond.wait(pause)
                pause = min(pause * 2, MAX_RETRY_S)
                continue
            pause = FIRST_RETRY_S
            with self._cond:
                self._counters["logged_rows"] += written
                self._writing = 0
                self._cond.notify_all()
        if self._store is not None:
            self._store.close()

    def _fail(self, rows: list[dict], exc: Exception, *, logged: int) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("prediction log: writing %d rows failed (kept for a retry): %s", len(rows), self.last_error)
        if self._store is not None:
            self._store.close()
            self._store = None
        with self._cond:
            self._counters["failed_writes"] += 1
            self._counters["logged_rows"] += logged
            self._writing = 0
            room = self.queue_rows - self._queued
            keep = rows[:max(room, 0)]
            self._counters["dropped_rows"] += len(rows) - len(keep)
            if keep:
                self._items.appendleft((len(keep), "rows", keep))
                self._queued += len(keep)
            self._cond.notify_all()

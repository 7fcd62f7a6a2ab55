"""Which row ids the prediction log holds, remembered by one process: the stream consumer's idempotency check.

``HistoryStore.logged_row_ids`` reads the ``row_id`` column of every log file holding rows logged since ``since``;
asked once per micro-batch (``predlog.log_once``), a consumer would read the same files again at every batch,
its cost growing with the files of the window. ``LoggedIds`` reads each indexed log file once and keeps its row
ids with the file's newest ``logged_at``: a question reads only the files indexed since the last one (mostly the
consumer's own last file), the ``log_files`` index and the ``predictions`` table (the SQL log, an indexed lookup).

The answers are the store's: an id counts when a file holding rows logged at or after ``since`` has it (the
file-level test ``logged_row_ids`` applies) or a ``predictions`` row logged from ``since`` has it. The cache
covers the files from ``floor`` (the first ``since`` asked, moved forward as ``since`` moves, dropping what
is older); a ``since`` before the floor (a long-pending message claimed late) is answered by the store itself.
Past ``max_ids`` ids the floor moves up to the current ``since`` (older ids are dropped).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from tabpipe.history.store import HistoryStore, utc

ADVANCE = timedelta(minutes=1)   # the floor follows ``since`` in steps of at least this (eviction is a full pass)


class LoggedIds:
    """``logged(row_ids, since=...)``: the ids of ``row_ids`` the log holds, as ``HistoryStore.logged_row_ids``."""

    def __init__(self, store: HistoryStore, *, max_ids: int = 2_000_000):
        self.store, self.max_ids = store, max_ids
        self.known: dict[str, datetime] = {}      # row id -> newest last_logged_at of a scanned file holding it
        self.scanned: dict[int, datetime] = {}    # log_files id -> its last_logged_at
        self.floor: datetime | None = None

    def logged(self, row_ids: Iterable[str], *, since: datetime | str | None) -> set[str]:
        wanted = {str(row_id) for row_id in row_ids}
        since = utc(since)
        if not wanted:
            return set()
        if since is None or (self.floor is not None and since < self.floor):
            return self.store.logged_row_ids(wanted, since=since)
        if self.floor is None:
            self.floor = since
        elif since - self.floor >= ADVANCE or len(self.known) > self.max_ids:
            self._forget_before(since)
        self._scan_new_files()
        found = self.store.logged_row_ids(wanted, since=since, files=False)
        known = self.known
        found.update(row_id for row_id in wanted if row_id in known and known[row_id] >= since)
        return found

    def _forget_before(self, floor: datetime) -> None:
        self.floor = floor
        self.known = {row_id: at for row_id, at in self.known.items() if at >= floor}
        self.scanned = {file_id: at for file_id, at in self.scanned.items() if at >= floor}

    def _scan_new_files(self) -> None:
        import pyarrow.parquet as pq

        for f in self.store.log_files(since=self.floor):
            if f["id"] in self.scanned:
                continue
            stamp = f["last_logged_at"]
            ids = pq.read_table(f["path"], columns=["row_id"]).column("row_id").to_pylist()
            known = self.known
            for row_id in ids:
                if known.get(row_id, stamp) <= stamp:
                    known[row_id] = stamp
            self.scanned[f["id"]] = stamp

"""A window of the columnar prediction log counted by several processes at once.

Reading (Parquet decoding, the hour's outcomes) and checking (the schema check, the PSI counts) of one
process share one interpreter lock: on a large window they take turns more than they overlap. Here the
window's files are cut into contiguous groups of about equal rows; this process counts the first group
while each other group is counted by a process of its own (spawned: it imports only what reading and
checking need, never the model's libraries), and the partial counts are merged in file order. The result
is the one pass's, row for row: each group's sample keys continue the one seeded stream where the rows
before it end, and its rows are numbered from there (``window_stats.stream_stats(first_row=...)``).

Used only when it can pay: at least ``MIN_ROWS`` rows, more than one core, every row of the window in the
columnar log (a store whose window still has rows in the SQL table is read in one pass).
Design notes: docs/monitoring.md#counting-a-window-in-several-processes
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

from tabpipe.monitoring.window_stats import ChunkSpec, WindowStats, stream_stats

MIN_ROWS = 2_000_000          # below this, starting a process costs more than it saves
MAX_PROCESSES = 4


@dataclass(frozen=True)
class Group:
    """Consecutive files of the window (``log_files`` rows) and the window's rows before them."""

    files: list[dict]
    first_row: int
    rows: int


def plan(store, *, since: datetime | None, until: datetime | None, version: str | None,
         processes: int | None = None, min_rows: int | None = None) -> list[Group] | None:
    """The window's files in ``processes`` (default: the cores, at most ``MAX_PROCESSES``) groups of about
    equal rows, or None when one pass is the better plan (see the module docstring; ``min_rows`` default
    ``MIN_ROWS``). The rows of the two
    files at the window's edges are counted exactly (their ``logged_at`` only), the others taken from the
    index."""
    from tabpipe.history.columnar import rows_between
    from tabpipe.history.store import utc

    processes = processes or min(os.cpu_count() or 1, MAX_PROCESSES)
    min_rows = MIN_ROWS if min_rows is None else min_rows
    files = store.log_files(since=since, until=until, version=version)
    if processes < 2 or len(files) < 2 or sum(f["rows"] for f in files) < min_rows:
        return None
    if store.has_sql_rows(since=since, until=until, version=version):
        return None
    since, until = utc(since), utc(until)
    rows = [f["rows"] if (since is None or f["first_logged_at"] >= since) and (until is None or f["last_logged_at"] < until)
            else rows_between(f["path"], since, until) for f in files]
    total = sum(rows)
    if total < min_rows:
        return None
    groups, start, before, done = [], 0, 0, 0
    for i, n in enumerate(rows):
        done += n
        if done >= total * (len(groups) + 1) / processes or i == len(rows) - 1:
            if done > before:
                groups.append(Group(files[start:i + 1], before, done - before))
            start, before = i + 1, done
    return groups if len(groups) > 1 else None


def counted_in_processes(store, groups: list[Group], spec: ChunkSpec, *, since: datetime | None,
                         until: datetime | None, version: str | None, where: str,
                         read: Callable[[Iterable], Iterator] = iter) -> WindowStats:
    """The window's statistics: ``groups[0]`` counted here (its chunks passed through ``read``, e.g. a timer),
    the others in spawned processes; merged in order and finished."""
    url, log_dir = store.reopen_args()
    light = replace(spec, model=replace(spec.model, preprocessor=None, estimator=None, calibration=None,
                                        feature_means=None))      # logged rows are checked, never scored
    with ProcessPoolExecutor(len(groups) - 1, mp_context=get_context("spawn")) as pool:
        others = [pool.submit(count_group, url, log_dir, group, light, since, until, version, where)
                  for group in groups[1:]]
        try:
            total = _count(store, groups[0], spec, since, until, version, where, read)
            for future in others:
                total.merge(future.result())
        except BaseException:
            for future in others:
                future.cancel()
            raise
    return total.finish()


def count_group(url: str, log_dir: Path | None, group: Group, spec: ChunkSpec, since: datetime | None,
                until: datetime | None, version: str | None, where: str) -> WindowStats:
    """One group's partial statistics, in a process of its own (module level: what the pool runs)."""
    from tabpipe.history.store import HistoryStore

    store = HistoryStore.open(url, migrate_to=None, log_dir=log_dir)
    try:
        return _count(store, group, spec, since, until, version, where, iter)
    finally:
        store.close()


def _count(store, group: Group, spec: ChunkSpec, since, until, version, where: str, read) -> WindowStats:
    from tabpipe.history.logread import columnar_log_chunks

    chunks = columnar_log_chunks(store, spec.model.schema, since=since, until=until, version=version,
                                 files=group.files)
    return stream_stats(read(chunks), spec, where=where, first_row=group.first_row, finish=False)

"""A partitioned Parquet dataset (a folder of .parquet files, hive ``key=value`` folders included), read
and scored piece by piece with bounded memory.

One row group in memory at a time; all files checked before anything is written; output renamed into
place at the end; counts as ``batch.summary`` gives for the whole dataset; one task per file on Dask.
Design notes: docs/dask.md#scoring-a-partitioned-dataset-invariants
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow.fs import LocalFileSystem

from tabpipe.scoring.batch import OUTPUT_COLUMNS, BatchResult, MissingColumns, score_frame, summary
from tabpipe.scoring.stream import ChunkWriter
from tabpipe.errors import DataError, TabpipeError
from tabpipe.model import TabularModel
from tabpipe.schema import Problem
from tabpipe.sources import read_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    """One file of the dataset: its path and the partition keys its folders name (``day=1/…``)."""
    path: str
    expression: ds.Expression
    schema: pa.Schema


def partitions(folder: Path) -> list[Partition]:
    """The dataset's .parquet files in path order, hidden and ``_``-prefixed ones skipped (``DataError`` when none).

    ``folder`` may also be one .parquet file: a dataset of one file (read a row group at a time too)."""
    root = Path(folder).resolve()
    if root.is_file():
        return [Partition(str(root), ds.scalar(True), pq.read_schema(root))]
    files = sorted(str(p) for p in root.rglob("*.parquet")
                   if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"{folder} holds no .parquet file")
    dataset = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root))
    found = sorted(dataset.get_fragments(), key=lambda f: f.path)
    return [Partition(f.path, f.partition_expression, dataset.schema) for f in found]


def read_partition(part: Partition) -> Iterator[pd.DataFrame]:
    """The rows of one file, a row group at a time, with the dataset's columns (partition keys included)."""
    fragment = ds.ParquetFileFormat().make_fragment(part.path, filesystem=LocalFileSystem(),
                                                    partition_expression=part.expression)
    for piece in fragment.split_by_row_group():
        yield piece.to_table(schema=part.schema).to_pandas()


def iter_partitions(path: Path) -> Iterator[pd.DataFrame]:
    """Rows of a CSV/Parquet file (one frame) or of a partitioned Parquet folder (one frame per row group, in order).

    For readers such as ``tabpipe monitor``: ``for frame in iter_partitions(path): ...`` keeps one row
    group in memory; ``pd.concat(iter_partitions(path), ignore_index=True)`` gives the whole table."""
    path = Path(path)
    if not path.is_dir():
        yield read_file(path)
        return
    for part in partitions(path):
        yield from read_partition(part)


def check_columns(parts: list[Partition], model: TabularModel) -> None:
    """``MissingColumns`` for the first file that lacks a feature of the model (its footer is read, not its rows)."""
    from tabpipe.schema import absent_columns

    for part in parts:
        keys = ds.get_partition_keys(part.expression)
        names = list(pq.read_schema(part.path).names) + list(keys)
        absent = absent_columns(names, model.schema)
        if absent:
            raise MissingColumns(absent, part.path)


# --------------------------------------------------------------------------- scoring

def _typed(scored: pd.DataFrame, model: TabularModel) -> pd.DataFrame:
    """The output columns with one type in every partition (whatever rows it holds)."""
    labels = pd.Series(list(model.labels))
    kind = "boolean" if pd.api.types.is_bool_dtype(labels) else "Int64" if pd.api.types.is_integer_dtype(labels) \
        else "string"
    return scored.assign(prediction=scored["prediction"].astype(kind), probability=scored["probability"].astype(float),
                         score=scored["score"].astype(float),
                         warnings=scored["warnings"].astype("string"), error=scored["error"].astype("string"))


def score_partition(model: TabularModel, part: Partition) -> tuple[pa.Table, list[Problem], int, int]:
    """One file scored row group by row group: (output table, problems with rows counted in this file, rows, scored)."""
    tables, problems, rows, scored_rows = [], [], 0, 0
    for frame in read_partition(part):
        scored, found = score_frame(model, frame)
        tables.append(pa.Table.from_pandas(_typed(scored, model), preserve_index=False))
        problems.extend(_shifted(found, rows))
        rows += len(frame)
        scored_rows += int(scored["probability"].notna().sum())
    return pa.concat_tables(tables) if tables else None, problems, rows, scored_rows


def _shifted(problems: list[Problem], offset: int) -> list[Problem]:
    return [Problem(p.column, p.rule, p.message, tuple(r + offset for r in p.rows), p.hard) for p in problems]


class _Tally:
    """Problems merged over partitions (same column, rule, message, hardness), rows counted from the dataset's start."""

    def __init__(self):
        self.rows = self.scored = 0
        self.merged: dict[tuple, list] = {}

    def add(self, problems: list[Problem], rows: int, scored: int) -> None:
        for p in _shifted(problems, self.rows):
            self.merged.setdefault((p.column, p.rule, p.message, p.hard), []).extend(p.rows)
        self.rows += rows
        self.scored += scored

    def result(self) -> BatchResult:
        problems = [Problem(column, rule, message, tuple(rows), hard)
                    for (column, rule, message, hard), rows in self.merged.items()]
        return summary(problems, self.rows, self.scored)


def score_dataset(model: TabularModel, folder: Path, output_path: Path, *, dask_address: str | None = None,
                  dask: bool = False, n_workers: int = 1) -> BatchResult:
    """Score every file of a partitioned Parquet folder into ``output_path`` (.parquet or .csv), in order.

    ``dask``: one task per file on the cluster at ``dask_address`` (or a LocalCluster of ``n_workers``)."""
    parts = partitions(Path(folder))
    check_columns(parts, model)
    out, tally = ChunkWriter(output_path), _Tally()
    try:
        scored = (map_on_dask(score_partition, model, [(p,) for p in parts], dask_address, n_workers) if dask
                  else (score_partition(model, p) for p in parts))
        for table, problems, rows, scored_rows in scored:
            out.write(table)
            tally.add(problems, rows, scored_rows)
        out.commit(_empty_schema(model, parts[0]))
    except BaseException:
        out.abandon()
        raise
    return tally.result()


def _empty_schema(model: TabularModel, part: Partition) -> pa.Schema:
    empty = part.schema.empty_table().to_pandas()
    for name in OUTPUT_COLUMNS:
        empty[name] = pd.Series(dtype=object)
    empty["probability"], empty["score"] = empty["probability"].astype(float), empty["score"].astype(float)
    return pa.Table.from_pandas(_typed(empty, model), preserve_index=False).schema.remove_metadata()


def map_on_dask(fn, shared, calls: list[tuple], address: str | None, n_workers: int) -> Iterator:
    """``fn(shared, *args)`` for each ``args`` of ``calls`` as a Dask task (``fn`` module-level: workers import it);
    ``shared`` (e.g. the model) is scattered once to every worker. Results come back in the order of
    ``calls``, at most two tasks per worker thread in flight, so this process holds a bounded number of them.

    ``address``: a scheduler (``tcp://host:port``); None starts a LocalCluster of ``n_workers`` processes."""
    from distributed import Client

    from tabpipe.executors.dask import CONNECT_TIMEOUT_S, local_cluster

    cluster = None if address else local_cluster(n_workers)
    try:
        client = Client(address or cluster, timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:   # refused, unreachable, timed out
        if cluster is not None:
            cluster.close()
        raise TabpipeError(f"training.executor.address: cannot reach the Dask scheduler at {address} ({exc})") from None
    try:
        remote = client.scatter(shared, broadcast=True)
        threads = max(1, sum(client.nthreads().values()))
        window = 2 * threads
        log.info("%d files as tasks on the Dask cluster at %s (%d worker threads)", len(calls),
                 client.scheduler.address, threads)
        pending: deque = deque()
        queue = iter(calls)
        for args in queue:
            pending.append(client.submit(fn, remote, *args, pure=False))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()   # in order; a failed task raises its error here
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(client.submit(fn, remote, *nxt, pure=False))
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

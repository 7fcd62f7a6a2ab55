"""Compaction of the columnar prediction log: the many small files of a closed hour merged into a few.

Every write of the log makes a file per hour and model version: the service's background writer one a
second on a busy service, the stream consumer one per micro-batch. Reading a file has a fixed cost (open,
footer, schema: milliseconds) besides its rows, so a week of a busy service (hundreds of thousands of
files) would be read mostly in overheads. ``compact`` merges, for each hour that closed at least
``older_than`` ago, the files of each model version into files of up to ``MAX_ROWS`` rows, in the index's
order: a window reads the same rows in the same order before and after, so a monitoring run's result
does not change.

Safe beside writers and readers:
- only closed hours are merged; a file written into one later stays apart until the next compaction;
- a merged file is written under a temporary name and renamed, then one transaction swaps the index
  (``HistoryStore.replace_log_files``); when another compaction swapped those files first, nothing changes
  and the merged file is deleted;
- a replaced file stays on disk for ``grace`` (a reader that listed it before the swap can finish with
  it); a later compaction deletes it, and the temporary files of writes that died (``.*.tmp``) once they
  are older than ``grace``. A Parquet file the index does not name is only counted, never deleted: the
  folder may be shared with another store that does name it;
- files whose columns cannot be put in one file without changing a type (a column of text in one file and
  of numbers in another), and files that cannot be read, are left as they are and reported.
Design notes: docs/monitoring_store.md#compaction
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tabpipe.history.columnar import COMPRESSION, ROW_GROUP_ROWS, WrittenFile, _safe

MAX_ROWS = 1_000_000      # rows of a merged file at most (a file larger than this alone is left as it is)


@dataclass
class Compaction:
    """What one ``compact`` call did."""

    groups: int = 0                                   # (hour, model version) groups merged
    files_before: int = 0                             # files those groups had
    files_after: int = 0                              # files they have now
    rows: int = 0                                     # rows moved into merged files
    deleted: int = 0                                  # replaced files past their grace, dead temporary files
    unindexed: int = 0                                # Parquet files of the folder the index does not name (kept)
    skipped: list[str] = field(default_factory=list)  # groups left as they are, with why

    def as_dict(self) -> dict:
        return {"groups": self.groups, "files_before": self.files_before, "files_after": self.files_after,
                "rows": self.rows, "deleted": self.deleted, "unindexed": self.unindexed, "skipped": list(self.skipped)}


def compact(store, *, now: datetime, older_than: timedelta = timedelta(hours=1),
            grace: timedelta = timedelta(hours=1), max_rows: int = MAX_ROWS) -> Compaction:
    """Merge the log files of every hour closed at least ``older_than`` before ``now`` (aware), then delete
    the files replaced more than ``grace`` ago and the dead temporary files older than that (``sweep``)."""
    done = Compaction()
    if store.log_dir is None:
        return done
    cut = (now - older_than).astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    groups: dict[tuple, list[dict]] = {}         # (hour, version) -> its files in the index's order
    for f in store.log_files(until=cut):         # first_logged_at < cut: exactly the files of hours before it
        groups.setdefault((f["hour"], f["model_version"]), []).append(f)
    for (hour, version), files in groups.items():
        if len(files) > 1:
            _merge(store, hour, version, files, max_rows, done, now)
    done.deleted, done.unindexed = sweep(store, before=now - grace)
    return done


def _merge(store, hour: datetime, version: str, files: list[dict], max_rows: int, done: Compaction,
           now: datetime) -> None:
    """One (hour, version) group's files merged into runs of at most ``max_rows`` rows, swapped in the index."""
    where = f"hour {hour:%Y-%m-%dT%H} of {version}"
    try:
        schemas = [pq.read_schema(f["path"]) for f in files]
    except (OSError, pa.ArrowException) as exc:     # missing, unreadable
        done.skipped.append(f"{where}: {len(files)} files left as they are: a file cannot be read ({exc})")
        return
    try:
        schema = pa.unify_schemas(schemas)           # only a null column may take another file's type
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        done.skipped.append(f"{where}: {len(files)} files left as they are: their columns differ in type ({exc})")
        return
    runs, run, rows = [], [], 0
    for f in files:
        if run and rows + f["rows"] > max_rows:
            runs.append(run)
            run, rows = [], 0
        run.append(f)
        rows += f["rows"]
    runs.append(run)
    old = [f for r in runs if len(r) > 1 for f in r]
    if not old:
        return
    written = []
    try:
        for r in (r for r in runs if len(r) > 1):
            written.append(_write(store.log_dir, hour, version, r, schema))
    except (OSError, pa.ArrowException) as exc:       # a file vanished or is damaged, the disk is full: as it was
        for w in written:
            (store.log_dir / w.path).unlink(missing_ok=True)
        done.skipped.append(f"{where}: {len(files)} files left as they are: {type(exc).__name__}: {exc}")
        return
    except BaseException:
        for w in written:
            (store.log_dir / w.path).unlink(missing_ok=True)
        raise
    if not store.replace_log_files(old, written, at=now):
        for w in written:
            (store.log_dir / w.path).unlink(missing_ok=True)
        done.skipped.append(f"{where}: another process replaced these files first; left to it")
        return
    done.groups += 1
    done.files_before += len(old)
    done.files_after += len(written)
    done.rows += sum(w.rows for w in written)


def _write(folder: Path, hour: datetime, version: str, files: list[dict], schema: pa.Schema) -> WrittenFile:
    """``files`` (in order) written as one file of ``schema`` under ``folder``: row groups of ``ROW_GROUP_ROWS``."""
    relative = f"hour={hour:%Y-%m-%dT%H}/{_safe(version)}-{uuid.uuid4().hex}.parquet"
    path = folder / relative
    temporary = path.with_name("." + path.name + ".tmp")
    rows, pending, waiting = 0, [], 0
    try:
        with pq.ParquetWriter(temporary, schema, compression=COMPRESSION) as writer:
            for f in files:
                for batch in pq.ParquetFile(f["path"]).iter_batches(batch_size=ROW_GROUP_ROWS):
                    pending.append(_conformed(pa.Table.from_batches([batch]), schema))
                    waiting += batch.num_rows
                    if waiting >= ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                        rows, pending, waiting = rows + waiting, [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                rows += waiting
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return WrittenFile(relative, hour, version, rows, min(f["first_logged_at"] for f in files),
                       max(f["last_logged_at"] for f in files))


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order: a column the file lacks is all null, a null column typed."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def sweep(store, *, before: datetime) -> tuple[int, int]:
    """Delete the files retired before ``before`` (aware) and the temporary files (``.*.tmp``: a write that died
    before its rename) last changed before it; count the Parquet files the index does not name (kept: another
    store sharing the folder may name them). Returns (deleted, unindexed)."""
    retired = store.retired_log_files(before)
    for f in retired:
        f["path"].unlink(missing_ok=True)
    store.forget_retired([f["id"] for f in retired])
    deleted, limit = len(retired), before.timestamp()
    for path in store.log_dir.glob("hour=*/.*.tmp"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                deleted += 1
        except FileNotFoundError:   # renamed or deleted meanwhile
            continue
    known = store.indexed_paths()
    unindexed = sum(str(path.resolve()) not in known for path in store.log_dir.glob("hour=*/*.parquet"))
    return deleted, unindexed

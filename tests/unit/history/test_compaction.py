"""Compaction of the columnar prediction log (tabpipe.history.compaction): a closed hour's small files merged
into few, with every row, its order and its outcome kept, so a monitoring window counts exactly what it
counted before; replaced files kept for a grace period, orphans swept, conflicting files left alone."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from log_helpers import SCHEMA, T0, counting, logged, same
from tabpipe.history.columnar import INPUT
from tabpipe.history.compaction import compact, sweep
from tabpipe.history.logread import columnar_log_chunks
from tabpipe.history.store import HistoryStore
from tabpipe.monitoring.window_stats import stream_stats

HOURS = 6


@pytest.fixture()
def store(tmp_path):
    """A Parquet log of 2,400 rows over 6 hours written 40 at a time (one file per write and hour), a quarter
    labelled."""
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.sqlite'}", log_format="parquet")
    for first in range(0, 2400, 40):
        store.log_predictions(logged(40, seed=first, first=first, total=2400, hours=HOURS))
    store.attach_outcomes({f"id{i}": int(i % 3 == 0) for i in range(0, 2400, 4)})
    yield store
    store.close()


@pytest.fixture()
def spec():
    return counting(train_seed=99)[0]


def counted(store, spec, files=None, since=None):
    chunks = columnar_log_chunks(store, SCHEMA, since=since, until=None, version="v1", files=files)
    return stream_stats(chunks, spec, where="the log")


def test_closed_hours_are_merged_and_a_window_counts_what_it_counted(store, spec):
    before = counted(store, spec)
    cut = T0 + timedelta(minutes=20)          # mid-hour: the first file of the window is read in part
    before_cut = counted(store, spec, since=cut)
    listed = store.predictions(version="v1", with_inputs=True)
    files = store.log_files(version="v1")
    assert len(files) > 60                      # a file per write, two where a write spans an hour

    done = compact(store, now=T0 + timedelta(hours=HOURS + 2))

    after = store.log_files(version="v1")
    assert len(after) == len({f["hour"] for f in files}) == done.files_after + (len(files) - done.files_before)
    assert done.groups == len(after) and done.rows == 2400 and done.skipped == []
    assert all(f["path"].exists() for f in files)            # the replaced files wait for their grace period
    same(counted(store, spec), before)
    same(counted(store, spec, since=cut), before_cut)
    assert before.labelled.sum() == 600                      # outcomes still join on row_id
    pd.testing.assert_frame_equal(store.predictions(version="v1", with_inputs=True), listed)


def test_an_open_hour_is_left_to_its_writers(store, spec):
    files = store.log_files(version="v1")
    last = max(f["hour"] for f in files)
    now = last.replace(tzinfo=timezone.utc) + timedelta(minutes=90)     # the last hour closed 30 minutes ago
    compact(store, now=now)
    after = store.log_files(version="v1")
    assert [f["id"] for f in after if f["hour"] == last] == [f["id"] for f in files if f["hour"] == last]
    assert len({f["hour"] for f in after if f["hour"] != last}) == len([f for f in after if f["hour"] != last])


def test_a_reader_that_listed_the_old_files_finishes_and_the_next_compaction_deletes_them(store, spec):
    listed = store.log_files(version="v1")
    before = counted(store, spec)
    now = T0 + timedelta(hours=HOURS + 2)
    compact(store, now=now, grace=timedelta(hours=1))
    same(counted(store, spec, files=listed), before)          # the old list still reads, file for file
    assert compact(store, now=now + timedelta(minutes=30)).deleted == 0      # within the grace period
    assert all(f["path"].exists() for f in listed)
    done = compact(store, now=now + timedelta(hours=2))
    assert done.deleted == len(listed) and not any(f["path"].exists() for f in listed)
    same(counted(store, spec), before)


def test_sweep_deletes_dead_temporary_files_and_only_counts_unindexed_ones(store):
    folder = store.log_files()[0]["path"].parent
    unindexed, old_temporary, fresh_temporary = (folder / "v1-other-store.parquet", folder / ".v1-x.parquet.tmp",
                                                 folder / ".v1-y.parquet.tmp")
    for path in (unindexed, old_temporary, fresh_temporary):
        path.write_bytes(b"not indexed")
    day_ago = (datetime.now(timezone.utc) - timedelta(days=1)).timestamp()
    for path in (unindexed, old_temporary):
        os.utime(path, (day_ago, day_ago))
    indexed = [f["path"] for f in store.log_files()]
    assert sweep(store, before=datetime.now(timezone.utc) - timedelta(hours=1)) == (1, 1)
    assert not old_temporary.exists() and fresh_temporary.exists()
    assert unindexed.exists()                     # another store sharing the folder may name it: never deleted
    assert all(p.exists() for p in indexed)


def test_versions_logging_in_the_same_hour_are_merged_apart_each_in_its_order(tmp_path):
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.sqlite'}", log_format="parquet")
    with store:
        rows = logged(60, seed=5, hours=0.25)           # 09:40 .. 09:55
        for i in range(0, 60, 10):                  # v1, v2, v1, ... files interleaved in one hour
            store.log_predictions([{**r, "model_version": "v1" if i % 20 == 0 else "v2"} for r in rows[i:i + 10]])
        before = {v: store.predictions(version=v, with_inputs=True) for v in ("v1", "v2")}
        done = compact(store, now=T0 + timedelta(hours=3))
        assert (done.groups, done.files_before, done.files_after) == (2, 6, 2)
        for version, frame in before.items():
            pd.testing.assert_frame_equal(store.predictions(version=version, with_inputs=True), frame)


def test_a_group_with_an_unreadable_file_is_left_as_it_is(store):
    files = store.log_files(version="v1")
    hours = sorted({f["hour"] for f in files})
    damaged = next(f for f in files if f["hour"] == hours[1])
    damaged["path"].write_bytes(b"PAR1 truncated")
    done = compact(store, now=T0 + timedelta(hours=HOURS + 2))
    assert len(done.skipped) == 1 and "cannot be read" in done.skipped[0] and f"{hours[1]:%Y-%m-%dT%H}" in done.skipped[0]
    kept = [f for f in store.log_files(version="v1") if f["hour"] == hours[1]]
    assert [f["id"] for f in kept] == [f["id"] for f in files if f["hour"] == hours[1]]
    assert done.groups == len(hours) - 1


def test_files_whose_columns_differ_in_type_are_left_as_they_are(tmp_path):
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.sqlite'}", log_format="parquet")
    with store:
        hour = T0.replace(minute=0)

        def row(i, x):
            return {"request_id": f"r{i}", "row_index": 0, "row_id": f"id{i}", "model_version": "v1",
                    "logged_at": hour + timedelta(minutes=i), "inputs": {"x": x}, "probability": 0.5,
                    "prediction": 0, "warnings": []}
        store.log_predictions([row(0, 1.5), row(1, 2.5)])
        store.log_predictions([row(2, "high"), row(3, "low")])                  # text where numbers were
        store.log_predictions([row(70, 1.0)])                                    # the next hour: one file
        store.log_predictions([row(71, None)])                                   # all null: widens to double
        done = compact(store, now=hour + timedelta(hours=4))
        assert done.groups == 1 and done.files_before == 2 and done.files_after == 1
        assert len(done.skipped) == 1 and "differ in type" in done.skipped[0] and "2026-03-01T09" in done.skipped[0]
        frame = store.predictions(version="v1", with_inputs=True)
        assert [r["x"] for r in frame["inputs"]] == [1.5, 2.5, "high", "low", 1.0, None]


def test_a_group_is_split_into_files_of_at_most_max_rows_in_order(store, spec):
    before = counted(store, spec)
    compact(store, now=T0 + timedelta(hours=HOURS + 2), max_rows=150)
    files = store.log_files(version="v1")
    assert max(f["rows"] for f in files) <= 150 and len(files) > HOURS + 1
    same(counted(store, spec), before)


def test_a_group_another_process_replaced_first_is_left_to_it(store, spec, monkeypatch):
    files = store.log_files(version="v1")
    folder_files = set(store.log_dir.glob("hour=*/*.parquet"))
    monkeypatch.setattr(store, "replace_log_files", lambda old, new, at: False)
    done = compact(store, now=T0 + timedelta(hours=HOURS + 2))
    assert done.groups == 0 and done.skipped and all("another process" in s for s in done.skipped)
    assert set(store.log_dir.glob("hour=*/*.parquet")) == folder_files     # its merged files deleted
    assert [f["id"] for f in store.log_files(version="v1")] == [f["id"] for f in files]


def test_replacing_files_already_replaced_changes_nothing(store):
    files = store.log_files(version="v1")[:3]
    assert store.replace_log_files(files, []) is True
    left = store.log_files(version="v1")
    assert store.replace_log_files(files[:1] + left[:1], []) is False           # one of them is gone: rolled back
    assert [f["id"] for f in store.log_files(version="v1")] == [f["id"] for f in left]
    assert len(store.retired_log_files(datetime.now(timezone.utc) + timedelta(days=1))) == 3


def test_inputs_columns_keep_their_names_and_types(store):
    import pyarrow.parquet as pq

    before = pq.read_schema(store.log_files(version="v1")[0]["path"])
    compact(store, now=T0 + timedelta(hours=HOURS + 2))
    after = pq.read_schema(store.log_files(version="v1")[0]["path"])
    assert {f.name: f.type for f in after if f.name.startswith(INPUT)} == \
        {f.name: f.type for f in before if f.name.startswith(INPUT)}

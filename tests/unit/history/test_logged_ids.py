"""``LoggedIds``: the stream consumer's cache of the log's row ids answers as ``HistoryStore.logged_row_ids``."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tabpipe.history.logged_ids import LoggedIds
from tabpipe.history.store import HistoryStore

T0 = datetime(2026, 6, 1, 12, 0, 0)


def _rows(ids, at: datetime) -> list[dict]:
    return [{"request_id": "1-0", "row_index": i, "row_id": row_id, "model_version": "v1", "probability": 0.5,
             "prediction": 1, "inputs": {"x": 1.0}, "logged_at": at} for i, row_id in enumerate(ids)]


@pytest.mark.parametrize("log_format", ["sql", "parquet"])
def test_answers_are_the_stores_as_files_arrive_and_the_window_moves(tmp_path, log_format):
    with HistoryStore.open(f"sqlite:///{tmp_path}/h.sqlite", log_dir=tmp_path / "log", log_format=log_format) as store, \
            HistoryStore.open(f"sqlite:///{tmp_path}/h.sqlite", log_dir=tmp_path / "log",
                              log_format="parquet") as other:
        cache = LoggedIds(store)
        wanted = ["a", "b", "c", "d", "e", "f", "z"]
        store.log_predictions(_rows(["a", "b"], T0))
        asked = []
        for step, (writer, ids) in enumerate([(store, ["c"]), (other, ["d", "a"]), (store, ["e"]), (other, ["f"])]):
            at = T0 + timedelta(minutes=2 * (step + 1))
            writer.log_predictions(_rows(ids, at))          # another consumer's file too
            for since in (T0 - timedelta(minutes=1), T0 + timedelta(minutes=step), at):
                asked.append((since, cache.logged(wanted, since=since), store.logged_row_ids(wanted, since=since)))
        assert all(got == expected for _, got, expected in asked), asked
        assert asked[-1][1] == {"f"} and asked[0][1] == {"a", "b", "c"}
        assert cache.floor > T0                              # the window moved on: older questions went to the store
        assert cache.logged(wanted, since=T0 - timedelta(days=1)) == set("abcdef")


def test_past_max_ids_older_ids_are_dropped_and_asked_of_the_store(tmp_path):
    with HistoryStore.open(f"sqlite:///{tmp_path}/h.sqlite", log_dir=tmp_path / "log", log_format="parquet") as store:
        cache = LoggedIds(store, max_ids=3)
        store.log_predictions(_rows(["a", "b", "c", "d"], T0))
        assert cache.logged(["a", "z"], since=T0) == {"a"} and len(cache.known) == 4
        store.log_predictions(_rows(["e"], T0 + timedelta(seconds=10)))
        assert cache.logged(["a", "e"], since=T0 + timedelta(seconds=5)) == {"e"}
        assert set(cache.known) == {"e"}
        assert cache.logged(["a", "e"], since=T0) == {"a", "e"}   # before the floor: the store's own answer

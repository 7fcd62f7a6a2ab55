"""``log_once``: a row id the prediction log already holds is not written again (a redelivered stream message)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tabpipe.history.predlog import log_once
from tabpipe.history.store import HistoryStore


def _row(row_id: str, p: float) -> dict:
    return {"request_id": "1-0", "row_index": 0, "row_id": row_id, "model_version": "v1", "probability": p,
            "prediction": int(p >= 0.5), "inputs": {"x": p}}


def test_logged_ids_and_repeats_within_the_rows_are_skipped(tmp_path):
    with HistoryStore.open(f"sqlite:///{tmp_path}/h.sqlite") as store:
        assert log_once(store, [_row("a", 0.1), _row("b", 0.2)]) == (2, 0)
        assert log_once(store, [_row("b", 0.9), _row("c", 0.3), _row("c", 0.4)]) == (1, 2)
        assert log_once(store, []) == (0, 0)
        log = store.predictions().set_index("row_id")
    assert sorted(log.index) == ["a", "b", "c"]
    assert (log.loc["b", "probability"], log.loc["c", "probability"]) == (0.2, 0.3)   # the first write stays


@pytest.mark.parametrize("log_format", ["sql", "parquet"])
def test_since_bounds_the_search_to_rows_logged_from_then(tmp_path, log_format):
    """A stream consumer knows its batch's rows cannot have been logged before their messages entered the
    stream: an id logged earlier than ``since`` (the same customer scored last week) is logged again, one
    logged from ``since`` on (a redelivered batch) is not."""
    with HistoryStore.open(f"sqlite:///{tmp_path}/h.sqlite", log_dir=tmp_path / "log", log_format=log_format) as store:
        store.log_predictions([{**_row("old", 0.1), "logged_at": "2026-01-01T00:00:00Z"}])
        store.log_predictions([{**_row("new", 0.2), "logged_at": "2026-06-01T00:00:00Z"}])
        since = datetime(2026, 5, 1, tzinfo=timezone.utc)
        assert store.logged_row_ids(["old", "new"], since=since) == {"new"}
        assert store.logged_row_ids(["old", "new"]) == {"old", "new"}
        assert log_once(store, [_row("old", 0.5), _row("new", 0.6)], since=since) == (1, 1)
        assert sorted(store.predictions()["row_id"]) == ["new", "old", "old"]

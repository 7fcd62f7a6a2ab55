"""``log_once``: a row id the prediction log already holds is not written again (a redelivered stream message)."""
from __future__ import annotations

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

"""Reading the prediction log back in bulk (``monitoring.logread``) gives exactly what the row-by-row
reading gave (``HistoryStore.predictions`` -> ``pd.DataFrame.from_records``): the same frame after the
schema check, the same problems, the same monitoring result — on SQLite and a real PostgreSQL server,
with values that take the bulk path and values that force the careful path, across chunk borders."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from pg_server import empty_url_fixture, postgres_url_fixture  # noqa: F401  (fixtures `empty_url`, `postgres_url`)
from tabpipe.config import AlertsSection, RulesSection
from tabpipe.model import TabularModel
from tabpipe.history.logread import LogRows, _bulk, arrow_schema, inputs_frame, read_window
from tabpipe.monitoring.monitor import MonitorSettings, labelled_rows, run_monitor, window_from_log
from tabpipe.drift.profile import build_profile
from tabpipe.history.store import HistoryStore, _json_text
from tabpipe.model.features import build_preprocessor
from tabpipe.schema import Schema, coerce_frame

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
SCHEMA = Schema.model_validate({
    "target": {"name": "y", "positive": 1},
    "columns": {
        "key": {"type": "string", "role": "id"},
        "amount": {"type": "float", "min": 0, "max": 1000},
        "count": {"type": "int", "min": 0},
        "flag": {"type": "bool"},
        "colour": {"type": "category", "categories": ["red", "green", "blue"]},
        "note": {"type": "string", "role": "ignore"},
        "seen": {"type": "datetime"},
        "secret": {"type": "category", "sensitive": True},
    },
})


def clean_rows(n: int, seed: int) -> list[dict]:
    """Well-typed inputs as the service logs them (sensitive ``secret`` dropped: absent from every row)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append({
            "key": f"K{seed}-{i}",
            "amount": None if rng.random() < 0.1 else float(rng.lognormal(3, 1)),      # full float64 precision
            "count": None if rng.random() < 0.1 else int(rng.integers(0, 50)),
            "flag": None if rng.random() < 0.1 else bool(rng.random() < 0.5),
            "colour": [None, "red", "green", "blue", "purple", "", "  "][int(rng.integers(0, 7))],
            "note": ["ok", "ünïcode ✓", "", "\x1c", "line\nbreak", None][int(rng.integers(0, 6))],
            "seen": (T0 + timedelta(seconds=float(rng.integers(0, 10**6)))).isoformat() if rng.random() > 0.1 else None,
            "extra": "not a schema column",
        })
    return rows


ODD_ROWS = [   # each forces its chunk onto the careful path, or tests an edge of the bulk one
    {"amount": "12.5", "count": 3, "colour": "red"},                  # text in a number column
    {"amount": 1.0, "count": 7, "colour": 42},                        # a number in a category column
    {"amount": [1, 2], "count": 1, "colour": "blue"},                 # a nested value
    {"amount": 2.0, "count": 10**20, "colour": "green"},              # an int beyond int64 (fits float64)
    {"amount": 3.0, "count": 2, "flag": "yes", "colour": "red"},      # text in a bool column
    {"amount": 4.0, "count": 5.5, "colour": "red", "seen": "yesterday"},   # not whole / not a date
    {"amount": -1.0, "count": -2, "colour": "red", "seen": "2026-03-01T10:00:00+02:00"},
]


def test_which_chunks_take_the_bulk_path():
    """Clean rows (and numbers that only look odd) are read by Arrow; a value of the wrong JSON kind sends
    its chunk down the careful path."""
    types = arrow_schema(SCHEMA)
    assert _bulk([_json_text(row) for row in clean_rows(50, seed=1)], types) is not None
    assert [_bulk([_json_text(row)], types) is None for row in ODD_ROWS] == [True, True, True, False, True, False, False]


def log(store: HistoryStore, inputs: list[dict], *, start: int = 0, labelled_every: int = 3) -> None:
    rng = np.random.default_rng(start)
    store.log_predictions([{"request_id": "r", "row_index": start + i, "model_version": "v0001",
                            "logged_at": T0 + timedelta(seconds=start + i), "inputs": row,
                            "probability": float(rng.random()), "prediction": "0"} for i, row in enumerate(inputs)])
    store.attach_outcomes({f"r:{start + i}": int(rng.random() < 0.3) for i in range(0, len(inputs), labelled_every)})


def reference(store: HistoryStore) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """How ``tabpipe monitor`` read the log before: parsed JSON per row, a frame from the dicts."""
    logged = store.predictions()
    return (pd.DataFrame.from_records(list(logged["inputs"])), logged["probability"].to_numpy(dtype=float),
            logged["outcome"].reset_index(drop=True))


def assert_same_check(old: pd.DataFrame, new: pd.DataFrame) -> None:
    old_typed, old_problems = coerce_frame(old, SCHEMA, with_target=False)
    new_typed, new_problems = coerce_frame(new, SCHEMA, with_target=False)
    pd.testing.assert_frame_equal(new_typed, old_typed)
    assert new_problems == old_problems


@pytest.fixture
def store(empty_url):
    with HistoryStore.open(empty_url) as opened:
        yield opened


@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_bulk_read_equals_the_row_by_row_read(store, chunk_rows):
    rows = clean_rows(40, seed=1)
    log(store, rows[:20] + ODD_ROWS + rows[20:], start=0)
    old, old_proba, old_outcomes = reference(store)
    new = read_window(store, SCHEMA, since=None, until=None, version=None, chunk_rows=chunk_rows)
    assert len(new.rows) == len(old) == len(rows) + len(ODD_ROWS)
    assert "secret" not in new.rows.columns and "secret" not in old.columns      # absent in every row: absent
    assert "extra" not in new.rows.columns                                        # not a schema column
    assert_same_check(old, new.rows)
    np.testing.assert_array_equal(new.proba, old_proba)
    pd.testing.assert_series_equal(new.outcomes, old_outcomes)
    clean = new.rows.iloc[:20]                                                    # the bulk path keeps full precision
    sent = np.array([np.nan if r["amount"] is None else r["amount"] for r in rows[:20]])
    np.testing.assert_array_equal(clean["amount"].to_numpy(dtype=float), sent)


def test_window_bounds_and_version_filter_as_predictions(store):
    log(store, clean_rows(30, seed=2), start=0)
    since, until = T0 + timedelta(seconds=5), T0 + timedelta(seconds=17)
    new = read_window(store, SCHEMA, since=since, until=until, version="v0001", chunk_rows=4)
    old = store.predictions(since=since, until=until, version="v0001")
    assert len(new.rows) == len(old) == 12
    assert_same_check(pd.DataFrame.from_records(list(old["inputs"])), new.rows)
    assert read_window(store, SCHEMA, since=since, until=until, version="v0002").rows.empty


def test_a_column_sent_as_null_is_present_one_never_sent_is_absent():
    texts = [json.dumps({"amount": 1.0, "note": None}), None, json.dumps({"amount": 2.0, "note": None})]
    frame = inputs_frame(texts, SCHEMA)
    expected = pd.DataFrame.from_records([json.loads(t) if t else {} for t in texts])
    assert "note" in frame.columns and "colour" not in frame.columns
    assert_same_check(expected, frame)
    # a key that only appears inside a text value is not a key
    assert "note" not in inputs_frame([json.dumps({"amount": 1.0, "colour": '"note":'})], SCHEMA).columns


def test_monitoring_result_is_the_same_from_both_readings(store, tmp_path):
    """The whole monitoring run (quality, PSI, metrics, decision) on the window read both ways."""
    train = pd.DataFrame.from_records(clean_rows(400, seed=3)).assign(secret="a")   # logged without it (dropped)
    typed, _ = coerce_frame(train, SCHEMA, with_target=False)
    y = (np.random.default_rng(0).random(len(train)) < 0.3).astype(int)
    pre = build_preprocessor(SCHEMA).fit(typed)
    model = TabularModel(schema=SCHEMA, preprocessor=pre, estimator=LogisticRegression(max_iter=500).fit(pre.transform(typed), y),
                         threshold=0.5, labels=(0, 1))
    profile = build_profile(typed, SCHEMA, model.predict_proba(train), y, 0.5)
    log(store, clean_rows(600, seed=4)[:300] + ODD_ROWS + clean_rows(600, seed=4)[300:], start=0)
    old_rows, old_proba, old_outcomes = reference(store)
    new = read_window(store, SCHEMA, since=None, until=None, version=None, chunk_rows=250)
    settings = MonitorSettings(rules=RulesSection(), alerts=AlertsSection(), psi_min_rows=100, evidently=False,
                               evidently_max_rows=20_000, evidently_drift_share=0.5, seed=42)
    results = []
    for name, window in (("old", window_from_log(LogRows(old_rows, old_proba, old_outcomes), T0, T0)),
                         ("new", window_from_log(new, T0, T0))):
        result = run_monitor(window, model=model, version="v0001", profile=profile, reference=None,
                             out_dir=tmp_path / name, settings=settings, store=None, run_id="same", now=T0)
        results.append({k: v for k, v in result.items() if k not in ("reports", "stage_seconds")})
        extra = labelled_rows(window, "y", (0, 1))
        results[-1]["labelled"] = coerce_frame(extra, SCHEMA, with_target=True)[0].to_dict("list")
    assert results[0]["window"]["rows"] == 600 + len(ODD_ROWS) and results[0]["quality"]["rules"]
    assert json.dumps(results[0], sort_keys=True, default=str) == json.dumps(results[1], sort_keys=True, default=str)

"""The reference profile: bins and shares by hand, skipped datetimes, calibration choice, JSON round trip."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tabpipe.drift.profile import ISOTONIC_MIN, build_profile, fit_calibration, read_profile, write_profile
from tabpipe.drift.psi import frame_psi
from tabpipe.schema import Schema

SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "num": {"type": "float"}, "const": {"type": "int"}, "flag": {"type": "bool"},
    "cat": {"type": "category"}, "when": {"type": "datetime"}, "key": {"type": "string", "role": "id"}}})


def train_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "num": np.arange(1, 11, dtype=float),
        "const": np.full(10, 3.0),
        "flag": [0.0] * 7 + [1.0] * 2 + [np.nan],
        "cat": ["a"] * 6 + ["b"] * 3 + [np.nan],
        "when": pd.date_range("2024-01-01", periods=10, freq="h"),
        "y": [0, 1] * 5,
    })


def test_feature_bins_and_shares_by_hand():
    proba = np.array([0.05, 0.15, 0.95, 0.55])
    profile = build_profile(train_frame(), SCHEMA, proba, np.array([0, 0, 1, 1]), 0.5, bins=2, max_categories=1)
    f = profile["features"]
    assert f["num"] == {"kind": "numeric", "edges": [5.5], "shares": [0.5, 0.5, 0.0], "rows": 10, "null_rate": 0.0}
    assert f["const"]["edges"] == [3.0] and f["const"]["shares"] == [1.0, 0.0, 0.0]
    # bool: quantiles of seven 0s and two 1s at 0.5 -> 0; bins (<= 0, > 0, missing)
    assert f["flag"]["edges"] == [0.0] and f["flag"]["shares"] == pytest.approx([0.7, 0.2, 0.1])
    # max_categories=1 keeps 'a'; 'b' is counted under other
    assert f["cat"] == {"kind": "categorical", "categories": ["a"], "shares": pytest.approx([0.6, 0.3, 0.1]),
                        "rows": 10, "null_rate": pytest.approx(0.1)}
    assert set(profile["skipped"]) == {"when"} and "key" not in f
    # scores: ten equal bins over [0, 1]
    assert profile["scores"]["shares"] == pytest.approx([0.25, 0.25, 0, 0, 0, 0.25, 0, 0, 0, 0.25, 0])
    assert profile["scores"]["threshold"] == 0.5 and profile["scores"]["positives"] == 2
    assert profile["calibration"]["method"] == "platt"   # 2 rows of each class: too few for isotonic


def test_the_training_data_itself_has_zero_psi():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"num": rng.normal(size=2000), "const": 3.0, "flag": rng.integers(0, 2, 2000).astype(float),
                          "cat": rng.choice(["a", "b", "c"], 2000), "when": pd.Timestamp("2024-01-01"), "y": 0})
    profile = build_profile(train, SCHEMA, rng.random(500), rng.integers(0, 2, 500), 0.5)
    assert len(profile["features"]["num"]["edges"]) == 9            # 10 quantile bins
    result = frame_psi(profile["features"], train)
    assert {n: r.value for n, r in result.items()} == pytest.approx({"num": 0, "const": 0, "flag": 0, "cat": 0})


def test_calibration_choice():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    assert fit_calibration(p, y, fitted_on="t")["method"] == "isotonic"
    few = np.r_[np.ones(ISOTONIC_MIN - 1), np.zeros(3000)].astype(int)
    platt = fit_calibration(rng.random(len(few)), few, fitted_on="t")
    assert platt["method"] == "platt" and {"a", "b"} <= set(platt)
    assert fit_calibration(p[:10], np.zeros(10, int), fitted_on="t")["method"] == "identity"


def test_json_round_trip_and_bad_files(tmp_path):
    profile = build_profile(train_frame(), SCHEMA, np.array([0.1, 0.9]), np.array([0, 1]), 0.5)
    path = write_profile(tmp_path / "profile.json", profile)
    assert read_profile(path) == json.loads(json.dumps(profile))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_profile(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="other.json: not a tabpipe reference profile"):
        read_profile(tmp_path / "other.json")

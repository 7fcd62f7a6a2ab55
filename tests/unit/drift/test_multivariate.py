"""Multivariate drift (domain classifier AUC): a reversed correlation that no single column shows is seen,
windows drawn like the reference raise it in at most 1 % of cases, and the threshold and encoding hold."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabpipe.config import RulesSection
from tabpipe.drift.multivariate import (
    RESAMPLINGS,
    calibrate,
    categorical_mask,
    domain_auc,
    encode,
    null_sd,
    rank_auc,
    threshold,
)
from tabpipe.drift.profile import build_profile
from tabpipe.drift.psi import frame_psi
from tabpipe.monitoring.governance import Observations, decide
from tabpipe.schema import Schema

SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "a": {"type": "float"}, "b": {"type": "float"}, "x": {"type": "float"}, "c": {"type": "category"}}})
SAMPLE = 200          # rows of each side: small, so 300 classifier fits stay a few seconds


def rows(n: int, seed: int, *, reflect: bool = False) -> pd.DataFrame:
    """a, b standard normal with correlation 0.9 (``reflect``: -0.9; each column's distribution unchanged),
    x independent normal, c a category."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.9 * a + np.sqrt(1 - 0.81) * rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": -b if reflect else b, "x": rng.normal(size=n),
                         "c": rng.choice(["p", "q", "r"], n, p=[0.5, 0.3, 0.2]), "y": rng.integers(0, 2, n)})


@pytest.fixture(scope="module")
def published():
    """What a publish stores: the profile (with the calibration) of 20,000 training rows, and a reference
    sample of 5,000 of them (reference.parquet)."""
    train = rows(20_000, seed=0)
    proba = np.linspace(0.01, 0.99, 500)
    profile = build_profile(train, SCHEMA, proba, (proba > 0.5).astype(int), 0.5,
                            multivariate={"sample_rows": SAMPLE, "resamplings": RESAMPLINGS, "seed": 3})   # the shipped default
    return profile, train.sample(5_000, random_state=1)


def check(window: pd.DataFrame, published, seed: int = 42):
    profile, reference = published
    return domain_auc(reference, window, profile["features"], profile["multivariate"], sample_rows=SAMPLE,
                      min_rows=100, seed=seed)


def test_reversed_correlation_raises_watch_while_psi_stays_quiet(published):
    profile, _ = published
    window = rows(2_000, seed=11, reflect=True)
    psi = {name: r.value for name, r in frame_psi(profile["features"], window).items()}
    rules = RulesSection()
    assert set(psi) == {"a", "b", "x", "c"} and max(psi.values()) < rules.watch_psi_at_least   # per column: nothing
    result = check(window, published)
    assert result.status == "ok" and result.drifted and result.auc > 0.8 > result.threshold
    decision = decide(Observations(window="rotated", rows=len(window), roc_auc=0.85, psi=psi, drift_share=0.0,
                                   domain_auc=result.auc, domain_auc_threshold=result.threshold), rules)
    assert decision.decision == "watch"
    assert [r.rule for r in decision.reasons] == ["domain_auc_watch"]
    assert "multivariate drift: domain classifier ROC-AUC" in decision.reasons[0].message


def test_windows_like_the_reference_raise_it_at_most_one_percent_of_the_time(published):
    results = [check(rows(SAMPLE, seed=1_000 + i), published, seed=i) for i in range(200)]
    assert all(r.status == "ok" for r in results)
    limit = results[0].threshold
    assert 0.5 < limit < 0.5 + 4 * null_sd(SAMPLE, SAMPLE)     # a threshold with teeth, not one nothing reaches
    alarms = sum(r.drifted for r in results)
    assert alarms <= 2, f"{alarms} of 200 no-shift windows over {limit:.4f}"
    assert abs(np.mean([r.auc for r in results]) - 0.5) < 0.02


def test_a_mean_shift_of_one_column_is_seen_too(published):
    window = rows(1_000, seed=12)
    window["x"] += 1.0
    assert check(window, published).drifted


def test_same_seed_same_answer(published):
    window = rows(1_000, seed=13)
    assert check(window, published, seed=5) == check(window, published, seed=5)


def test_calibration_is_reproducible_and_stored_in_the_profile(published):
    profile, _ = published
    stored = profile["multivariate"]
    assert stored["status"] == "ok" and stored["sample_rows"] == SAMPLE and len(stored["null_auc"]) == RESAMPLINGS
    assert stored["features"] == ["a", "b", "x", "c"]
    again = calibrate(rows(20_000, seed=0), profile["features"], sample_rows=SAMPLE, resamplings=5, seed=3)
    assert again["null_auc"] == stored["null_auc"][:5]


def test_threshold_grows_for_smaller_windows_and_with_the_margin():
    calibration = {"sample_rows": 2000, "null_auc": list(0.5 + null_sd(2000, 2000) * np.linspace(-2.5, 2.5, 101))}
    big = threshold(calibration, 2000, 2000, margin=0.0)
    assert big == pytest.approx(0.5 + 2.5 * null_sd(2000, 2000), rel=0.1)
    assert threshold(calibration, 2000, 300, margin=0.0) > big
    assert threshold(calibration, 2000, 2000, margin=0.01) == pytest.approx(big + 0.01)
    assert threshold(calibration, 2000, 2000, false_alarm_rate=0.05, margin=0.0) < big


def test_categories_are_coded_as_in_the_profile_unseen_and_missing_apart():
    features = {"n": {"kind": "numeric"}, "k": {"kind": "categorical", "categories": ["p", "q"]}}
    frame = pd.DataFrame({"n": [1.5, np.nan, 3.0, 4.0], "k": ["q", "p", "new", None]})
    x = encode(frame, features)
    assert x[:, 0].tolist()[::2] == [1.5, 3.0] and np.isnan(x[1, 0])
    assert x[:3, 1].tolist() == [1.0, 0.0, 2.0] and np.isnan(x[3, 1])
    assert categorical_mask(features).tolist() == [False, True]


def test_rank_auc_counts_ties_half():
    from sklearn.metrics import roc_auc_score

    score, y = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.2]), np.array([0, 0, 1, 1, 1, 0])
    assert rank_auc(score, y) == pytest.approx(roc_auc_score(y, score))


@pytest.mark.parametrize("change, status", [
    ({"calibration": None}, "not_calibrated"),
    ({"calibration": {"status": "not_calibrated", "reason": "30 training rows"}}, "not_calibrated"),
    ({"window": rows(50, seed=2)}, "insufficient_data"),
    ({"window": pd.DataFrame({"other": [1.0] * 500})}, "no_features"),
])
def test_what_cannot_be_measured_says_why(published, change, status):
    profile, reference = published
    kw = {"window": rows(500, seed=2), "calibration": profile["multivariate"], **change}
    result = domain_auc(reference, kw["window"], profile["features"], kw["calibration"], min_rows=100)
    assert result.status == status and result.auc is None and not result.drifted and result.message


def test_too_few_training_rows_are_not_calibrated():
    profile = build_profile(rows(30, seed=0), SCHEMA, np.array([0.2, 0.8]), np.array([0, 1]), 0.5,
                            multivariate={"sample_rows": SAMPLE, "resamplings": 5, "seed": 0})
    assert profile["multivariate"]["status"] == "not_calibrated" and "30 training rows" in profile["multivariate"]["reason"]

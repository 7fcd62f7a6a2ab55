"""Label-free estimate (CBPE): hand-computed small cases, and agreement with realised metrics on generated data."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from tabpipe.monitoring.estimate import (
    apply_calibration,
    estimate,
    expected_average_precision,
    expected_confusion,
    expected_roc_auc,
)
from tabpipe.drift.profile import fit_calibration

IDENTITY = {"method": "identity"}


def test_two_rows_by_hand():
    score = np.array([0.8, 0.4])
    # expected ROC points: (0, 0), (0.2/0.8, 0.8/1.2), (1, 1) -> 1/12 + 5/8
    assert expected_roc_auc(score, score) == pytest.approx(17 / 24)
    # recall steps 2/3 then 1/3 at precisions 0.8 and 1.2/2
    assert expected_average_precision(score, score) == pytest.approx(2 / 3 * 0.8 + 1 / 3 * 0.6)
    assert expected_confusion(score, score >= 0.5) == pytest.approx({"tp": 0.8, "fp": 0.2, "fn": 0.4, "tn": 0.6})
    result = estimate(score, 0.5, IDENTITY)
    assert result["precision"] == pytest.approx(0.8)
    assert result["recall"] == pytest.approx(0.8 / 1.2)
    assert result["f1"] == pytest.approx(1.6 / 2.2)
    assert result["rows"] == 2 and result["assumptions"]


def test_tied_scores_are_one_step():
    assert expected_roc_auc(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(0.5)


def test_degenerate_windows_give_nan_not_an_error():
    assert np.isnan(expected_roc_auc(np.array([0.3, 0.4]), np.zeros(2)))      # no expected positive
    result = estimate(np.array([]), 0.5, IDENTITY)
    assert np.isnan(result["roc_auc"]) and result["rows"] == 0


@pytest.mark.parametrize("calibration, p, expected", [
    ({"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.2, 0.6]}, [0.25, 0.75, 1.0], [0.1, 0.4, 0.6]),
    ({"method": "isotonic", "x": [0.2, 0.6], "y": [0.1, 0.3]}, [0.0, 0.9], [0.1, 0.3]),     # clipped at the ends
    ({"method": "platt", "a": 1.0, "b": 0.0}, [0.25, 0.75], [0.25, 0.75]),
    ({"method": "platt", "a": 2.0, "b": 0.0}, [0.75], [0.9]),                               # 1/(1+1/9)
])
def test_calibration_maps(calibration, p, expected):
    assert apply_calibration(np.array(p), calibration) == pytest.approx(expected)


def _population(rng, n, mean, sd):
    """x, true P(y=1|x) (fixed concept), sampled y, and an over-confident raw score (monotone in x)."""
    x = rng.normal(mean, sd, n)
    true_p = 1 / (1 + np.exp(-(1.5 * x - 3.0)))
    y = (rng.random(n) < true_p).astype(int)
    raw = 1 / (1 + np.exp(-(3.0 * x - 4.0)))          # like a model trained on SMOTE-balanced rows
    return raw, y


# Stated tolerances (worst case over 10 seeds when chosen: isotonic 0.011 / 0.042 / 0.024 / 0.017, Platt
# on 800 rows 0.042 for ROC-AUC): windows of 50k rows whose features shifted, the concept unchanged.
TOLERANCE = {
    "isotonic": {"roc_auc": 0.02, "pr_auc": 0.05, "precision": 0.04, "recall": 0.04},
    "platt": {"roc_auc": 0.05},   # ~70 positives to calibrate on: only the ranking metric is claimed
}


@pytest.mark.parametrize("calibration_rows, method", [(20_000, "isotonic"), (800, "platt")])
def test_estimate_matches_realised_metrics_without_concept_drift(calibration_rows, method):
    rng = np.random.default_rng(7)
    raw_cal, y_cal = _population(rng, calibration_rows, 0.0, 1.0)        # held-out calibration rows
    calibration = fit_calibration(raw_cal, y_cal, fitted_on="test")
    assert calibration["method"] == method
    threshold = 0.5
    for mean, sd in [(0.0, 1.0), (0.7, 1.2), (0.3, 0.9)]:
        raw, y = _population(rng, 50_000, mean, sd)
        est, pred = estimate(raw, threshold, calibration), raw >= threshold
        realised = {"roc_auc": roc_auc_score(y, raw), "pr_auc": average_precision_score(y, raw),
                    "precision": precision_score(y, pred), "recall": recall_score(y, pred)}
        for metric, tolerance in TOLERANCE[method].items():
            assert est[metric] == pytest.approx(realised[metric], abs=tolerance), (metric, mean, sd)


def test_concept_drift_breaks_the_estimate():
    """The assumption is real: when P(y|x) changes, the estimate stays where it was and misses."""
    rng = np.random.default_rng(5)
    raw_cal, y_cal = _population(rng, 20_000, 0.0, 1.0)
    calibration = fit_calibration(raw_cal, y_cal, fitted_on="test")
    raw, _ = _population(rng, 50_000, 0.0, 1.0)
    y = (rng.random(len(raw)) < 0.09).astype(int)                  # labels no longer depend on x
    assert estimate(raw, 0.5, calibration)["roc_auc"] - roc_auc_score(y, raw) > 0.2


def test_uncalibrated_scores_would_miss_precision():
    """Why calibration matters: the raw (over-confident) scores overstate precision by far more than the tolerance."""
    rng = np.random.default_rng(3)
    raw, y = _population(rng, 20_000, 0.0, 1.0)
    naive = estimate(raw, 0.5, IDENTITY)
    assert abs(naive["precision"] - precision_score(y, raw >= 0.5)) > 0.05


@pytest.mark.parametrize("chunk", [7, 64, 1000, 1 << 20])
def test_areas_taken_a_chunk_at_a_time_are_the_whole_curves(chunk):
    """``_expected_areas`` walks the sorted scores a chunk at a time (chunks that cut runs of tied scores
    included): the same areas and expected counts as the plain computation over the whole ranked window, with
    and without tied scores."""
    from tabpipe.monitoring.estimate import _expected_areas, apply_calibration, expected_confusion

    platt = {"method": "platt", "a": 1.3, "b": -0.2}
    rng = np.random.default_rng(11)
    for p in (rng.random(5000), rng.random(5000).round(2), np.full(300, 0.4)):
        c = apply_calibration(p, platt)
        order = np.argsort(-p, kind="mergesort")
        s, cs = p[order], c[order]
        last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
        tp, fp = np.cumsum(cs)[last], np.cumsum(1.0 - cs)[last]
        tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
        roc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        ap = float(np.sum(np.diff(np.r_[0.0, tp / tp[-1]]) * (tp / np.maximum(tp + fp, 1e-12))))
        got = _expected_areas(np.sort(p), platt, 0.5, chunk=chunk)
        assert got["roc_auc"] == pytest.approx(roc, rel=1e-12, abs=1e-12)
        assert got["pr_auc"] == pytest.approx(ap, rel=1e-12)
        assert got["positives"] == pytest.approx(c.sum(), rel=1e-12)
        assert got["confusion"] == pytest.approx(expected_confusion(c, p >= 0.5), rel=1e-9, abs=1e-9)
        whole = estimate(p, 0.5, platt)
        assert whole["roc_auc"] == pytest.approx(roc, rel=1e-12, abs=1e-12) and whole["rows"] == len(p)

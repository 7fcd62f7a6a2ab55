"""Calibration measures, the cost threshold and the gate's calibration check (tabpipe.training.metrics,
tabpipe.training.components.evaluation.gate), against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tabpipe.training.components.evaluation import gate
from tabpipe.training.components.trainer import calibrate_out_of_fold
from tabpipe.training.metrics import (
    best_f1_threshold,
    brier_score,
    calibration_metrics,
    decision_threshold,
    expected_calibration_error,
    holdout_metrics,
    log_loss,
    min_cost_threshold,
)

Y = np.array([0, 0, 1, 1, 1, 0])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.8, 0.9])


def test_ece_by_hand_with_equal_frequency_bins():
    # bins of 2 rows: (0.1, 0.2 | 0, 0) -> |0 - 0.15|; (0.3, 0.6 | 1, 1) -> |1 - 0.45|; (0.8, 0.9 | 1, 0) -> |0.5 - 0.85|
    assert expected_calibration_error(Y, P, bins=3) == pytest.approx((2 * 0.15 + 2 * 0.55 + 2 * 0.35) / 6, abs=1e-12)
    # the rows are sorted by probability first: the order they come in does not matter
    order = np.array([5, 2, 0, 4, 1, 3])
    assert expected_calibration_error(Y[order], P[order], bins=3) == pytest.approx(0.35, abs=1e-12)
    # 7 rows in 3 bins: 3, 2, 2 rows
    y7, p7 = np.array([0, 1, 0, 1, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.9])
    by_hand = (3 * abs(1 / 3 - 0.2) + 2 * abs(1 - 0.55) + 2 * abs(0.5 - 0.8)) / 7
    assert expected_calibration_error(y7, p7, bins=3) == pytest.approx(by_hand, abs=1e-12)


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_the_default_has_15_bins():
    y = np.array([1] * 3 + [0] * 7)
    assert expected_calibration_error(y, np.full(10, 0.3)) == pytest.approx(0.0, abs=1e-12)
    # a cut inside a run of equal probabilities moves to its start: bins (0.2 | 0), (0.5, 0.5, 0.9 | 1, 1, 0)
    by_hand = (abs(0 - 0.2) + 3 * abs(2 / 3 - 1.9 / 3)) / 4
    assert expected_calibration_error(np.array([0, 1, 1, 0]), np.array([0.2, 0.5, 0.5, 0.9]), bins=2) == \
        pytest.approx(by_hand, abs=1e-12)
    y, p = np.tile([0, 1], 15), np.repeat(np.linspace(0.05, 0.95, 15), 2)    # 15 bins of 2 rows, mean label 0.5
    assert expected_calibration_error(y, p) == pytest.approx(np.mean(np.abs(0.5 - np.linspace(0.05, 0.95, 15))))


def test_brier_and_log_loss_by_hand():
    assert brier_score(Y, P) == pytest.approx((0.01 + 0.04 + 0.49 + 0.16 + 0.04 + 0.81) / 6, abs=1e-12)
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert math.isfinite(log_loss(np.array([1, 0]), np.array([0.0, 1.0])))     # clipped, not infinite
    assert set(calibration_metrics(Y, P)) == {"ece", "brier", "log_loss"}
    assert {"ece", "brier", "log_loss"} <= set(holdout_metrics(Y, P, 0.5))


def grouped(probabilities: list[float], rows: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` rows at each probability, exactly ``rows * p`` of them positive: perfectly calibrated."""
    y, p = [], []
    for q in probabilities:
        positives = round(rows * q)
        y += [1] * positives + [0] * (rows - positives)
        p += [q] * rows
    return np.array(y), np.array(p)


def test_cost_threshold_is_the_analytic_optimum():
    # calibrated probabilities: the least expected cost calls a row positive exactly when p > fp / (fp + fn) = 1/11
    y, p = grouped([0.05, 0.08, 0.1, 0.2, 0.5])
    threshold, cost = min_cost_threshold(y, p, 1.0, 10.0)
    assert threshold == 0.1 and 0.08 < 1 / 11 < threshold
    # by hand: FP = 90 + 80 + 50, FN = 5 + 8
    assert cost == pytest.approx((220 + 10 * 13) / len(y))
    # the other way round (10 / 11 is above every probability): no row positive is cheapest
    threshold, cost = min_cost_threshold(y, p, 10.0, 1.0)
    assert threshold > p.max() and not (p >= threshold).any()
    assert cost == pytest.approx(y.sum() / len(y))


def test_decision_threshold_uses_costs_when_given_else_f1():
    y, p = grouped([0.05, 0.08, 0.1, 0.2, 0.5])
    assert decision_threshold(y, p, (1.0, 10.0)) == 0.1
    assert decision_threshold(y, p, None) == best_f1_threshold(y, p)[0] != 0.1


def test_calibration_on_out_of_fold_rows_lowers_ece_of_a_miscalibrated_score():
    rng = np.random.default_rng(3)
    z = rng.normal(-1.0, 1.5, 40_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(int)
    raw = 1 / (1 + np.exp(-(2.5 * z + 1.5)))     # overconfident and too high, as a resampled model's score
    fit, check = slice(0, 20_000), slice(20_000, None)
    calibration, record = calibrate_out_of_fold(y[fit], raw[fit], "platt")
    assert calibration.a == pytest.approx(1 / 2.5, rel=0.05) and record["rows"] == 20_000
    assert record["held_out_gain"] > max(0.01, 2 * record["held_out_gain_se"])
    before = calibration_metrics(y[check], raw[check])
    after = calibration_metrics(y[check], calibration(raw[check]))
    assert before["ece"] > 0.1 and after["ece"] < 0.02
    assert after["brier"] < before["brier"] and after["log_loss"] < before["log_loss"]
    assert record["out_of_fold_calibrated"]["ece"] < record["out_of_fold_raw"]["ece"]
    assert calibrate_out_of_fold(y, raw, "none") == (None, None)


def test_an_already_calibrated_score_is_served_as_it_is():
    rng = np.random.default_rng(5)
    z = rng.normal(-1.0, 1.5, 5_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(int)
    calibration, record = calibrate_out_of_fold(y, 1 / (1 + np.exp(-z)), "platt")
    assert calibration is None and record["method"] == "none"
    assert record["held_out_gain"] <= 2 * record["held_out_gain_se"]
    assert "already calibrated" in record["note"]


NEW = {"roc_auc": 0.80, "ece": 0.08, "rows": 500}
PRODUCTION = {"roc_auc": 0.75, "ece": 0.02, "rows": 500}


def test_max_ece_increase_refuses_a_challenger_worse_calibrated_by_more():
    accepted, reason = gate("roc_auc", NEW, PRODUCTION, 0.6, 0.0, max_ece_increase=0.05)
    assert not accepted and "max_ece_increase=0.05" in reason and "+0.0600" in reason


def test_max_ece_increase_accepts_within_the_limit_and_is_off_when_none():
    accepted, reason = gate("roc_auc", NEW, PRODUCTION, 0.6, 0.0, max_ece_increase=0.07)
    assert accepted and "ECE new 0.0800 vs production 0.0200" in reason
    assert gate("roc_auc", NEW, PRODUCTION, 0.6, 0.0, max_ece_increase=None)[0]
    assert gate("roc_auc", NEW, None, 0.6, 0.0, max_ece_increase=0.0)[0]        # first model: nothing to compare
    # a worse ranking metric is refused whatever the calibration
    better_calibrated = {**NEW, "roc_auc": 0.70, "ece": 0.0}
    assert not gate("roc_auc", better_calibrated, PRODUCTION, 0.6, 0.0, max_ece_increase=0.05)[0]


def test_max_ece_increase_compares_on_the_shared_rows():
    compared = {**NEW, "ece": 0.03}     # on the rows production was not trained on, the new model is close
    assert gate("roc_auc", NEW, PRODUCTION, 0.6, 0.0, new_compared=compared, max_ece_increase=0.05)[0]

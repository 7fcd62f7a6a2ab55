"""Concept drift: realised minus estimated ROC-AUC on the same rows, with a bootstrap interval; a flipped
label relation fires the governance rule, an unchanged one does not."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tabpipe.config import RulesSection
from tabpipe.monitoring.concept import BINS, _bins, concept_gap, excludes_zero, weighted_auc
from tabpipe.monitoring.estimate import expected_roc_auc
from tabpipe.monitoring.governance import Observations, decide

IDENTITY = {"method": "identity"}     # the scores below are calibrated by construction
PLATT = {"method": "platt", "a": 1.0, "b": 0.0}   # the same map, written as Platt scaling


def scored(n: int, seed: int, *, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and outcomes drawn from them (``flip``: the outcome relation reversed)."""
    rng = np.random.default_rng(seed)
    proba = rng.beta(2, 3, n).round(3)           # rounded: ties between rows
    y = (rng.random(n) < proba).astype(int)
    return proba, 1 - y if flip else y


def observe(result: dict) -> Observations:
    return Observations(window="w", rows=result["rows"], roc_auc=result["realised"], psi={"a": 0.0}, drift_share=0.0,
                        concept_gap=result["gap"], concept_gap_ci=tuple(result["ci"]))


@pytest.mark.parametrize("calibration", [IDENTITY, PLATT])
def test_flipped_relation_fires_with_an_interval(calibration):
    proba, y = scored(3_000, seed=1, flip=True)
    result = concept_gap(y, proba, calibration, seed=0)
    assert result["status"] == "ok" and result["rows"] == 3_000
    assert result["realised"] == pytest.approx(roc_auc_score(y, proba))
    assert result["gap"] < -0.3 and result["ci"][0] <= result["gap"] <= result["ci"][1] and excludes_zero(result)
    decision = decide(observe(result), RulesSection())
    assert decision.decision == "retrain"    # the realised ROC-AUC is below 0.70 too
    assert [r.rule for r in decision.reasons] == ["roc_auc_below", "concept_gap_retrain"]
    assert "concept drift: realised - estimated ROC-AUC" in decision.reasons[1].message


@pytest.mark.parametrize("seed", range(5))
def test_unchanged_relation_does_not_fire(seed):
    proba, y = scored(3_000, seed=seed)
    result = concept_gap(y, proba, IDENTITY, seed=seed)
    assert abs(result["gap"]) < 0.03
    decision = decide(observe(result), RulesSection())
    assert not [r for r in decision.reasons if r.rule.startswith("concept_gap")]


@pytest.mark.parametrize("kept, rules", [(0.75, ["concept_gap_watch"]), (0.9, [])])
def test_a_small_real_change_is_a_watch_and_a_tiny_one_nothing(kept, rules):
    """Outcomes follow a flatter relation than the scores say (``kept`` of the score's slope): a gap of
    about -0.06 is a watch; one of about -0.02, though its interval excludes 0 on 20,000 rows, is within
    the 0.03 tolerance."""
    rng = np.random.default_rng(3)
    proba = rng.beta(2, 3, 20_000).round(3)
    y = (rng.random(len(proba)) < kept * proba + (1 - kept) * proba.mean()).astype(int)
    result = concept_gap(y, proba, IDENTITY, seed=0)
    assert -0.10 < result["gap"] < -0.01 and excludes_zero(result)
    only_concept = RulesSection(retrain_roc_auc_below=0.5)
    assert [r.rule for r in decide(observe(result), only_concept).reasons] == rules


def test_interval_is_reproducible_and_narrows_with_rows():
    proba, y = scored(4_000, seed=2)
    assert concept_gap(y, proba, IDENTITY, seed=7) == concept_gap(y, proba, IDENTITY, seed=7)
    small = concept_gap(y[:500], proba[:500], IDENTITY, seed=7)
    large = concept_gap(y, proba, IDENTITY, seed=7)
    assert np.diff(small["ci"])[0] > np.diff(large["ci"])[0] > 0


def test_weighted_auc_is_the_realised_and_the_estimated_auc():
    proba, y = scored(1_000, seed=4)
    order = np.argsort(-proba, kind="mergesort")
    s, ys = proba[order], y[order].astype(float)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    assert len(starts) < len(s)                            # there are ties
    assert weighted_auc(starts, ys, 1 - ys) == pytest.approx(roc_auc_score(y, proba))
    assert weighted_auc(starts, s, 1 - s) == pytest.approx(expected_roc_auc(proba, proba))
    doubled = np.repeat(np.arange(len(y)), 2)              # weights 2 = every row twice
    assert weighted_auc(starts, 2 * ys, 2 * (1 - ys)) == pytest.approx(roc_auc_score(y[doubled], proba[doubled]))
    distinct = proba + np.arange(len(proba)) * 1e-9        # no ties: no grouping
    order = np.argsort(-distinct, kind="mergesort")
    ys = y[order].astype(float)
    assert weighted_auc(None, ys, 1 - ys) == pytest.approx(roc_auc_score(y, distinct))


def test_one_class_is_insufficient_data():
    result = concept_gap(np.ones(300), np.linspace(0, 1, 300), IDENTITY)
    assert result["status"] == "insufficient_data" and "both classes" in result["message"]
    lone = concept_gap(np.r_[1, np.zeros(299)], np.linspace(0, 1, 300), IDENTITY)   # resamplings miss the positive
    assert lone["status"] == "insufficient_data" and "only one class" in lone["message"]


@pytest.mark.parametrize("ties, bins", [(True, BINS), (False, BINS), (False, 64)])
def test_cell_bootstrap_gives_the_interval_of_a_row_bootstrap(ties, bins):
    """Resampling counts of (score bin, label) cells gives the interval a plain bootstrap of the rows gives
    (each resampling: rows drawn with replacement, both AUCs recomputed with ``weighted_auc``): with a bin per
    distinct score, and with fewer bins than distinct scores. 2,000 resamplings each; the endpoints agree to
    within a tenth of the interval's width."""
    from tabpipe.monitoring.estimate import apply_calibration

    proba, y = scored(3000, 5)
    if not ties:
        proba = proba + np.random.default_rng(9).random(len(proba)) * 1e-4
    got = concept_gap(y, proba, PLATT, resamplings=2000, seed=4, bins=bins)
    p, yf = np.asarray(proba, float), np.asarray(y, float)
    order = np.argsort(-p, kind="mergesort")
    s, ys, c = p[order], yf[order], apply_calibration(p[order], PLATT)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    starts = None if len(starts) == len(s) else starts
    assert (starts is None) == (not ties)
    assert got["gap"] == pytest.approx(weighted_auc(starts, ys, 1 - ys) - weighted_auc(starts, c, 1 - c), abs=1e-12)
    rng = np.random.default_rng(11)
    gaps = []
    for _ in range(2000):
        w = np.bincount(rng.integers(0, len(ys), len(ys)), minlength=len(ys)).astype(float)
        wy, wc = w * ys, w * c
        gaps.append(weighted_auc(starts, wy, w - wy) - weighted_auc(starts, wc, w - wc))
    low, high = np.quantile(np.asarray(gaps), [0.025, 0.975])
    width = high - low
    assert got["ci"][0] == pytest.approx(low, abs=0.1 * width)
    assert got["ci"][1] == pytest.approx(high, abs=0.1 * width)


def test_bins_keep_ties_together_and_cap_their_number():
    s = np.sort(np.random.default_rng(3).integers(0, 500, 20_000).astype(float))[::-1]   # 500 distinct scores
    each = _bins(s, 1000)
    assert each.max() + 1 == len(np.unique(s)) and np.all(np.diff(each) >= 0)          # a bin per distinct score
    capped = _bins(s, 64)
    assert capped.max() + 1 <= 64 and np.all(np.diff(capped) >= 0)
    for value in np.unique(s):                                                          # a tie never split
        assert len(np.unique(capped[s == value])) == 1
    sizes = np.bincount(capped)
    assert sizes.max() < 3 * len(s) / 64                                                 # about equal row counts

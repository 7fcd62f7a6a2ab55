"""RankedScores: ROC-AUC, average precision, the confusion counts and the curves equal scikit-learn's from one
ranking of the rows (tabpipe.training.metrics)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from tabpipe.ranked import RankedScores
from tabpipe.training.metrics import holdout_metrics


def rows(n: int, seed: int, *, ties: bool, rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    proba = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, proba.round(2) if ties else proba


CASES = [(n, seed, ties, rate) for n, seed in ((7, 0), (200, 1), (20_000, 2)) for ties in (True, False)
         for rate in (0.02, 0.3, 0.9)]


@pytest.mark.parametrize("n, seed, ties, rate", CASES)
def test_measures_equal_scikit_learns(n, seed, ties, rate):
    y, proba = rows(n, seed, ties=ties, rate=rate)
    if y.min() == y.max():
        y[0] = 1 - y[0]                        # both classes, however few rows
    ranked = RankedScores.of(y, proba)
    assert ranked.roc_auc() == pytest.approx(roc_auc_score(y, proba), abs=1e-12)
    assert ranked.average_precision() == pytest.approx(average_precision_score(y, proba), abs=1e-12)
    for threshold in (0.0, 0.35, float(np.median(proba)), 0.7, 1.01):
        tn, fp, fn, tp = confusion_matrix(y, (proba >= threshold).astype(int), labels=[0, 1]).ravel()
        assert ranked.confusion(threshold) == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        pred = (proba >= threshold).astype(int)
        got = holdout_metrics(y, proba, threshold, ranked)
        assert got["f1"] == pytest.approx(f1_score(y, pred, zero_division=0), abs=1e-12)
        assert got["precision"] == pytest.approx(precision_score(y, pred, zero_division=0), abs=1e-12)
        assert got["recall"] == pytest.approx(recall_score(y, pred, zero_division=0), abs=1e-12)
        assert got["roc_auc"] == ranked.roc_auc() and got["positives"] == y.sum() and got["rows"] == n


@pytest.mark.parametrize("ties", [True, False])
def test_curve_points_lie_on_scikit_learns_curves(ties):
    """Each point of the thinned curves is a point of the full curves (same threshold, same counts)."""
    y, proba = rows(50_000, 3, ties=ties)
    curves = RankedScores.of(y, proba).curves(points=200)
    assert 2 < len(curves["fpr"]) <= 202 and curves["fpr"][0] == curves["tpr"][0] == 0.0
    assert curves["fpr"][-1] == curves["tpr"][-1] == 1.0
    assert np.all(np.diff(curves["fpr"]) >= 0) and np.all(np.diff(curves["tpr"]) >= 0)
    fpr, tpr, _ = roc_curve(y, proba, drop_intermediate=False)
    full = set(zip(fpr.round(12), tpr.round(12)))
    assert all((a, b) in full for a, b in zip(curves["fpr"].round(12), curves["tpr"].round(12)))
    precision, recall, _ = precision_recall_curve(y, proba, drop_intermediate=False)
    full = set(zip(recall.round(12), precision.round(12)))
    assert all((a, b) in full for a, b in zip(curves["recall"][1:].round(12), curves["precision"][1:].round(12)))


def test_one_class_has_no_roc_auc():
    ranked = RankedScores.of(np.ones(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="Only one class"):
        ranked.roc_auc()
    assert np.isnan(RankedScores.of(np.zeros(5), np.linspace(0, 1, 5)).average_precision())
    with pytest.raises(ValueError, match="NaN"):
        RankedScores.of(np.array([0, 1]), np.array([0.2, np.nan]))

"""Scores, calibration measures and threshold tuning: pure functions of labels (0/1) and positive-class probabilities.

A metric has one name everywhere (``tabpipe.config.Metric``): ``pr_auc`` is the average precision
(the YAML spelling ``average_precision`` is mapped to it when the config is read).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from tabpipe.ranked import RankedScores

if TYPE_CHECKING:
    from tabpipe.config import Metric

ECE_BINS = 15        # expected calibration error: equal-frequency bins of the probability
LOG_LOSS_EPS = 1e-15


def ranking_score(metric: Metric, y: np.ndarray, proba: np.ndarray) -> float:
    """CV selection score: ``roc_auc``, ``pr_auc`` (average precision), or ``f1`` at the best threshold."""
    if metric == "roc_auc":
        return float(roc_auc_score(y, proba))
    if metric == "pr_auc":
        return float(average_precision_score(y, proba))
    if metric == "f1":
        return best_f1_threshold(y, proba)[1]
    raise ValueError(f"unknown metric {metric!r}")


def best_f1_threshold(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``proba >= threshold``; (0.5, 0.0) when y has no positive."""
    if y.sum() == 0:
        return 0.5, 0.0
    precision, recall, thresholds = precision_recall_curve(y, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]) if len(thresholds) else 0.5, float(f1[best])


def min_cost_threshold(y: np.ndarray, proba: np.ndarray, false_positive: float,
                       false_negative: float) -> tuple[float, float]:
    """(threshold, mean cost per row) minimising ``false_positive * FP + false_negative * FN`` of
    ``proba >= threshold`` over the rows' own probabilities (and "no row positive": just above the largest);
    of equal costs the highest threshold."""
    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    order = np.argsort(-proba, kind="mergesort")
    p, positive = proba[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p) != 0), len(p) - 1]
    tp, fp = np.cumsum(positive)[last_of_tie], np.cumsum(1 - positive)[last_of_tie]
    # threshold p[last_of_tie[k]]: the rows down to that tie group are positive
    cost = np.r_[false_negative * positive.sum(), false_positive * fp + false_negative * (positive.sum() - tp)]
    thresholds = np.r_[np.nextafter(p[0], np.inf) if len(p) else 0.5, p[last_of_tie]]
    best = int(np.argmin(cost))     # the first of equal costs: the highest threshold
    return float(thresholds[best]), float(cost[best] / max(len(y), 1))


def decision_threshold(y: np.ndarray, proba: np.ndarray, costs: tuple[float, float] | None) -> float:
    """The decision threshold on (calibrated, out-of-fold) probabilities: the least expected cost when
    ``costs`` = (false positive, false negative) are given, else the best F1."""
    if costs is not None:
        return min_cost_threshold(y, proba, *costs)[0]
    return best_f1_threshold(y, proba)[0]


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-frequency bins of the probability: sum over bins of (rows in bin / rows) *
    |mean label - mean probability|. The rows sorted by probability are cut into ``bins`` groups of equal
    size (the first ones one row larger when it does not divide), each cut moved down to the start of the
    run of equal probabilities it falls in (equal probabilities share a bin: fewer bins then)."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    n = len(y)
    if n == 0:
        return float("nan")
    order = np.argsort(proba, kind="mergesort")
    ranked = proba[order]
    sizes = np.full(min(bins, n), n // min(bins, n))
    sizes[: n % len(sizes)] += 1
    cuts = np.unique(np.searchsorted(ranked, ranked[np.cumsum(sizes)[:-1]], side="left"))
    groups = np.split(order, cuts[cuts > 0])
    return float(sum(len(b) * abs(y[b].mean() - proba[b].mean()) for b in groups) / n)


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean squared difference between the probability and the label (0/1)."""
    return float(np.mean((np.asarray(proba, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels, probabilities clipped to [1e-15, 1 - 1e-15]."""
    y, p = np.asarray(y, dtype=float), np.clip(np.asarray(proba, dtype=float), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ece (``ECE_BINS`` equal-frequency bins), brier and log_loss of ``proba``."""
    return {"ece": expected_calibration_error(y, proba), "brier": brier_score(y, proba), "log_loss": log_loss(y, proba)}


def holdout_metrics(y: np.ndarray, proba: np.ndarray, threshold: float,
                    ranked: RankedScores | None = None) -> dict[str, float]:
    """roc_auc, pr_auc (average precision), f1/precision/recall of ``proba >= threshold`` (0 where a ratio has
    no rows) and the calibration measures ece/brier/log_loss (``calibration_metrics``); ``ranked``: the rows
    already ranked (``RankedScores.of(y, proba)``), for a caller that also wants the curves or the counts."""
    ranked = RankedScores.of(y, proba) if ranked is None else ranked
    return {
        "roc_auc": ranked.roc_auc(),
        "pr_auc": ranked.average_precision(),
        **calibration_metrics(y, proba),
        **confusion_ratios(ranked.confusion(threshold)),
        "threshold": float(threshold),
        "positives": int(y.sum()),
        "rows": len(y),
    }


def confusion_ratios(cm: dict) -> dict[str, float]:
    """f1, precision and recall of confusion counts (0 where there is no true positive)."""
    tp, fp, fn = cm["tp"], cm["fp"], cm["fn"]
    return {"f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "precision": tp / (tp + fp) if tp else 0.0,
            "recall": tp / (tp + fn) if tp else 0.0}


CHANCE_SHUFFLES = 999   # random pairings of the scores with the labels: p-values from 0.001 up


def chance_p_value(metric: Metric, y: np.ndarray, proba: np.ndarray, threshold: float, observed: float,
                   shuffles: int = CHANCE_SHUFFLES, seed: int = 0) -> float:
    """One-sided permutation p-value of ``observed`` (the gate's ``metric`` of ``proba`` on ``y``): the share of
    random pairings of the same scores with the same labels that score at least as high, (1 + k) / (1 + shuffles).
    A model no better than chance gets p near 0.5; f1 is taken at ``threshold``, as the gate takes it. Each
    shuffle costs one pass over the rows: the scores are ranked (or sorted) once."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=float)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return 1.0
    if metric == "roc_auc":   # AUC = (sum of the positives' ranks - n1 (n1 + 1) / 2) / (n1 n0), mid-ranks for ties
        ranks = rankdata(proba)
        negatives = len(y) - positives
        floor = positives * (positives + 1) / 2.0
        scores = np.array([(ranks[rng.permutation(y).astype(bool)].sum() - floor) / (positives * negatives)
                           for _ in range(shuffles)])
    elif metric == "pr_auc":  # average precision as scikit-learn takes it: sum over thresholds of dRecall x precision
        order = np.argsort(-proba, kind="mergesort")           # highest score first
        sorted_proba = proba[order]
        ends = np.flatnonzero(np.r_[sorted_proba[1:] != sorted_proba[:-1], True])   # last row of each tie group
        scores = np.empty(shuffles)
        for i in range(shuffles):
            tp = np.cumsum(rng.permutation(y)[order])[ends]
            recall_step = np.diff(tp, prepend=0) / positives
            scores[i] = float(np.sum(recall_step * tp / (ends + 1)))
    else:                     # f1 at the threshold: 2 tp / (predicted + actual positives)
        pred = proba >= threshold
        total = pred.sum() + positives
        scores = np.array([2.0 * np.count_nonzero(rng.permutation(y)[pred]) / total for _ in range(shuffles)])
    at_least = int(np.sum(scores >= observed - 1e-12))
    return (1 + at_least) / (1 + shuffles)

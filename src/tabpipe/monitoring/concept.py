"""Concept drift: the gap between the realised ROC-AUC and the label-free estimate on the same rows (pure).

The estimate (``estimate.py``) assumes P(label | features) is what it was when the calibration map was
fitted; once outcomes exist for a window, realised minus estimated ROC-AUC on the labelled rows measures
how wrong that assumption has become. Its confidence interval comes from a bootstrap of the rows:
each resampling draws rows with replacement (as counts per row) and both AUCs are recomputed with
those counts as weights, from one ranking of the scores.
Design notes: docs/monitoring.md#concept-drift-estimate-against-outcomes
"""
from __future__ import annotations

import numpy as np

from tabpipe.monitoring.estimate import apply_calibration

RESAMPLINGS = 200
CONFIDENCE = 0.95


def weighted_auc(tie_ends: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of rows already sorted by score (highest first), ``positive`` and
    ``negative`` their weights as a positive and as a negative, ``tie_ends`` the last index of each run
    of equal scores (ties: the trapezoid, i.e. half credit). NaN when either total weight is zero."""
    tp, fp = np.cumsum(positive)[tie_ends], np.cumsum(negative)[tie_ends]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def concept_gap(y: np.ndarray, proba: np.ndarray, calibration: dict, *, resamplings: int = RESAMPLINGS,
                confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """Realised minus estimated ROC-AUC of labelled rows (``y`` 0/1, the model's raw ``proba``), with a
    percentile bootstrap interval at ``confidence``. ``{"status": "ok", "realised", "estimated", "gap",
    "ci": [low, high], ...}``, or ``{"status": "insufficient_data", "message"}`` without both classes."""
    y, p = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return {"status": "insufficient_data", "rows": len(y),
                "message": "the labelled rows do not have both classes: no realised ROC-AUC"}
    order = np.argsort(-p, kind="mergesort")
    s, y, c = p[order], y[order], apply_calibration(p[order], calibration)
    tie_ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    realised = weighted_auc(tie_ends, y, 1 - y)
    estimated = weighted_auc(tie_ends, c, 1 - c)
    rng = np.random.default_rng([seed, 7])
    gaps = []
    for _ in range(resamplings):
        w = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(float)
        gaps.append(weighted_auc(tie_ends, w * y, w * (1 - y)) - weighted_auc(tie_ends, w * c, w * (1 - c)))
    gaps = np.asarray(gaps)
    gaps = gaps[~np.isnan(gaps)]          # a resampling without one of the classes
    tail = (1 - confidence) / 2
    low, high = (np.quantile(gaps, [tail, 1 - tail]) if len(gaps) else (float("nan"), float("nan")))
    return {"status": "ok", "metric": "roc_auc", "realised": realised, "estimated": estimated,
            "gap": realised - estimated, "ci": [float(low), float(high)], "confidence": confidence,
            "rows": len(y), "positives": int(y.sum()), "resamplings": resamplings,
            "method": "realised minus label-free estimated ROC-AUC on the same rows; percentile bootstrap of rows"}


def excludes_zero(result: dict) -> bool:
    """Whether the gap's interval lies entirely on one side of 0."""
    low, high = result["ci"]
    return bool(low > 0 or high < 0)

"""Concept drift: the gap between the realised ROC-AUC and the label-free estimate on the same rows (pure).

The estimate (``estimate.py``) assumes P(label | features) is what it was when the calibration map was
fitted; once outcomes exist for a window, realised minus estimated ROC-AUC on the labelled rows measures
how wrong that assumption has become. Its confidence interval comes from a bootstrap of the rows:
each resampling draws rows with replacement (as counts per row) and both AUCs are recomputed with
those counts as weights, from one ranking of the scores (no sort per resampling).
Design notes: docs/monitoring.md#concept-drift-estimate-against-outcomes
"""
from __future__ import annotations

import numpy as np

from tabpipe.monitoring.estimate import apply_calibration

RESAMPLINGS = 200
CONFIDENCE = 0.95


def weighted_auc(starts: np.ndarray | None, positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of rows already sorted by score (highest first), ``positive`` and
    ``negative`` their weights as a positive and as a negative; ``starts``: the first index of each run
    of equal scores (None: no ties). A negative scores every positive ranked above it, and half of each
    positive tied with it (the trapezoid, as scikit-learn). NaN when either total weight is zero."""
    if starts is not None:
        positive, negative = np.add.reduceat(positive, starts), np.add.reduceat(negative, starts)
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return float("nan")
    above = np.cumsum(positive) - 0.5 * positive
    return float((negative * above).sum() / (total_positive * total_negative))   # not np.dot: BLAS threads


def _weighted_auc_into(starts: np.ndarray | None, positive: np.ndarray, negative: np.ndarray,
                       work: np.ndarray, half: np.ndarray) -> float:
    """``weighted_auc`` computed in the caller's buffers ``work`` and ``half`` (the length of ``positive``): the
    same operations in the same order, so the same float, without allocating arrays per call."""
    if starts is not None:
        return weighted_auc(starts, positive, negative)
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return float("nan")
    np.cumsum(positive, out=work)
    np.multiply(positive, 0.5, out=half)
    np.subtract(work, half, out=work)
    np.multiply(negative, work, out=work)
    return float(work.sum() / (total_positive * total_negative))


def concept_gap(y: np.ndarray, proba: np.ndarray, calibration: dict, *, resamplings: int = RESAMPLINGS,
                confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """Realised minus estimated ROC-AUC of labelled rows (``y`` 0/1, the model's raw ``proba``), with a
    percentile bootstrap interval at ``confidence``. ``{"status": "ok", "realised", "estimated", "gap",
    "ci": [low, high], ...}``, or ``{"status": "insufficient_data", "message"}`` without both classes
    (or with so few of one that over a tenth of the resamplings miss it)."""
    y, p = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return {"status": "insufficient_data", "rows": len(y),
                "message": "the labelled rows do not have both classes: no realised ROC-AUC"}
    order = np.argsort(-p, kind="mergesort")
    s, y, c = p[order], y[order], apply_calibration(p[order], calibration)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    starts = None if len(starts) == len(s) else starts
    realised = weighted_auc(starts, y, 1 - y)
    estimated = weighted_auc(starts, c, 1 - c)
    rng = np.random.default_rng([seed, 7])
    gaps = []
    n = len(y)
    w, positive, negative, work, half = (np.empty(n) for _ in range(5))   # reused: no arrays allocated per resampling
    for _ in range(resamplings):
        w[:] = np.bincount(rng.integers(0, n, n), minlength=n)
        np.multiply(w, y, out=positive)
        np.subtract(w, positive, out=negative)
        realised_b = _weighted_auc_into(starts, positive, negative, work, half)
        np.multiply(w, c, out=positive)
        np.subtract(w, positive, out=negative)
        gaps.append(realised_b - _weighted_auc_into(starts, positive, negative, work, half))
    gaps = np.asarray(gaps)
    gaps = gaps[~np.isnan(gaps)]          # a resampling without one of the classes
    if len(gaps) < 0.9 * resamplings:
        return {"status": "insufficient_data", "rows": len(y), "positives": int(y.sum()),
                "message": f"{resamplings - len(gaps)} of {resamplings} bootstrap resamplings had only one class: "
                           "too few rows of one class for an interval"}
    tail = (1 - confidence) / 2
    low, high = np.quantile(gaps, [tail, 1 - tail])
    return {"status": "ok", "metric": "roc_auc", "realised": realised, "estimated": estimated,
            "gap": realised - estimated, "ci": [float(low), float(high)], "confidence": confidence,
            "rows": len(y), "positives": int(y.sum()), "resamplings": resamplings,
            "method": "realised minus label-free estimated ROC-AUC on the same rows; percentile bootstrap of rows"}


def excludes_zero(result: dict) -> bool:
    """Whether the gap's interval lies entirely on one side of 0."""
    low, high = result["ci"]
    return bool(low > 0 or high < 0)

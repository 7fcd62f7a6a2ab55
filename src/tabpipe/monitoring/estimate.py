"""Label-free performance estimate from calibrated probabilities (confidence-based performance estimation).

Expected confusion counts and ROC/PR curves are sums of calibrated probabilities over rows ranked by
the raw score; right only under the ``ASSUMPTIONS`` every result lists.
Design notes: docs/monitoring.md#the-label-free-estimate
"""
from __future__ import annotations

import numpy as np

ASSUMPTIONS = (
    "no concept drift: P(label | features) is unchanged since the calibration rows (a shift of the "
    "features alone is allowed)",
    "the calibration map, fitted on held-out rows at publish time, holds in the window's score range",
    "expected counts: precision, recall and F1 are ratios of expected counts, not expected ratios",
)


def apply_calibration(proba: np.ndarray, calibration: dict) -> np.ndarray:
    """Calibrated probabilities: ``{"method": "isotonic", "x": [...], "y": [...]}`` (piecewise linear,
    clipped at the ends, as scikit-learn's IsotonicRegression predicts) or
    ``{"method": "platt", "a": a, "b": b}`` (1 / (1 + exp(-(a * logit(p) + b))))."""
    p = np.asarray(proba, dtype=float)
    if calibration["method"] == "isotonic":
        return np.interp(p, np.asarray(calibration["x"], dtype=float), np.asarray(calibration["y"], dtype=float))
    if calibration["method"] == "platt":
        z = np.log(np.clip(p, 1e-12, 1 - 1e-12) / np.clip(1 - p, 1e-12, 1))
        return 1.0 / (1.0 + np.exp(-(calibration["a"] * z + calibration["b"])))
    if calibration["method"] == "identity":
        return p
    raise ValueError(f"unknown calibration method {calibration['method']!r}")


def _ranked_expectations(score: np.ndarray, calibrated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected cumulative (TP, FP) after each distinct raw score, highest score first (the per-row arrays
    freed as soon as they are used: a few of the window's length at a time)."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    del s
    c = calibrated[order]
    del order
    tp = np.cumsum(c)[last_of_tie]
    np.subtract(1.0, c, out=c)               # 1 - c, in place
    return tp, np.cumsum(c)[last_of_tie]


def _roc_auc(tp: np.ndarray, fp: np.ndarray) -> float:
    if len(tp) == 0 or tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(tp: np.ndarray, fp: np.ndarray) -> float:
    if len(tp) == 0 or tp[-1] <= 0:
        return float("nan")
    recall = np.r_[0.0, tp / tp[-1]]
    precision = tp / np.maximum(tp + fp, 1e-12)
    return float(np.sum(np.diff(recall) * precision))


def expected_roc_auc(score: np.ndarray, calibrated: np.ndarray) -> float:
    """Area under the expected ROC curve; NaN when the expected positives or negatives are zero."""
    return _roc_auc(*_ranked_expectations(np.asarray(score, float), np.asarray(calibrated, float)))


def expected_average_precision(score: np.ndarray, calibrated: np.ndarray) -> float:
    """Expected average precision (PR-AUC as scikit-learn defines it: sum of (R_k - R_k-1) * P_k)."""
    return _average_precision(*_ranked_expectations(np.asarray(score, float), np.asarray(calibrated, float)))


def expected_confusion(calibrated: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Expected TP, FP, FN, TN for 0/1 ``predicted`` labels."""
    c, pred = np.asarray(calibrated, float), np.asarray(predicted, bool)
    return {"tp": float(c[pred].sum()), "fp": float((1 - c[pred]).sum()),
            "fn": float(c[~pred].sum()), "tn": float((1 - c[~pred]).sum())}


def estimate(proba: np.ndarray, threshold: float, calibration: dict) -> dict:
    """Expected roc_auc, pr_auc, precision, recall, f1 and confusion counts of a window, with assumptions.

    ``proba``: the model's raw positive-class probabilities; ``threshold``: its decision threshold.
    """
    p = np.asarray(proba, dtype=float)
    c = apply_calibration(p, calibration)
    cm = expected_confusion(c, p >= threshold)
    tp, fp, fn = cm["tp"], cm["fp"], cm["fn"]
    curve = _ranked_expectations(p, c) if len(p) else None      # one ranking for both curves
    return {
        "roc_auc": _roc_auc(*curve) if len(p) else float("nan"),
        "pr_auc": _average_precision(*curve) if len(p) else float("nan"),
        "precision": tp / (tp + fp) if tp + fp > 0 else float("nan"),
        "recall": tp / (tp + fn) if tp + fn > 0 else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan"),
        "expected_confusion": cm,
        "expected_positive_rate": float(c.mean()) if len(c) else float("nan"),
        "rows": len(p),
        "threshold": float(threshold),
        "method": "CBPE (confidence-based performance estimation)",
        "calibration": {k: calibration[k] for k in ("method", "fitted_on") if k in calibration},
        "assumptions": list(ASSUMPTIONS),
    }

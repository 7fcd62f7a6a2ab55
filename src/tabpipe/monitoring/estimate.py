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

CHUNK_ROWS = 1 << 20   # rows per step of the expected curves (``_expected_areas``)


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
    """Expected cumulative (TP, FP) after each distinct raw score, highest score first."""
    order = np.argsort(-score, kind="mergesort")
    return _sorted_expectations(score[order], calibrated[order])


def _sorted_expectations(s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_ranked_expectations`` of scores ``s`` already sorted highest first, ``c`` in the same order."""
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    return np.cumsum(c)[last_of_tie], np.cumsum(1.0 - c)[last_of_tie]


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


def _expected_areas(ascending: np.ndarray, calibration: dict, threshold: float,
                    chunk: int = CHUNK_ROWS) -> dict[str, float]:
    """The expected curves' areas and counts of scores sorted ascending: ``roc_auc``, ``pr_auc`` (as
    ``_roc_auc`` / ``_average_precision`` of ``_ranked_expectations``), the expected confusion counts at
    ``threshold`` and ``positives`` (the sum of calibrated probabilities). The rows are taken highest first,
    ``chunk`` at a time, with the cumulative expected counts carried over: memory is a few chunks, not a few
    copies of the window (the calibrated value of a row is a function of its score, so tied scores have
    equal calibrated values and a chunk may cut a run of ties)."""
    n = len(ascending)
    bounds = list(range(n, 0, -chunk)) + [0]
    cut = np.searchsorted(ascending, threshold, side="left")       # rows from ``cut`` on are predicted positive
    auc = ap = predicted = 0.0     # the areas before dividing by the totals, known at the end of the walk
    cum_tp = cum_fp = 0.0          # expected counts down to the previous chunk's last row
    point_tp = point_fp = 0.0      # the curve's last point: the counts at the end of the last finished run of ties
    for hi, lo in zip(bounds[:-1], bounds[1:]):
        s = ascending[lo:hi][::-1]                                   # highest first
        c = apply_calibration(s, calibration)
        predicted += float(c[: max(hi - max(cut, lo), 0)].sum())
        ends = np.flatnonzero(np.diff(s) != 0)                       # last row of each run of ties in the chunk
        if lo == 0 or ascending[lo - 1] != s[-1]:
            ends = np.r_[ends, len(s) - 1]                          # the chunk's last run ends with it
        running_tp, running_fp = cum_tp + np.cumsum(c), cum_fp + np.cumsum(1.0 - c)
        if len(ends):
            tp, fp = running_tp[ends], running_fp[ends]
            before_tp, before_fp = np.r_[point_tp, tp[:-1]], np.r_[point_fp, fp[:-1]]
            auc += float(np.sum((fp - before_fp) * (tp + before_tp)))
            ap += float(np.sum((tp - before_tp) * (tp / np.maximum(tp + fp, 1e-12))))
            point_tp, point_fp = tp[-1], fp[-1]
        cum_tp, cum_fp = running_tp[-1], running_fp[-1]              # a run cut by the chunk goes on in the next
    total, negatives, rows_predicted = cum_tp, cum_fp, n - cut   # expected positives and negatives of the window
    return {"roc_auc": auc / (2 * total * negatives) if total > 0 and negatives > 0 else float("nan"),
            "pr_auc": ap / total if total > 0 else float("nan"), "positives": total,
            "confusion": {"tp": predicted, "fp": rows_predicted - predicted, "fn": total - predicted,
                          "tn": cut - (total - predicted)}}


def estimate(proba: np.ndarray, threshold: float, calibration: dict) -> dict:
    """Expected roc_auc, pr_auc, precision, recall, f1 and confusion counts of a window, with assumptions.

    ``proba``: the model's raw positive-class probabilities; ``threshold``: its decision threshold.
    """
    p = np.array(proba, dtype=float)        # a copy, sorted in place: one ranking for both curves
    p.sort()
    return estimate_result(_expected_areas(p, calibration, threshold), len(p), threshold, calibration)


def estimate_result(areas: dict, rows: int, threshold: float, calibration: dict) -> dict:
    """``estimate``'s result from the expected curves' areas and counts (``_expected_areas``' keys) of ``rows``."""
    cm = areas["confusion"]
    tp, fp, fn = cm["tp"], cm["fp"], cm["fn"]
    return {
        "roc_auc": areas["roc_auc"],
        "pr_auc": areas["pr_auc"],
        "precision": tp / (tp + fp) if tp + fp > 0 else float("nan"),
        "recall": tp / (tp + fn) if tp + fn > 0 else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan"),
        "expected_confusion": cm,
        "expected_positive_rate": areas["positives"] / rows if rows else float("nan"),
        "rows": rows,
        "threshold": float(threshold),
        "method": "CBPE (confidence-based performance estimation)",
        "calibration": {k: calibration[k] for k in ("method", "fitted_on") if k in calibration},
        "assumptions": list(ASSUMPTIONS),
    }

"""Scores and threshold tuning: pure functions of labels (0/1) and positive-class probabilities.

A metric has one name everywhere (``tabpipe.config.Metric``): ``pr_auc`` is the average precision
(the YAML spelling ``average_precision`` is mapped to it when the config is read).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

if TYPE_CHECKING:
    from tabpipe.config import Metric


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


def holdout_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """roc_auc, pr_auc (average precision), and f1/precision/recall of ``proba >= threshold``."""
    pred = (proba >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "positives": int(y.sum()),
        "rows": len(y),
    }

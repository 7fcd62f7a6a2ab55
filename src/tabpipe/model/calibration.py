"""The calibration map of a shipped model: P(positive) = sigmoid(a * logit(score) + b) (Platt scaling).

The trainer fits it on the out-of-fold scores of the training rows (never on the test split) and
stores it inside the ``TabularModel``; every scoring path (``predict_proba``, the compiled record
scorer, the batch scorer) applies the same ``Calibration.__call__`` to the model's raw ``score``.
It is kept only when it lowers the log-loss of out-of-fold rows it was not fitted on by more than twice
the standard error of that gain (``held_out_gain``, ``SIGNIFICANT``).
It is affine in the raw logit on purpose: a per-row explanation additive in the raw logit stays exact
after calibration (each contribution times ``a``, the base value ``a * base + b``), and the map is
monotone (``a > 0``), so it keeps the ranking and ROC/PR-AUC of the raw score.
Design notes: docs/training.md#calibration
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

log = logging.getLogger(__name__)

EPS = 1e-12     # raw scores are clipped to [EPS, 1 - EPS] before the logit (a tree can say exactly 0 or 1)
SIGNIFICANT = 2.0   # the map is kept when its held-out log-loss gain exceeds this many standard errors


def logit(score: np.ndarray) -> np.ndarray:
    """log(s / (1 - s)) of scores clipped to [EPS, 1 - EPS]."""
    s = np.clip(np.asarray(score, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(s) - np.log1p(-s)


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the raw score: ``sigmoid(a * logit(score) + b)``; ``a > 0`` (monotone)."""
    a: float
    b: float
    rows: int = 0             # out-of-fold rows it was fitted on
    method: str = "platt"

    def __call__(self, score: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) of raw scores (NaN stays NaN)."""
        return expit(self.a * logit(score) + self.b)

    def record(self) -> dict:
        """JSON-ready description (run.json, the model's metadata)."""
        return {"method": self.method, "a": self.a, "b": self.b, "rows": self.rows}


def fit_platt(score: np.ndarray, y: np.ndarray) -> Calibration | None:
    """Platt scaling fitted by maximum likelihood (unregularised logistic regression on the logit) on
    out-of-fold ``score`` and labels ``y``; None when it cannot calibrate (one class only, or a slope
    that is not positive: a score unrelated to the label), and the raw score is then used as it is."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        log.warning("calibration skipped: the out-of-fold rows hold one class only")
        return None
    z = logit(score).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(z, y)
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
        log.warning("calibration skipped: the fitted slope %.4g on the out-of-fold scores is not positive", a)
        return None
    return Calibration(a=a, b=b, rows=len(y))


def held_out_gain(score: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """(mean, standard error) over rows of how much Platt scaling lowers the log-loss of ``score`` on rows
    it was not fitted on: ``folds``-fold cross-validation over the (out-of-fold) rows. An already
    calibrated score (e.g. a logistic regression trained without resampling) gains nothing significant,
    and is then served as it is rather than moved by two parameters' estimation noise."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    k = min(folds, int(np.bincount(y, minlength=2).min()))
    if k < 2:
        return 0.0, 0.0
    z = logit(score)
    raw = np.clip(np.asarray(score, dtype=np.float64), EPS, 1.0 - EPS)
    gain = np.empty(len(y))
    for fit_rows, check in StratifiedKFold(k, shuffle=True, random_state=seed).split(z, y):
        fit = LogisticRegression(C=np.inf, max_iter=1000).fit(z[fit_rows].reshape(-1, 1), y[fit_rows])
        p = np.clip(fit.predict_proba(z[check].reshape(-1, 1))[:, 1], EPS, 1.0 - EPS)
        gain[check] = _log_loss(y[check], raw[check]) - _log_loss(y[check], p)
    return float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(len(y)))


def _log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))

"""Drift of the features taken together: a domain classifier's ROC-AUC between reference rows and a window.

A small gradient-boosted model learns to tell reference rows (class 0) from window rows (class 1); its
out-of-fold ROC-AUC (2-fold) stays near 0.5 when the window comes from the reference's joint
distribution and rises with any shift the model can see, including shifts no single column shows
(a correlation reversed while every column keeps its distribution). The watch threshold is the AUC's
no-shift ("null") distribution, measured at publish time by setting training rows against other
training rows (``calibrate``), stored in the profile, and scaled to the sizes a window has (``threshold``).
Pure functions; randomness only from the seeds given.
Design notes: docs/monitoring.md#multivariate-drift-a-domain-classifier
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabpipe.ranked import RankedScores

SAMPLE_ROWS = 2_000        # rows of each side the classifier sees
RESAMPLINGS = 40           # reference-vs-reference splits of the null distribution (publish-time cost: ~1 s)
CLASSIFIER = {"max_iter": 20, "learning_rate": 0.2, "max_leaf_nodes": 8, "min_samples_leaf": 20, "max_bins": 64,
              "early_stopping": False}   # 64 bins: ~20 % faster than 255, and the profile keeps <= 50 categories
MAX_CODES = CLASSIFIER["max_bins"] - 1   # categories coded 0..MAX_CODES-1, unseen ones MAX_CODES; rarer ones pooled
WINDOW_STREAM = 1_000_003  # seed-stream of the monitor-time samples (calibration uses the resampling index)


@dataclass(frozen=True)
class DomainAUC:
    """One window's multivariate verdict. ``status``: ``ok`` | ``insufficient_data`` | ``not_calibrated`` |
    ``no_features``; ``auc``/``threshold`` None unless ``ok``; ``drifted``: auc > threshold."""

    status: str
    auc: float | None
    threshold: float | None
    reference_rows: int
    window_rows: int
    features: tuple[str, ...]
    message: str = ""

    @property
    def drifted(self) -> bool:
        """Whether the AUC is above the no-shift threshold."""
        return self.auc is not None and self.threshold is not None and self.auc > self.threshold

    def as_dict(self) -> dict:
        """The JSON form."""
        return {"status": self.status, "auc": self.auc, "threshold": self.threshold, "drifted": self.drifted,
                "reference_rows": self.reference_rows, "window_rows": self.window_rows,
                "features": list(self.features), "method": "domain classifier (HistGradientBoosting, "
                f"{CLASSIFIER['max_iter']} trees of <= {CLASSIFIER['max_leaf_nodes']} leaves), 2-fold out-of-fold ROC-AUC",
                "message": self.message}


def encode(frame: pd.DataFrame, features: dict[str, dict]) -> np.ndarray:
    """The profiled ``features`` of a typed ``frame`` as one float matrix: numeric values as they are,
    categorical ones as the code of their profile category (unseen: one code after them; missing: NaN)."""
    columns = []
    for name, ref in features.items():
        values = frame[name]
        if ref["kind"] == "categorical":
            categories = list(ref["categories"])[:MAX_CODES]
            present = values.notna().to_numpy()
            codes = pd.Index(categories, dtype=object).get_indexer(values.astype(object).astype(str))
            codes = np.where(codes < 0, len(categories), codes).astype(float)
            codes[~present] = np.nan
            columns.append(codes)
        else:
            columns.append(values.to_numpy(dtype=float))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def categorical_mask(features: dict[str, dict]) -> np.ndarray:
    """Which columns of ``encode``'s matrix are categorical codes."""
    return np.array([ref["kind"] == "categorical" for ref in features.values()], dtype=bool)


def out_of_fold_auc(reference: np.ndarray, window: np.ndarray, categorical: np.ndarray, seed: int) -> float:
    """ROC-AUC of a domain classifier telling ``window`` rows (1) from ``reference`` rows (0), each row
    scored by the model fitted on the other of 2 stratified folds (one thread: small fits, shared machines)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.vstack([reference, window])
    y = np.r_[np.zeros(len(reference), dtype=np.int8), np.ones(len(window), dtype=np.int8)]
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=bool)
    for label in (0, 1):                        # stratified: each class split in half at random
        members = np.flatnonzero(y == label)
        fold[members] = rng.permutation(len(members)) % 2 == 0
    score = np.empty(len(y))
    mask = categorical if categorical.any() else None
    with _one_thread():
        for train in (fold, ~fold):
            model = HistGradientBoostingClassifier(categorical_features=mask, random_state=seed, **CLASSIFIER)
            model.fit(x[train], y[train])
            score[~train] = model.predict_proba(x[~train])[:, 1]
    return rank_auc(score, y)


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()     # scanning the loaded libraries takes ~10 ms: once per process


def _one_thread():
    """A context in which OpenMP runs one thread."""
    return _controller().limit(limits=1, user_api="openmp")


def rank_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC of ``score`` for 0/1 ``y`` (both present): ties count half, as in scikit-learn."""
    return RankedScores.of(y, score).roc_auc()


def null_sd(n_reference: int, n_window: int) -> float:
    """Standard deviation of a ROC-AUC between two samples of these sizes when nothing separates them
    (Mann-Whitney: sqrt((n1 + n2 + 1) / (12 n1 n2)))."""
    return math.sqrt((n_reference + n_window + 1) / (12 * n_reference * n_window))


def calibrate(train: pd.DataFrame, features: dict[str, dict], *, sample_rows: int = SAMPLE_ROWS,
              resamplings: int = RESAMPLINGS, seed: int = 0) -> dict:
    """The null distribution of the domain AUC: ``resamplings`` times, two disjoint random samples of
    ``train`` (each ``min(sample_rows, rows // 2)``) set against each other. JSON-ready, for the profile."""
    n = min(sample_rows, len(train) // 2)
    if n < 20 or not features:
        return {"status": "not_calibrated", "reason": (f"{len(train)} training rows: too few to set two samples of "
                                                       "20 against each other" if features else "no profiled feature")}
    x, categorical = encode(train, features), categorical_mask(features)
    aucs = []
    for r in range(resamplings):
        order = np.random.default_rng([seed, r]).permutation(len(train))
        aucs.append(out_of_fold_auc(x[order[:n]], x[order[n:2 * n]], categorical, seed=r))
    return {"status": "ok", "null_auc": [round(a, 6) for a in aucs], "sample_rows": n, "resamplings": resamplings,
            "seed": seed, "features": list(features), "classifier": dict(CLASSIFIER),
            "source": f"{resamplings} pairs of disjoint random samples of {n} training rows"}


def threshold(calibration: dict, n_reference: int, n_window: int, *, false_alarm_rate: float = 0.01,
              margin: float = 0.01) -> float:
    """The AUC above which a window of ``n_window`` rows set against ``n_reference`` reference rows is
    said to have drifted: the null AUCs in units of ``null_sd`` at the calibration's sizes, their upper
    ``false_alarm_rate`` quantile, back in AUC units at these sizes, plus ``margin``.

    The quantile is the larger of the empirical one and a normal fit's, the latter raised by one
    standard error of its estimate (sqrt(1/R + q^2 / (2(R - 1))) null sds for R resamplings): with
    ~100 resamplings the plain estimate is low about half the time, and so would the false alarm rate be high."""
    from scipy.stats import norm

    n = calibration["sample_rows"]
    z = (np.asarray(calibration["null_auc"], dtype=float) - 0.5) / null_sd(n, n)
    q, r = float(norm.ppf(1 - false_alarm_rate)), len(z)
    fitted = (float(z.mean() + (q + math.sqrt(1 / r + q * q / (2 * (r - 1)))) * z.std(ddof=1)) if r > 1
              else float(z.max()))
    upper = max(float(np.quantile(z, 1 - false_alarm_rate)), fitted)
    return min(1.0, 0.5 + upper * null_sd(n_reference, n_window) + margin)


def domain_auc(reference: pd.DataFrame, window: pd.DataFrame, features: dict[str, dict], calibration: dict | None, *,
               sample_rows: int = SAMPLE_ROWS, min_rows: int = 300, seed: int = 0, false_alarm_rate: float = 0.01,
               margin: float = 0.01) -> DomainAUC:
    """The window's domain AUC against the reference (seeded samples of at most ``sample_rows`` rows each)
    and the no-shift threshold for those sizes (from the profile's ``calibration``)."""
    usable = {name: ref for name, ref in features.items() if name in reference.columns and name in window.columns}
    n_ref, n_win = min(sample_rows, len(reference)), min(sample_rows, len(window))
    base = dict(reference_rows=n_ref, window_rows=n_win, features=tuple(usable))
    if not calibration or calibration.get("status") != "ok":
        why = (calibration or {}).get("reason", "the profile has no null distribution of the domain AUC "
                                                "(published before multivariate drift existed)")
        return DomainAUC("not_calibrated", None, None, message=why, **base)
    if not usable:
        return DomainAUC("no_features", None, None, message="no profiled feature in both the reference and the window",
                         **base)
    if n_win < min_rows or n_ref < min_rows:
        return DomainAUC("insufficient_data", None, None, message=f"{len(window)} window rows and {len(reference)} "
                         f"reference rows; the domain classifier needs at least {min_rows} of each", **base)
    rng = np.random.default_rng([seed, WINDOW_STREAM])
    ref_rows = reference.iloc[np.sort(rng.choice(len(reference), n_ref, replace=False))]
    win_rows = window.iloc[np.sort(rng.choice(len(window), n_win, replace=False))]
    auc = out_of_fold_auc(encode(ref_rows, usable), encode(win_rows, usable), categorical_mask(usable), seed=seed)
    limit = threshold(calibration, n_ref, n_win, false_alarm_rate=false_alarm_rate, margin=margin)
    missing = sorted(set(features) - set(usable))
    note = f"not in the reference or the window: {', '.join(missing)}" if missing else ""
    return DomainAUC("ok", auc, limit, message=note, **base)

"""Target leakage before training: how well each feature alone ranks the target, on the training rows.

A column that ranks the target almost perfectly on its own (``validation.integrity.leakage.stop_at_auc``,
0.98 by default) is nearly always the target under another name, or something recorded after the
outcome was known: a model trained with it scores perfectly offline and fails in production. Each
feature gets the larger of two single-column AUCs, both on the training split only:

- ordered values (numbers, booleans, datetimes): the rank AUC of the value, read both ways
  (``max(auc, 1 - auc)``), with missing values placed below every value and above every value (the
  better of the two), so that a column whose *missingness* gives the target away is caught too;
- every feature as levels: each row scored by its value's positive rate in the *other* folds
  (``FOLDS`` seeded folds), a value seen fewer than ``MIN_LEVEL_ROWS`` times there scored as the
  overall rate. Out of fold, an ID-like column (every value rare) scores ~0.5 instead of a perfect
  in-sample fit; a relabelled target (``yes``/``no`` for 1/0) or a code only filled in for
  positives scores ~1.

Vectorised, and no row is sorted: per column one factorisation and a few ``bincount``; the AUCs are
computed over groups of rows that share a score (a value, or a value in a fold), sorting the groups.
Design notes: docs/training.md#integrity-before-training
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FOLDS = 5            # folds of the out-of-fold level rates
MIN_LEVEL_ROWS = 5   # a value seen fewer times in the other folds is scored as the overall rate


def grouped_auc(scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC-AUC of groups of rows that share a score: ``positives`` and ``negatives`` rows per group (equal
    scores tie and count half); NaN if a class is absent. Sorts the groups, not the rows."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    pos = np.add.reduceat(np.asarray(positives, dtype=float)[order], starts) if len(order) else np.zeros(0)
    neg = np.add.reduceat(np.asarray(negatives, dtype=float)[order], starts) if len(order) else np.zeros(0)
    total_pos, total_neg = pos.sum(), neg.sum()
    if not total_pos or not total_neg:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + neg / 2)).sum() / (total_pos * total_neg))


def rank_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for the 0/1 labels ``y`` (ties count half); NaN if a class is absent."""
    y = np.asarray(y, dtype=float)
    return grouped_auc(np.asarray(scores, dtype=float), y, 1 - y)


def _ordered_auc(levels: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """``ordered_auc`` from distinct float values (NaN: missing) and their rows of each class."""
    missing = np.isnan(levels)
    best = 0.0
    for fill in ((-np.inf, np.inf) if missing.any() else (-np.inf,)):
        auc = grouped_auc(np.where(missing, fill, levels), positives, negatives)
        if auc == auc:   # not NaN
            best = max(best, auc, 1 - auc)
    return best or 0.5


def ordered_auc(values: np.ndarray, y: np.ndarray) -> float:
    """Rank AUC of float ``values`` read both ways, missing values (NaN) all below or all above the
    others, whichever ranks better (a column whose missingness is the target scores 1)."""
    codes, levels = pd.factorize(values, use_na_sentinel=False)
    positives = np.bincount(codes, weights=y, minlength=len(levels))
    return _ordered_auc(np.asarray(levels, dtype=float), positives, np.bincount(codes, minlength=len(levels)) - positives)


def level_auc(codes: np.ndarray, y: np.ndarray, folds: np.ndarray) -> float:
    """AUC of each row's level scored by that level's positive rate in the other folds (``folds``: 0..FOLDS-1
    per row); levels seen fewer than MIN_LEVEL_ROWS times there get the overall rate."""
    n_levels = int(codes.max()) + 1 if len(codes) else 0
    if n_levels in (0, 1, len(codes)):   # constant, or every value distinct: nothing out of fold to learn
        return 0.5
    key = folds * n_levels + codes
    count = np.bincount(key, minlength=FOLDS * n_levels).reshape(FOLDS, n_levels)
    total = count.sum(axis=0)
    if total.max() <= MIN_LEVEL_ROWS:   # no value is ever seen often enough out of fold: every row scores the same
        return 0.5
    positive = np.bincount(key, weights=y, minlength=FOLDS * n_levels).reshape(FOLDS, n_levels)
    other_count, other_positive = total - count, positive.sum(axis=0) - positive
    scores = np.where(other_count >= MIN_LEVEL_ROWS, other_positive / np.maximum(other_count, 1), y.mean())
    used = count.ravel() > 0   # one group per (fold, value) that holds rows
    return grouped_auc(scores.ravel()[used], positive.ravel()[used], (count - positive).ravel()[used])


def _ordered_values(column: pd.Series) -> np.ndarray | None:
    """The column as floats (datetimes as nanoseconds, missing as NaN), or None when its values have no order."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = column.to_numpy(dtype="datetime64[ns]")
        values = stamps.astype("int64").astype(float)
        values[np.isnat(stamps)] = np.nan
        return values
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=float, na_value=np.nan)
    return None


def column_auc(column: pd.Series, y: np.ndarray, folds: np.ndarray) -> float:
    """The single-column AUC of one feature (see the module's docstring): the larger of the two readings."""
    values = _ordered_values(column)
    codes, levels = pd.factorize(values if values is not None else column, use_na_sentinel=False)   # missing: a level
    codes = codes.astype(np.int64)
    auc = level_auc(codes, y, folds)
    if values is not None:
        positives = np.bincount(codes, weights=y, minlength=len(levels))
        negatives = np.bincount(codes, minlength=len(levels)) - positives
        auc = max(auc, _ordered_auc(np.asarray(levels, dtype=float), positives, negatives))
    return auc


def fold_of_rows(n: int, seed: int) -> np.ndarray:
    """A seeded, balanced fold number (0..FOLDS-1) per row."""
    return np.random.default_rng(seed).permutation(n) % FOLDS


def single_column_aucs(frame: pd.DataFrame, features: list[str], y: np.ndarray, seed: int) -> dict[str, float]:
    """{feature: its single-column AUC} on ``frame``'s rows with 0/1 labels ``y``; empty when a class is absent."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0 or y.min() == y.max():
        return {}
    folds = fold_of_rows(len(y), seed)
    return {name: round(column_auc(frame[name], y, folds), 6) for name in features if name in frame.columns}

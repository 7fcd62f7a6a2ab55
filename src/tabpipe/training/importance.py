"""Global permutation importance of each input column on the test rows, with bootstrap confidence intervals.

A column's importance is how much the gate's metric drops when that column's values are shuffled among the
test rows (Breiman 2001; Fisher et al. 2019), averaged over ``REPEATS`` shuffles. The preprocessing works one
column at a time, so shuffling a column's preprocessed block (its one-hot levels, missing indicator, datetime
parts) row-wise is shuffling the column: the rows are preprocessed once. The 95 % interval is the percentile
bootstrap over test rows (``BOOTSTRAP`` resamples, each scoring the intact and the shuffled predictions on the
same resampled rows). At most ``MAX_ROWS`` test rows are used (a fixed random sample beyond that). Computed at
evaluation, on the untouched test split, and recorded in run.json (``stages.evaluation.artifact.importance``).

The cost is rows × columns × shuffles scorings, so on a wide table it is bounded by ``MAX_ROW_SCORINGS``
(deterministic, so a run stays reproducible from config and seed): fewer rows first (down to ``MIN_ROWS``),
then every column gets one shuffle and the columns that dropped the metric most get the others while the
bound allows; each column records its ``repeats``. Up to ~130 columns every row (to 5,000) and every shuffle count.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tabpipe.scoring.batch import matrix_scorer
from tabpipe.scoring.explain.columns import feature_columns
from tabpipe.training.segments import weighted_metric

REPEATS = 3          # shuffles per column
BOOTSTRAP = 100      # resamples of the test rows for the interval
MAX_ROWS = 5_000     # test rows used at most
MIN_ROWS = 1_000     # rows kept when the bound below would want fewer
MAX_ROW_SCORINGS = 2_000_000   # rows x shuffles over all columns: ~1,500 columns x 1,000 rows at most
LEVEL = 0.95


def permutation_importance(model, typed: pd.DataFrame, y: np.ndarray, metric: str, seed: int = 0) -> dict:
    """``{metric, rows, repeats, bootstrap, level, baseline, columns: [{column, importance, low, high, repeats}]}``,
    columns by decreasing importance (a column's ``repeats``: its shuffles, fewer than ``repeats`` when bounded);
    ``typed``: the test rows typed by the schema check, ``y``: their 0/1 labels.
    ``f1`` is taken at the model's decision threshold. Every resample's metric comes from one sort of the scores
    (``segments.weighted_metric``), so the interval costs about what one metric does."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    columns = list(model.schema.features)
    rows = min(len(typed), MAX_ROWS, max(MIN_ROWS, MAX_ROW_SCORINGS // max(1, REPEATS * len(columns))))
    if len(typed) > rows:
        keep = np.sort(rng.choice(len(typed), rows, replace=False))
        typed, y = typed.iloc[keep], y[keep]
    threshold = float(model.threshold)
    baseline, shuffle, score = _permuter(model, typed)
    weights = np.vstack([np.ones(len(y)), _stratified_weights(rng, y, BOOTSTRAP)])   # row 0: the rows as they are

    def metric_of(proba):
        return weighted_metric(metric, y, proba, threshold, weights)
    base = metric_of(baseline)
    shuffled: dict[str, list] = {}
    for column in columns:                        # first shuffle of every column
        permuted = shuffle(column, rng.permutation(len(y)))
        shuffled[column] = [] if permuted is None else [metric_of(score(permuted))]   # None: reaches no feature
    left = MAX_ROW_SCORINGS // len(y) - len(columns)
    for column in sorted((c for c in columns if shuffled[c]), key=lambda c: -(base[0] - shuffled[c][0][0])):
        if left < REPEATS - 1:                    # the bound is spent: the rest keep their one shuffle
            break
        shuffled[column] += [metric_of(score(shuffle(column, rng.permutation(len(y))))) for _ in range(REPEATS - 1)]
        left -= REPEATS - 1
    results = []
    for column in columns:
        if not shuffled[column]:
            results.append({"column": column, "importance": 0.0, "low": 0.0, "high": 0.0, "repeats": 0})
            continue
        drop = base - np.mean(shuffled[column], axis=0)
        low, high = np.nanquantile(drop[1:], [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        results.append({"column": column, "importance": round(float(drop[0]), 6),
                        "low": round(float(low), 6), "high": round(float(high), 6), "repeats": len(shuffled[column])})
    results.sort(key=lambda r: -r["importance"])
    return {"metric": metric, "rows": len(y), "repeats": REPEATS, "bootstrap": BOOTSTRAP, "level": LEVEL,
            "baseline": round(float(base[0]), 6), "columns": results}


def _stratified_weights(rng: np.random.Generator, y: np.ndarray, n: int) -> np.ndarray:
    """(n, rows) counts of each row in ``n`` bootstrap resamples that keep each class's count."""
    weights = np.zeros((n, len(y)))
    for members in (np.flatnonzero(y == 1), np.flatnonzero(y == 0)):
        if len(members):
            draws = rng.integers(0, len(members), size=(n, len(members)))
            for i in range(n):
                weights[i, members] = np.bincount(draws[i], minlength=len(members))
    return weights


def _permuter(model, typed: pd.DataFrame):
    """``(baseline probabilities, shuffle(column, order) -> input with that column's values reordered or None,
    score(input) -> probabilities)``. A TabularModel's rows are preprocessed once, and prepared once for its
    estimator (``MatrixScorer.stages``: a boosting model's bins); the column's block of preprocessed features is
    shuffled in every prepared array (preprocessing and binning work column by column). Any other model (with
    only ``predict_proba_typed``) gets the typed rows with the column reordered."""
    if hasattr(model, "preprocessor") and hasattr(model, "estimator"):
        stages = matrix_scorer(model.estimator).stages()
        prepared = stages.prepare(model.preprocessor.transform(typed))

        def score(arrays):   # the served probability: f1 compares it with the model's threshold
            return model.calibrate(stages.positive(arrays))
        sources = np.array(feature_columns(model.preprocessor), dtype=object)

        def shuffle(column, order):
            block = np.flatnonzero(sources == column)
            if not len(block):
                return None
            copies: dict[int, np.ndarray] = {}   # an array prepared twice (the rows, for two linear members): once
            for array in prepared:
                if id(array) not in copies:
                    permuted = copies[id(array)] = array.copy(order="K")   # the layout its scorer expects
                    permuted[:, block] = array[:, block][order]
            return [copies[id(array)] for array in prepared]
        return score(prepared), shuffle, score

    def shuffle_typed(column, order):
        permuted = typed.copy()
        permuted[column] = typed[column].to_numpy()[order]
        return permuted
    return model.predict_proba_typed(typed), shuffle_typed, model.predict_proba_typed

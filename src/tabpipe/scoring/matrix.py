"""Positive-class probabilities of many preprocessed rows at once: the batch path's estimator.

``MatrixScorer(estimator)(X)`` equals ``estimator.predict_proba(X)[:, <class 1>]`` (tested to 1e-12), faster
(the default ensemble of ``tabpipe init``: 2.6 -> 0.7 CPU seconds per 100,000 rows):

- the rows go through in blocks of ``BLOCK_ROWS``: temporaries (a block's bins, its spline intervals) stay
  small, and memory does not grow with the table;
- a histogram gradient boosting model (alone, or inside ``LinearBoostingBlend`` / ``WeightedMean``, nested
  too) reads each block's *bins* (one byte per value, binned once) instead of the float rows: every tree
  then walks a 60-byte row instead of a 480-byte one, several times faster. It is the path scikit-learn
  itself takes for its early-stopping scores, and exact: a value ``x`` is in bin ``b`` or below exactly
  when ``x <= threshold[b]``, the test the float path makes (NaN has its own bin, routed as
  ``missing_go_to_left`` says). The rows are shared among the OpenMP thread count of Python threads, each
  walking every tree over its rows (scikit-learn's own loop releases the GIL): on a busy machine that is two
  meetings of the threads per block instead of two per tree;
- a logistic regression (alone, a blend's linear half) and ``SplineLogisticRegression`` compute their logit
  a column at a time (``_linear_sum``: a row's sum does not depend on the block it is in, so a file scored
  in chunks gives the bytes it gives whole), the splines as the piecewise cubics ``compiled.linear`` makes
  of them (no basis matrix);
- any other estimator, or a histogram model this does not know (categorical splits, several trees per
  iteration, another loss), is asked for its own ``predict_proba`` on the block.

Errors are the estimators' own (e.g. a logistic regression refusing a non-finite row), raised for the whole
call as ``predict_proba`` raised them.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy.special import expit

from tabpipe.scoring.compiled.errors import NotCompilable
from tabpipe.scoring.compiled.linear import _intervals

BLOCK_ROWS = 65_536   # rows per block: a 60-column float64 block is ~31 MB, its bins ~4 MB

SPLIT_ROWS = 4_096     # fewer rows than this per thread: the trees walk them in one thread
Positive = Callable[[np.ndarray], np.ndarray]   # (n, d) float64 preprocessed rows -> (n,) P(class 1)


class Stages(NamedTuple):
    """An estimator's P(class 1) in two steps: ``prepare`` turns rows into ``arrays`` arrays, each with the rows'
    columns and worked out column by column; ``positive`` turns those arrays into probabilities."""

    prepare: Callable[[np.ndarray], list[np.ndarray]]
    positive: Callable[[list[np.ndarray]], np.ndarray]
    arrays: int = 1


def _own(est, column: int) -> Positive:
    return lambda X: est.predict_proba(X)[:, column]


def _binned_hist_gradient_boosting(est) -> Stages | None:
    """The binned path of a binary HistGradientBoostingClassifier with numeric splits only, else None: its
    stages are the bins (``mapper.transform``, column by column) and the walk of every tree over them."""
    try:
        mapper, predictors, check = est._bin_mapper, est._predictors, est._preprocess_X
        baseline, loss = est._baseline_prediction, est._loss
        categorical = getattr(est, "is_categorical_", None)
        missing_bin = mapper.missing_values_bin_idx_
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except (AttributeError, ImportError):   # another scikit-learn's internals: its own path
        return None
    if (est.n_trees_per_iteration_ != 1 or est.loss != "log_loss" or getattr(est, "_preprocessor", None) is not None
            or (categorical is not None and np.any(categorical)) or list(est.classes_) != [0, 1]):
        return None
    trees = [iteration[0] for iteration in predictors]

    def bins(X: np.ndarray) -> list[np.ndarray]:
        return [mapper.transform(check(X, reset=False))]   # the checks of predict_proba (width, dtype float64)

    def positive(prepared: list[np.ndarray]) -> np.ndarray:
        binned = prepared[0]
        raw = np.zeros((binned.shape[0], 1), dtype=baseline.dtype, order="F")
        raw += baseline
        threads = min(_openmp_effective_n_threads(), max(1, binned.shape[0] // SPLIT_ROWS))

        def walk(rows: slice) -> None:     # the same sum, in the same order, as _raw_predict, for these rows
            part, out = binned[rows], raw[rows, 0]
            for tree in trees:
                out += tree.predict_binned(part, missing_bin, 1)
        if threads == 1:
            walk(slice(None))
        else:   # one thread per share of the rows, each walking every tree: two waits per block, not two per tree
            bounds = np.linspace(0, binned.shape[0], threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(walk, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
        return loss.predict_proba(raw)[:, 1]
    return Stages(bins, positive)


def _linear_sum(X: np.ndarray, weights: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ weights + intercept`` summed a column at a time, in column order: each row's sum is the same whatever
    block it is in (a BLAS product's rounding depends on the block's alignment), so scoring a file in chunks
    gives the bytes scoring it whole gives."""
    columns = np.asfortranarray(X)
    z = np.full(X.shape[0], intercept, dtype=np.float64)
    for j, w in enumerate(weights):
        z += columns[:, j] * w
    return z


def _usable(X: np.ndarray, width: int) -> bool:
    """A block a linear model takes as it is: 2-D, its width, float, finite (else its own checks and errors)."""
    return (X.ndim == 2 and X.shape[1] == width and X.dtype in (np.float64, np.float32)
            and bool(np.isfinite(X).all()))


def _logistic(est) -> Positive | None:
    """A binary ``LogisticRegression``: expit of its decision function (``_linear_sum``), or None."""
    if est.coef_.shape[0] != 1 or list(est.classes_) != [0, 1]:
        return None
    coef, intercept, width, own = est.coef_[0].astype(np.float64), float(est.intercept_[0]), est.n_features_in_, \
        _own(est, 1)
    return lambda X: expit(_linear_sum(X, coef, intercept)) if _usable(X, width) else own(X)


def _spline_logistic(est) -> Positive | None:
    """A fitted ``SplineLogisticRegression`` as its logit: the linear part by one matrix product, each splined
    column's fitted curve as the piecewise cubic ``compiled.linear`` makes of it (no basis matrix), or None."""
    linear = est.linear_
    if est.splines_ is None or linear.coef_.shape[0] != 1 or list(est.classes_) != [0, 1]:
        return None
    width = est.n_features_in_
    coef = linear.coef_[0].astype(np.float64)
    n_splines = est.splines_.bsplines_[0].c.shape[1]
    weights = coef[width:].reshape(len(est.spline_columns_), n_splines)
    try:
        curves = [(int(column), *_intervals(np.asarray(spline.t, dtype=np.float64), w, spline.k))
                  for column, spline, w in zip(est.spline_columns_, est.splines_.bsplines_, weights)]
    except NotCompilable:
        return None
    direct, intercept = coef[:width], float(linear.intercept_[0])
    own = _own(est, 1)

    def positive(X: np.ndarray) -> np.ndarray:
        if not _usable(X, width):
            return own(X)                          # its own checks and errors
        X = np.asarray(X, dtype=np.float64)
        z = _linear_sum(X, direct, intercept)
        for column, breaks, origins, coefs in curves:
            v = X[:, column]
            at = np.searchsorted(breaks, v, side="right")     # breakpoints at or below v
            t = v - origins[at]
            c = coefs[at]
            z += c[:, 0] + t * (c[:, 1] + t * (c[:, 2] + t * c[:, 3]))
        return expit(z)
    return positive


def _on_rows(positive: Positive) -> Stages:
    """The stages of an estimator that reads the preprocessed rows as they are."""
    return Stages(lambda X: [X], lambda prepared: positive(prepared[0]))


def _stages(est, column: int = 1) -> Stages:
    """``est``'s P(class 1) in two stages (see ``MatrixScorer.stages``); members of known ensembles compiled
    recursively, their prepared arrays concatenated in member order."""
    kind = type(est).__name__
    if kind == "LogisticRegression" and column == 1:
        return _on_rows(_logistic(est) or _own(est, column))
    if kind == "HistGradientBoostingClassifier":
        return _binned_hist_gradient_boosting(est) or _on_rows(_own(est, column))
    if kind == "SplineLogisticRegression" and column == 1:
        return _on_rows(_spline_logistic(est) or _own(est, column))
    if kind == "LinearBoostingBlend" and column == 1 and list(est.classes_) == [0, 1]:
        members = [(est.linear_weight, _stages(est.linear_)), (1.0 - est.linear_weight, _stages(est.boosting_))]
    elif kind == "WeightedMean" and column == 1:   # WeightedMean.predict_proba's sum
        members = [(w, _stages(m)) for w, m in zip(est.weights_, est.estimators_)]
    else:
        return _on_rows(_own(est, column))
    return _combined(members)


def _combined(members: list[tuple[float, Stages]]) -> Stages:
    """The weighted sum of the members' probabilities (LinearBoostingBlend's and WeightedMean's formula)."""
    def prepare(X: np.ndarray) -> list[np.ndarray]:
        return [array for _, member in members for array in member.prepare(X)]

    def positive(prepared: list[np.ndarray]) -> np.ndarray:
        total, at = 0.0, 0
        for w, member in members:
            total = total + w * member.positive(prepared[at:at + member.arrays])
            at += member.arrays
        return total
    return Stages(prepare, positive, sum(member.arrays for _, member in members))


class MatrixScorer:
    """``__call__(X)``: (n,) P(class 1) of preprocessed rows ``X``, block by block; see the module docstring."""

    def __init__(self, estimator, block_rows: int = BLOCK_ROWS):
        self.estimator = estimator
        self.block_rows = block_rows
        self._stages = _stages(estimator, list(estimator.classes_).index(1))

    def _positive(self, X: np.ndarray) -> np.ndarray:
        return self._stages.positive(self._stages.prepare(X))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        if n <= self.block_rows:
            return np.asarray(self._positive(X), dtype=np.float64)
        out = np.empty(n)
        for start in range(0, n, self.block_rows):
            out[start:start + self.block_rows] = self._positive(X[start:start + self.block_rows])
        return out

    def stages(self) -> Stages:
        """``Stages`` with ``positive(prepare(X)) == self(X)`` (float64) for one block of rows. ``prepare``
        works column by column and every array it returns has ``X``'s columns (a boosting model's bins, else
        the rows themselves), so reordering a column's rows in each of them is reordering them in ``X``:
        permutation importance prepares the rows once and shuffles the prepared arrays."""
        stages = self._stages
        return stages._replace(positive=lambda prepared: np.asarray(stages.positive(prepared), dtype=np.float64))

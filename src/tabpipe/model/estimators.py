"""Estimators tabpipe ships for its default candidates (scikit-learn API, flat parameters for model.yaml).

``LinearBoostingBlend`` (logistic regression + boosting), ``SplineLogisticRegression`` (an additive
spline model), ``WeightedMean`` (the trainer's ensembles).
Design notes: docs/training.md#the-shipped-estimators
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data


class LinearBoostingBlend(ClassifierMixin, BaseEstimator):
    """P(y=1) = linear_weight * logistic regression + (1 - linear_weight) * histogram gradient boosting.

    Binary labels only. ``C`` and ``max_iter_linear`` configure the logistic regression; the other
    parameters are HistGradientBoostingClassifier's own (see its documentation).
    """

    def __init__(self, *, linear_weight: float = 0.5, C: float = 1.0, max_iter_linear: int = 2000,
                 learning_rate: float = 0.05, max_iter: int = 100, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 40, l2_regularization: float = 1.0, max_features: float = 1.0,
                 early_stopping: str | bool = "auto", random_state=None):
        self.linear_weight = linear_weight
        self.C = C
        self.max_iter_linear = max_iter_linear
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_features = max_features
        self.early_stopping = early_stopping
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit both models on (X, y); y must hold exactly two classes."""
        if not 0.0 <= self.linear_weight <= 1.0:
            raise ValueError(f"linear_weight must be within [0, 1], got {self.linear_weight!r}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError(f"LinearBoostingBlend is a binary classifier; y has {len(self.classes_)} classes")
        if np.isnan(X).any():
            raise ValueError("LinearBoostingBlend needs imputed input: X contains NaN")
        self.linear_ = LogisticRegression(C=self.C, max_iter=self.max_iter_linear).fit(X, y, sample_weight=sample_weight)
        self.boosting_ = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            max_features=self.max_features, early_stopping=self.early_stopping, random_state=self.random_state,
        ).fit(X, y, sample_weight=sample_weight)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "boosting_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        w = self.linear_weight
        positive = w * self.linear_.predict_proba(X)[:, 1] + (1.0 - w) * self.boosting_.predict_proba(X)[:, 1]
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X) -> np.ndarray:
        """Class labels at probability 0.5 (tabpipe itself applies its tuned threshold to predict_proba)."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


class SplineLogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression on X plus a cubic B-spline basis of X's columns that are not 0/1 and hold at least
    ``min_unique`` distinct values in the training rows (knots at their quantiles, linear beyond the outer
    knots).

    Binary labels only; X must be imputed. ``n_knots`` 0 means no spline columns: a plain logistic
    regression. The basis values lie in [0, 1] (they sum to 1 within the knots), on the scale of one-hot
    columns, so ``C`` weighs them alike. The expanded matrix keeps X's float dtype.
    """

    def __init__(self, *, C: float = 1.0, n_knots: int = 5, min_unique: int = 10, max_iter: int = 2000):
        self.C = C
        self.n_knots = n_knots
        self.min_unique = min_unique
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None):
        """Fit the spline bases on X's many-valued columns, then the logistic regression."""
        if self.n_knots != 0 and self.n_knots < 2:
            raise ValueError(f"n_knots must be 0 (no splines) or at least 2, got {self.n_knots!r}")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError(f"SplineLogisticRegression is a binary classifier; y has {len(self.classes_)} classes")
        many = [j for j in _non_binary_columns(X) if self.n_knots and len(np.unique(X[:, j])) >= self.min_unique]
        self.spline_columns_ = np.asarray(many, dtype=int)
        self.splines_ = (SplineTransformer(n_knots=self.n_knots, degree=3, knots="quantile",
                                           extrapolation="linear").fit(X[:, many])
                         if many else None)
        expanded = self._expand(X)
        self.linear_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(expanded, y, sample_weight=sample_weight)
        # each basis column's mean over the rows fitted on: the centre of the spline terms' explanations
        self.basis_means_ = (np.average(expanded[:, X.shape[1]:], axis=0, weights=sample_weight).astype(np.float64)
                             if many else np.zeros(0))
        return self

    def _expand(self, X: np.ndarray) -> np.ndarray:
        if self.splines_ is None:
            return X
        return np.hstack([X, self.splines_.transform(X[:, self.spline_columns_]).astype(X.dtype, copy=False)])

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "linear_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.linear_.predict_proba(self._expand(X))

    def predict(self, X) -> np.ndarray:
        """Class labels at probability 0.5 (tabpipe itself applies its tuned threshold to predict_proba)."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _non_binary_columns(X: np.ndarray, chunk_rows: int = 20_000) -> list[int]:
    """Indices of the columns holding a value other than 0 and 1 (read in row chunks: bounded temporaries)."""
    found = np.zeros(X.shape[1], dtype=bool)
    for start in range(0, X.shape[0], chunk_rows):
        part = X[start:start + chunk_rows]
        found |= ((part != 0) & (part != 1)).any(axis=0)
    return np.flatnonzero(found).tolist()


class WeightedMean(ClassifierMixin, BaseEstimator):
    """P(y=1) = sum of ``weights[i]`` * ``estimators[i]``'s P(y=1), weights normalised to sum to 1.

    Binary labels only. ``fit`` fits a clone of each estimator on the same rows; ``of_fitted`` joins
    estimators that are already fitted (the trainer fits each member on its own resampled rows).
    """

    def __init__(self, *, estimators=(), weights=None):
        self.estimators = estimators
        self.weights = weights

    @classmethod
    def of_fitted(cls, estimators: list, weights: list[float]) -> WeightedMean:
        """The ensemble of fitted ``estimators`` (same classes, same input width)."""
        return cls(estimators=list(estimators), weights=list(weights))._join(list(estimators))

    def fit(self, X, y, sample_weight=None):
        """Fit a clone of every estimator on (X, y); y must hold exactly two classes."""
        if len(unique_labels(y)) != 2:
            raise ValueError(f"WeightedMean is a binary classifier; y has {len(unique_labels(y))} classes")
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self._join([clone(est).fit(X, y, **kwargs) for est in self.estimators])

    def _join(self, members: list) -> WeightedMean:
        weights = np.ones(len(members)) if self.weights is None else np.asarray(self.weights, dtype=float)
        if not members:
            raise ValueError("WeightedMean needs at least one estimator")
        if weights.shape != (len(members),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {len(members)} non-negative numbers with a positive sum, "
                             f"got {self.weights!r}")
        classes = [list(m.classes_) for m in members]
        if len(classes[0]) != 2 or any(c != classes[0] for c in classes):
            raise ValueError(f"the estimators must share the same two classes, got {classes}")
        widths = {getattr(m, "n_features_in_", None) for m in members}
        if len(widths) != 1:
            raise ValueError(f"the estimators were fitted on different numbers of columns: {sorted(map(str, widths))}")
        self.estimators_, self.weights_ = members, weights / weights.sum()
        self.classes_, self.n_features_in_ = members[0].classes_, widths.pop()
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "estimators_")
        positive = sum(w * m.predict_proba(X)[:, 1] for w, m in zip(self.weights_, self.estimators_))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X) -> np.ndarray:
        """Class labels at probability 0.5 (tabpipe itself applies its tuned threshold to predict_proba)."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

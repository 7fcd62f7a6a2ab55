"""tabpipe.model.estimators: the linear + boosting blend and the spline logistic regression of the default candidates,
and the trainer's ensemble."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=600, n_features=8, n_informative=4, random_state=0)


def test_probability_is_the_weighted_mean_of_its_members(data):
    X, y = data
    blend = LinearBoostingBlend(linear_weight=0.3, C=0.5, max_iter=50, random_state=0).fit(X, y)
    linear = LogisticRegression(C=0.5, max_iter=2000).fit(X, y).predict_proba(X)[:, 1]
    boosting = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=50, max_leaf_nodes=15, min_samples_leaf=40,
                                              l2_regularization=1.0, random_state=0).fit(X, y).predict_proba(X)[:, 1]
    proba = blend.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 0.3 * linear + 0.7 * boosting, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(blend.classes_) == [0, 1]
    assert set(blend.predict(X)) <= {0, 1}


def test_string_labels_and_clone(data):
    X, y = data
    labels = np.where(y == 1, "yes", "no")
    blend = clone(LinearBoostingBlend(max_iter=20, random_state=0)).fit(X, labels)
    assert list(blend.classes_) == ["no", "yes"]
    assert set(blend.predict(X)) <= {"no", "yes"}


@pytest.mark.parametrize("kwargs,message", [({"linear_weight": 1.5}, "linear_weight"), ({}, "binary")])
def test_bad_input_is_named(data, kwargs, message):
    X, y = data
    y = y if kwargs else np.arange(len(y)) % 3
    with pytest.raises(ValueError, match=message):
        LinearBoostingBlend(max_iter=5, **kwargs).fit(X, y)


def test_missing_values_are_refused_with_a_clear_error(data):
    X, y = data
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LinearBoostingBlend(max_iter=5).fit(X, y)


def test_weighted_mean_of_fitted_members(data):
    X, y = data
    a = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
    b = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X[:400], y[:400])   # its own rows
    ens = WeightedMean.of_fitted([a, b], [3, 1])
    expected = 0.75 * a.predict_proba(X)[:, 1] + 0.25 * b.predict_proba(X)[:, 1]
    np.testing.assert_allclose(ens.predict_proba(X)[:, 1], expected, atol=1e-12)
    np.testing.assert_allclose(ens.predict_proba(X).sum(axis=1), 1.0)
    assert list(ens.weights_) == [0.75, 0.25] and ens.n_features_in_ == X.shape[1]
    refit = clone(ens).fit(X, y)                        # fit: clones of the members on the same rows
    assert refit.estimators_[0] is not a
    np.testing.assert_allclose(refit.estimators_[0].coef_, a.coef_)


@pytest.mark.parametrize("weights, message", [([1.0], "weights must be 2"), ([1.0, -1.0], "non-negative"),
                                              ([0.0, 0.0], "positive sum")])
def test_weighted_mean_bad_weights_are_named(data, weights, message):
    X, y = data
    members = [LogisticRegression().fit(X, y), LogisticRegression(C=0.1).fit(X, y)]
    with pytest.raises(ValueError, match=message):
        WeightedMean.of_fitted(members, weights)


def test_weighted_mean_members_must_agree(data):
    X, y = data
    with pytest.raises(ValueError, match="different numbers of columns"):
        WeightedMean.of_fitted([LogisticRegression().fit(X, y), LogisticRegression().fit(X[:, :3], y)], [1, 1])
    with pytest.raises(ValueError, match="same two classes"):
        WeightedMean.of_fitted([LogisticRegression().fit(X, y), LogisticRegression().fit(X, y + 1)], [1, 1])


def _bent(n: int = 3000, seed: int = 0):
    """A U-shaped effect of one numeric column, a straight one of another, and a 0/1 column."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 2, n)]).astype(float)
    logit = 2.0 * (X[:, 0] ** 2 - 1.0) + 0.8 * X[:, 1] + 0.7 * X[:, 2]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_spline_logistic_follows_a_bent_effect_that_a_straight_line_cannot():
    X, y = _bent()
    train, test = slice(0, 2000), slice(2000, None)
    spline = SplineLogisticRegression(C=1.0, n_knots=6).fit(X[train], y[train])
    plain = LogisticRegression(max_iter=2000).fit(X[train], y[train])
    auc_spline = roc_auc_score(y[test], spline.predict_proba(X[test])[:, 1])
    auc_plain = roc_auc_score(y[test], plain.predict_proba(X[test])[:, 1])
    assert auc_spline > auc_plain + 0.15, (auc_spline, auc_plain)
    assert list(spline.spline_columns_) == [0, 1]      # the 0/1 column is used as it is
    np.testing.assert_allclose(spline.predict_proba(X).sum(axis=1), 1.0)
    # beyond the range seen in training the basis extrapolates linearly: the log-odds are a straight line there
    far = np.array([[8.0, 0.0, 0.0], [12.0, 0.0, 0.0], [16.0, 0.0, 0.0]])
    p = spline.predict_proba(far)[:, 1]
    logit = np.log(p) - np.log1p(-p)
    assert np.isfinite(p).all() and logit[2] - logit[1] == pytest.approx(logit[1] - logit[0], rel=1e-6, abs=1e-9)


def test_spline_logistic_without_knots_is_a_logistic_regression():
    X, y = _bent(800)
    got = SplineLogisticRegression(C=0.5, n_knots=0).fit(X, y)
    expected = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
    np.testing.assert_allclose(got.predict_proba(X), expected.predict_proba(X), atol=1e-6)
    assert got.splines_ is None and got.spline_columns_.size == 0


def test_spline_logistic_keeps_float32_and_splines_only_many_valued_columns():
    X, y = _bent(1000)
    coded = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)      # 4 values: used as it is
    X32 = np.column_stack([X, coded]).astype(np.float32)
    model = SplineLogisticRegression(n_knots=4).fit(X32, y)
    assert list(model.spline_columns_) == [0, 1]
    assert model._expand(X32).dtype == np.float32 and model._expand(X32).shape == (1000, 4 + 2 * (4 + 2))
    np.testing.assert_allclose(model.predict_proba(X32)[:, 1],
                               model.predict_proba(X32.astype(np.float64))[:, 1], atol=1e-5)


def test_spline_logistic_labels_clone_and_bad_input():
    X, y = _bent(600)
    labels = np.where(y == 1, "yes", "no")
    model = clone(SplineLogisticRegression(n_knots=4)).fit(X, labels)
    assert list(model.classes_) == ["no", "yes"] and set(model.predict(X)) <= {"no", "yes"}
    with pytest.raises(ValueError, match="n_knots"):
        SplineLogisticRegression(n_knots=1).fit(X, y)
    with pytest.raises(ValueError, match="binary"):
        SplineLogisticRegression().fit(X, np.arange(len(y)) % 3)

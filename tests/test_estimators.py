"""tabpipe.estimators: the linear + boosting blend used by the default candidates, and the trainer's ensemble."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from tabpipe.estimators import LinearBoostingBlend, WeightedMean


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

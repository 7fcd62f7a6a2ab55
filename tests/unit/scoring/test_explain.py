"""Per-row reasons (tabpipe.scoring.explain): base + contributions = the raw score logit on 10k rows for every
estimator kind tabpipe ships, Tree SHAP equal to shap's TreeExplainer (path-dependent), columns traced back
through the preprocessing, top-k order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
from tabpipe.schema import coerce_frame
from tabpipe.scoring.explain import OF, Explainer, NotExplainable
from tabpipe.scoring.explain.columns import feature_columns
from tabpipe.scoring.explain.members import members, read, tree_shap

N_ROWS = 10_000


@pytest.fixture(scope="module")
def typed(table, make_records):
    """10,000 new rows of the table's schema, typed by the schema check."""
    records, _ = make_records(N_ROWS, seed=7)
    return coerce_frame(pd.DataFrame.from_records(records), table.schema, with_target=False)[0]


@pytest.fixture(scope="module")
def rows(table, typed):
    """The 10,000 rows preprocessed (float64, as the fitted preprocessing returns them)."""
    return table.preprocessor.transform(typed)


def _hgb(**kw):
    return HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0, **kw)


ESTIMATORS = {
    "logistic_regression": lambda: LogisticRegression(max_iter=2000),
    "spline_logistic_regression": lambda: SplineLogisticRegression(n_knots=6),
    "hist_gradient_boosting": _hgb,
    "linear_boosting_blend": lambda: LinearBoostingBlend(linear_weight=0.3, max_iter=40, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
    "weighted_mean": lambda: WeightedMean(estimators=[LogisticRegression(max_iter=2000), _hgb(),
                                                      SplineLogisticRegression(n_knots=4)], weights=[2, 1, 1]),
    "nested_weighted_mean": lambda: WeightedMean(estimators=[
        LinearBoostingBlend(max_iter=30, random_state=0), RandomForestClassifier(n_estimators=10, random_state=0)],
        weights=[3, 1]),
}


def _p_and_q(est, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(class 1) and 1 - P(class 1) from the estimators' own outputs (each logit from its own decision function)."""
    name = type(est).__name__
    if name in ("LogisticRegression", "HistGradientBoostingClassifier"):
        z = est.decision_function(X)
        return expit(z), expit(-z)
    if name == "SplineLogisticRegression":
        z = est.linear_.decision_function(est._expand(X))
        return expit(z), expit(-z)
    if name == "RandomForestClassifier":
        p = est.predict_proba(X)[:, 1]
        return p, 1.0 - p
    parts = ([(est.linear_weight, est.linear_), (1 - est.linear_weight, est.boosting_)] if name == "LinearBoostingBlend"
             else list(zip(est.weights_, est.estimators_)))
    p = q = 0.0
    for w, member in parts:
        mp, mq = _p_and_q(member, X)
        p, q = p + w * mp, q + w * mq
    return p, q


def _model_logit(est, X: np.ndarray) -> np.ndarray:
    """The raw score logit, computed without the explainer: the estimator's own logit for one logistic model."""
    name = type(est).__name__
    if name in ("LogisticRegression", "HistGradientBoostingClassifier"):
        return est.decision_function(X)
    if name == "SplineLogisticRegression":
        return est.linear_.decision_function(est._expand(X))
    p, q = _p_and_q(est, X)
    return np.log(np.maximum(p, 1e-15)) - np.log(np.maximum(q, 1e-15))


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
@pytest.mark.parametrize("centred", [True, False], ids=["training_means", "no_means"])
def test_base_plus_contributions_is_the_raw_score_logit_on_10k_rows(table, typed, rows, kind, centred):
    est = ESTIMATORS[kind]().fit(table.X, table.y)
    model = table.model(est)
    if centred:
        model.feature_means = table.X.mean(axis=0, dtype=np.float64)
    reasons = Explainer(model).explain(rows)
    assert reasons.contributions.shape == (N_ROWS, len(table.schema.features))
    expected = _model_logit(est, rows)
    np.testing.assert_allclose(reasons.base + reasons.contributions.sum(axis=1), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(reasons.logit, expected, rtol=0, atol=1e-6)
    # the logit is that of the probability the model serves
    np.testing.assert_allclose(expit(reasons.logit), model.predict_proba_typed(typed), rtol=0, atol=1e-9)
    assert np.abs(reasons.contributions).max() > 0.01      # the rows differ: some column moves the score


@pytest.mark.parametrize("kind", ["logistic_regression", "spline_logistic_regression"])
def test_additive_models_are_centred_on_the_training_mean(table, kind):
    """Centred on the training rows' mean, each column's contribution averages 0 over those rows, and the base
    is the mean training logit."""
    est = ESTIMATORS[kind]().fit(table.X, table.y)
    model = table.model(est)
    model.feature_means = table.X.mean(axis=0, dtype=np.float64)
    reasons = Explainer(model).explain(table.X.astype(np.float64))
    np.testing.assert_allclose(reasons.contributions.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(reasons.base, _model_logit(est, table.X.astype(np.float64)).mean(), atol=1e-6)


def test_hist_gradient_boosting_equals_shap_tree_explainer_with_missing_values():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N_ROWS, 7))
    X[:, 5] = rng.integers(0, 4, N_ROWS)                  # a few distinct values
    X[rng.random(X.shape) < 0.15] = np.nan                 # missing values in every column, both ways at splits
    y = ((np.nan_to_num(X[:, 0]) + np.isnan(X[:, 1]) + np.nan_to_num(X[:, 2]) ** 2
          + rng.normal(size=N_ROWS)) > 1.2).astype(int)
    est = HistGradientBoostingClassifier(max_iter=80, max_leaf_nodes=31, random_state=0).fit(X, y)
    (member,) = members(est, np.zeros(X.shape[1]))
    trees = tree_shap([member], X.shape[1])
    ours, output = (values[:, 0] for values in trees(X))
    output = output + member.intercept
    reference = shap.TreeExplainer(est, feature_perturbation="tree_path_dependent")
    theirs = reference.shap_values(X)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(member.base, np.ravel(reference.expected_value)[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(member.base + ours.sum(axis=1), est.decision_function(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(output, est.decision_function(X), rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["hist_gradient_boosting", "random_forest"])
def test_trees_of_a_tabular_model_equal_shap_tree_explainer(table, rows, kind):
    est = ESTIMATORS[kind]().fit(table.X, table.y)
    (member,) = members(est, np.zeros(table.X.shape[1]))
    trees = tree_shap([member], table.X.shape[1])
    theirs = shap.TreeExplainer(est, feature_perturbation="tree_path_dependent").shap_values(rows[:2000])
    if theirs.ndim == 3:                                   # a forest: values per class; class 1, in probability
        theirs = theirs[:, :, 1]
    np.testing.assert_allclose(trees(read(rows[:2000], trees))[0][:, 0], theirs, rtol=0, atol=1e-6)


def test_columns_are_traced_back_through_the_preprocessing(table):
    names = list(table.preprocessor.get_feature_names_out())
    traced = feature_columns(table.preprocessor)
    features = sorted(table.schema.features, key=len, reverse=True)
    for name, column in zip(names, traced):
        bare = name.split("__", 1)[1].removeprefix("missingindicator_")
        assert column == next(f for f in features if bare == f or bare.startswith(f + "_")), name
    assert traced.count("seen_at") == 2                    # hour and day of week
    assert traced.count("load") == 2                       # the value and its missing indicator
    assert traced.count("region") >= 4                     # one-hot levels (+ the rare ones pooled)
    assert "reading_id" not in traced                      # an id column is no feature


def test_top_k_orders_by_absolute_contribution(table, rows):
    model = table.model(ESTIMATORS["linear_boosting_blend"]().fit(table.X, table.y))
    reasons = Explainer(model).explain(rows[:500])
    top = reasons.top(3)
    assert top.shape == (500, 3)
    size = np.abs(reasons.contributions)
    chosen = np.take_along_axis(size, top, axis=1)
    assert (np.diff(chosen, axis=1) <= 0).all()                             # largest first
    assert (chosen[:, -1] >= np.sort(size, axis=1)[:, -3]).all()           # no larger one left out
    assert reasons.top(100).shape == (500, len(table.schema.features))      # k beyond the columns: all of them
    assert OF == "raw score logit"


def test_estimators_not_explained_are_refused_by_name(table):
    from sklearn.naive_bayes import GaussianNB

    with pytest.raises(NotExplainable, match="GaussianNB"):
        Explainer(table.model(GaussianNB().fit(table.X, table.y)))


def test_a_few_rows_and_many_rows_take_different_tables_and_agree(table, rows):
    """Up to FEW_ROWS rows go through the padded tables, more through the tables per path length."""
    from tabpipe.scoring.explain.treeshap import FEW_ROWS

    est = ESTIMATORS["weighted_mean"]().fit(table.X, table.y)
    explainer = Explainer(table.model(est))
    trees = explainer.trees
    assert trees.table is not None and trees.groups and trees.few        # tabulated leaves and longer paths
    many = explainer.explain(rows[:200])
    few = np.vstack([explainer.explain(rows[i:min(i + FEW_ROWS, 200)]).contributions for i in range(0, 200, FEW_ROWS)])
    one = np.vstack([explainer.explain(rows[i:i + 1]).contributions for i in range(20)])
    np.testing.assert_allclose(few, many.contributions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one, many.contributions[:20], rtol=0, atol=1e-12)

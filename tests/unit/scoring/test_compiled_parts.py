"""The compiled scorer's parts (tabpipe.scoring.compiled): tree evaluation against a plain walk, the piecewise cubic
splines against SplineTransformer, and whole models the trainer's table may hold — trees of more than 64 leaves
beside small ones, many members, NaN features routed exactly like each estimator, NaN refused where the
estimator itself refuses it.
"""
from __future__ import annotations

import numpy as np
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier

from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
from tabpipe.scoring.compiled.linear import SplineCurves
from tabpipe.scoring.compiled.trees import TreeSums, Tree

from test_compiled import TOL, assert_scores_like_model, checked, column, hgb, lgbm, own_predict_proba_calls

# --------------------------------------------------------------------------- trees against a plain walk


def random_tree(rng: np.random.Generator, n_leaves: int, n_features: int, cuts: np.ndarray) -> Tree:
    """A random binary tree of ``n_leaves`` leaves (random shape: deep chains and bushy parts), thresholds from
    ``cuts`` (so rows hit them exactly), random NaN directions."""
    left, right = [-1], [-1]
    leaves = [0]
    while len(leaves) < n_leaves:
        node = leaves.pop(rng.integers(len(leaves)) if rng.random() < 0.5 else -1)
        left[node], right[node] = len(left), len(left) + 1
        left += [-1, -1]
        right += [-1, -1]
        leaves += [left[node], right[node]]
    n = len(left)
    return Tree(left=np.array(left, dtype=np.intp), right=np.array(right, dtype=np.intp),
                feature=rng.integers(0, n_features, n).astype(np.intp), threshold=rng.choice(cuts, n),
                missing_left=rng.random(n) < 0.5, value=rng.normal(size=n))


def walk(tree: Tree, x: np.ndarray) -> float:
    """The exit leaf's value by a plain walk: left when x <= threshold, or for a NaN when missing_left."""
    node = 0
    while tree.left[node] >= 0:
        v = x[tree.feature[node]]
        go_left = bool(tree.missing_left[node]) if np.isnan(v) else v <= tree.threshold[node]
        node = tree.left[node] if go_left else tree.right[node]
    return float(tree.value[node])


TREE_SIZES = {   # leaves per tree: bitmasks of 8, 16, 32 and 64 bits, a lock-step walk beyond 64 leaves
    "up-to-8-leaves": [1, 2, 5, 8, 3], "up-to-16": [9, 16, 12, 1], "up-to-32": [17, 32, 20], "up-to-64": [1, 2, 3, 64, 7, 1],
    "beyond-64": [65, 200, 2], "mixed": [5, 64, 65, 1, 130, 31] + [3] * 300,
}


@pytest.mark.parametrize("sizes", TREE_SIZES.values(), ids=TREE_SIZES.keys())
def test_every_tree_exits_where_a_plain_walk_does(sizes):
    """Trees up to 64 leaves (bitmasks) and beyond (lock-step walk), single leaves too: each tree's exit leaf,
    on rows holding NaN and values equal to thresholds, is the plain walk's."""
    rng = np.random.default_rng(len(sizes))
    cuts = np.array([-2.0, -0.5, 0.0, 0.5, 1.0, 2.5])
    trees = [random_tree(rng, n, 6, cuts) for n in sizes * 3]
    forest = TreeSums(trees, list(range(len(trees))), len(trees))     # one slot per tree: its own value
    rows = rng.choice(np.append(cuts, [np.nan, -9.0, 9.0, 0.25]), size=(200, 6))
    rows[:20] = rng.choice(cuts, size=(20, 6))                       # no NaN: the fast path
    assert np.isnan(rows).any(axis=1).sum() > 50
    for x in rows:
        got = forest(x, bool(np.isnan(x).any()))
        np.testing.assert_array_equal(got, [walk(t, x) for t in trees])


def test_the_lowest_bit_without_numpy_bitwise_count(monkeypatch):
    """numpy < 2.0 has no bitwise_count: the exit leaf is found through frexp, alike."""
    rng = np.random.default_rng(5)
    trees = [random_tree(rng, n, 3, np.linspace(-1, 1, 5)) for n in (1, 6, 13, 30, 64)]
    rows = rng.choice([-1.0, 0.0, 0.5, 1.0, np.nan, 3.0], size=(50, 3))
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    forest = TreeSums(trees, list(range(len(trees))), len(trees))
    for x in rows:
        np.testing.assert_array_equal(forest(x, True), [walk(t, x) for t in trees])


def test_trees_sharing_slots_add_up():
    rng = np.random.default_rng(3)
    trees = [random_tree(rng, n, 4, np.linspace(-1, 1, 5)) for n in (3, 70, 9, 1, 66)]
    forest = TreeSums(trees, [2, 0, 2, 1, 0], 4)
    x = np.array([0.5, np.nan, -1.0, 0.2])
    expected = np.zeros(4)
    for tree, slot in zip(trees, [2, 0, 2, 1, 0]):
        expected[slot] += walk(tree, x)
    np.testing.assert_allclose(forest(x, True), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- splines against SplineTransformer

@pytest.mark.parametrize("n_knots", [2, 4, 8])
def test_spline_curves_equal_the_spline_transformer_at_and_between_the_knots(table, n_knots):
    """At every knot, just below and above it, between knots, at and beyond the outer knots, on repeated knots."""
    spline = SplineLogisticRegression(n_knots=n_knots, C=5.0).fit(table.X, table.y)
    curves = SplineCurves([(1, spline)], 3)
    width = spline.n_features_in_
    weights = spline.linear_.coef_[0][width:].astype(np.float64)
    probes = []
    for j, bspline in zip(spline.spline_columns_, spline.splines_.bsplines_):
        t = np.unique(bspline.t)
        points = np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), (t[:-1] + t[1:]) / 2,
                                 [t[0] - 7.0, t[-1] + 11.0]])
        for p in points:
            x = table.X[0].astype(np.float64)
            x[j] = p
            probes.append(x)
    for x in probes:
        basis = spline.splines_.transform(x[None, spline.spline_columns_])[0]
        got = curves(x)
        assert got[0] == 0.0 and got[2] == 0.0
        assert got[1] == pytest.approx(float(basis @ weights), rel=0, abs=1e-12)


# --------------------------------------------------------------------------- whole models

def deep_hgb(t):
    return hgb(max_leaf_nodes=120, min_samples_leaf=1, max_iter=15, learning_rate=0.3).fit(t.X, t.y)


def many_members(t) -> WeightedMean:
    """Twelve members of every compiled kind, one LightGBM with its own sigmoid, one ensemble nested."""
    inner = WeightedMean.of_fitted([SplineLogisticRegression(n_knots=2).fit(t.X, t.y),
                                    lgbm(n_estimators=20, num_leaves=6, sigmoid=1.7).fit(t.X, t.y)], [1.0, 2.0])
    members = [hgb(max_iter=200, max_leaf_nodes=4).fit(t.X, t.y), hgb(max_leaf_nodes=31).fit(t.X, t.y), deep_hgb(t),
               SplineLogisticRegression(n_knots=4).fit(t.X, t.y), SplineLogisticRegression(n_knots=8, C=3.0).fit(t.X, t.y),
               SplineLogisticRegression(n_knots=0).fit(t.X, t.y),
               LinearBoostingBlend(linear_weight=0.6, max_iter=20, random_state=0).fit(t.X, t.y),
               lgbm(n_estimators=40, num_leaves=8).fit(t.X, t.y),
               RandomForestClassifier(n_estimators=6, random_state=0).fit(t.X, t.y),
               ExtraTreesClassifier(n_estimators=6, max_leaf_nodes=20, random_state=0).fit(t.X, t.y), inner,
               HistGradientBoostingClassifier(max_iter=1, random_state=0).fit(t.X, t.y)]
    return WeightedMean.of_fitted(members, [3, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 0.5])


WHOLE = {
    "hist-gradient-boosting-more-than-64-leaves": deep_hgb,
    "lightgbm-more-than-64-leaves": lambda t: lgbm(n_estimators=10, num_leaves=100, min_child_samples=1,
                                                   min_child_weight=0).fit(t.X, t.y),
    "lightgbm-sigmoid-parameter": lambda t: lgbm(n_estimators=30, num_leaves=8, sigmoid=0.6).fit(t.X, t.y),
    "ensemble-of-deep-and-shallow-trees": lambda t: WeightedMean.of_fitted(
        [deep_hgb(t), hgb(max_leaf_nodes=5).fit(t.X, t.y), SplineLogisticRegression(n_knots=6).fit(t.X, t.y)],
        [0.4, 0.4, 0.2]),
    "many-members": many_members,
}


@pytest.mark.parametrize("kind", WHOLE)
def test_a_compiled_model_of_many_or_large_trees_equals_the_model(table, kind):
    estimator = WHOLE[kind](table)
    if kind.endswith("more-than-64-leaves"):
        assert max(_leaf_counts(estimator)) > 64
    assert_scores_like_model(table.model(estimator), table.records, compiled=True)


def _leaf_counts(estimator) -> list[int]:
    if isinstance(estimator, LGBMClassifier):
        return [info["num_leaves"] for info in estimator.booster_.dump_model()["tree_info"]]
    return [int(p.nodes["is_leaf"].sum()) for (p,) in estimator._predictors]


# --------------------------------------------------------------------------- NaN features

def with_nan(t, columns: tuple[str, ...], share: float = 0.25) -> np.ndarray:
    X = t.X.copy()
    rng = np.random.default_rng(0)
    for name in columns:
        X[rng.random(len(X)) < share, column(t, f"num__{name}")] = np.nan
    return X


NAN_ROUTED = {
    "hist-gradient-boosting": lambda t, X: hgb().fit(X, t.y),
    "hist-gradient-boosting-deep": lambda t, X: hgb(max_leaf_nodes=100, min_samples_leaf=1, max_iter=10).fit(X, t.y),
    "lightgbm": lambda t, X: lgbm(n_estimators=50, num_leaves=8).fit(X, t.y),
    "lightgbm-deep": lambda t, X: lgbm(n_estimators=10, num_leaves=90, min_child_samples=1, min_child_weight=0).fit(X, t.y),
    "random-forest": lambda t, X: RandomForestClassifier(n_estimators=10, min_samples_leaf=3, random_state=0).fit(X, t.y),
    "extra-trees": lambda t, X: ExtraTreesClassifier(n_estimators=10, max_leaf_nodes=40, random_state=0).fit(X, t.y),
    "ensemble-of-trees": lambda t, X: WeightedMean.of_fitted(
        [hgb().fit(X, t.y), lgbm(n_estimators=30, num_leaves=8).fit(X, t.y),
         RandomForestClassifier(n_estimators=5, random_state=0).fit(X, t.y)], [0.5, 0.3, 0.2]),
}


@pytest.mark.parametrize("fitted_with_nan", [True, False], ids=["fitted-with-nan", "fitted-without-nan"])
@pytest.mark.parametrize("kind", NAN_ROUTED)
def test_a_nan_feature_is_routed_by_the_compiled_trees_like_the_estimator(table, kind, fitted_with_nan):
    """Feature rows holding NaN (past the checker: records themselves are imputed) in a column that held NaN when
    fitting (a learned direction; LightGBM: missing type NaN) and in one that did not (scikit-learn: the larger
    child; LightGBM: NaN read as 0.0): the compiled trees score them, without the estimator's predict_proba, equal."""
    X = with_nan(table, ("load", "bursts")) if fitted_with_nan else table.X
    estimator = NAN_ROUTED[kind](table, X)
    scorer = assert_scores_like_model(table.model(estimator), table.records, compiled=True)
    rows = checked(scorer, table.records[:60])
    for i, values in enumerate(rows):
        if i % 3 != 2:
            values[table.schema.features.index("load" if i % 3 == 0 else "users")] = float("nan")
    vectors = np.vstack([scorer.vector(values) for values in rows])
    assert np.isnan(vectors[:, column(table, "num__load")]).any() and np.isnan(vectors[:, column(table, "num__users")]).any()
    expected = estimator.predict_proba(vectors)[:, 1]
    with own_predict_proba_calls(estimator) as calls:
        got = scorer.proba(rows)
    assert calls == []
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    for end in (-1e30, 1e30):   # the routing matters: NaN is not one fixed end
        assert not np.allclose(estimator.predict_proba(np.nan_to_num(vectors, nan=end))[:, 1], expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("kind", ["logistic-regression-in-an-ensemble", "spline", "blend"])
def test_a_nan_feature_is_left_to_an_estimator_that_refuses_it(table, kind):
    """A member with a linear part refuses NaN in its own predict_proba: the compiled model does not guess, the
    estimator's own path runs and refuses alike."""
    estimator = {
        "logistic-regression-in-an-ensemble": lambda t: WeightedMean.of_fitted(
            [hgb().fit(t.X, t.y), SplineLogisticRegression(n_knots=0).fit(t.X, t.y)], [0.5, 0.5]),
        "spline": lambda t: SplineLogisticRegression(n_knots=4).fit(t.X, t.y),
        "blend": lambda t: LinearBoostingBlend(max_iter=20, random_state=0).fit(t.X, t.y),
    }[kind](table)
    scorer = assert_scores_like_model(table.model(estimator), table.records, compiled=True)
    rows = checked(scorer, table.records[:3])
    rows[1][table.schema.features.index("load")] = float("nan")
    with own_predict_proba_calls(estimator) as calls, pytest.raises(ValueError, match="NaN"):
        scorer.proba(rows)
    assert calls == [1]   # only the row the compiled model leaves to it


def test_a_row_beyond_float32_is_scored_as_the_end_of_the_range(table):
    """scikit-learn's trees read float32 and their own path refuses a feature beyond its range; the service must
    still score such a row (refuse only what cannot be read): the compiled forest routes it as the largest float32,
    right of every threshold, without calling the estimator's own path."""
    estimator = WeightedMean.of_fitted([RandomForestClassifier(n_estimators=5, random_state=0).fit(table.X, table.y),
                                        hgb().fit(table.X, table.y)], [0.5, 0.5])
    scorer = assert_scores_like_model(table.model(estimator), table.records, compiled=True)
    rows = checked(scorer, table.records[:3])
    users = table.schema.features.index("users")
    rows[2][users] = 10**45
    vectors = np.vstack([scorer.vector(v) for v in rows])
    assert abs(vectors[2, column(table, "num__users")]) > 1e39
    with pytest.raises(ValueError, match="float32"):
        estimator.predict_proba(vectors)
    with own_predict_proba_calls(estimator) as calls:
        got = scorer.proba(rows)
    assert calls == []
    clipped = vectors.copy()
    clipped[2, column(table, "num__users")] = np.finfo(np.float32).max
    np.testing.assert_allclose(got, estimator.predict_proba(clipped)[:, 1], rtol=0, atol=TOL)

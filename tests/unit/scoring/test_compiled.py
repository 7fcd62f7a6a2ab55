"""``RecordScorer`` (tabpipe.scoring.compiled) against the model it is compiled from, on a small generated table.

For every estimator kind the compiler handles, the scorer reports it compiled, never calls the estimator's
own ``predict_proba``, and gives ``TabularModel.predict_proba``'s probabilities to 1e-9 on every probe record
(nulls, unseen and rare levels, a sensitive category, values beyond the training range). For every other
estimator (or an ensemble holding one) it reports not compiled and scores through ``predict_proba``, equal
alike. The compiled features equal the fitted ColumnTransformer's output to 1e-9.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabpipe.model.calibration import Calibration
from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
from tabpipe.model.features import fit_transform
from tabpipe.schema import coerce_frame
from tabpipe.scoring.compiled import RecordScorer

TOL = 1e-9


# --------------------------------------------------------------------------- helpers

def checked(scorer: RecordScorer, records: list[dict]) -> list[list]:
    """The records' converted values; every probe record is scorable (no hard problem)."""
    rows = []
    for i, record in enumerate(records):
        values, problems = scorer.check(record, row=i)
        assert not [p for p in problems if p.hard], problems
        rows.append(values)
    return rows


@contextmanager
def own_predict_proba_calls(estimator) -> Iterator[list[int]]:
    """Counts the calls of ``estimator.predict_proba`` (rows per call) while the block runs."""
    calls: list[int] = []
    original = estimator.predict_proba

    def counted(X):
        calls.append(len(X))
        return original(X)

    estimator.predict_proba = counted
    try:
        yield calls
    finally:
        del estimator.predict_proba


def assert_scores_like_model(model, records: list[dict], *, compiled: bool, constant: bool = False) -> RecordScorer:
    """The scorer's probabilities equal ``model.predict_proba`` to 1e-9; ``compiled``: the scorer says the estimator
    is compiled and its own ``predict_proba`` never runs, else the scorer says so and it does. Unless the model is
    ``constant``, the probabilities differ between the records."""
    expected = model.predict_proba(records)
    scorer = RecordScorer(model)
    assert scorer.compiled_features
    assert scorer.compiled is compiled
    rows = checked(scorer, records)
    with own_predict_proba_calls(model.estimator) as calls:
        got = scorer.proba(rows)
    assert (calls == []) is compiled, calls
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    assert constant or np.ptp(got) > 0.05   # the probe rows are told apart: not a constant
    return scorer


def column(table, name: str) -> int:
    """Index of the fitted preprocessing's output column ``name`` (e.g. ``num__load``)."""
    return list(table.preprocessor.get_feature_names_out()).index(name)


def lgbm(**params) -> LGBMClassifier:
    return LGBMClassifier(n_jobs=1, verbosity=-1, random_state=0, **params)


def hgb(**params) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(**{"max_iter": 40, "random_state": 0, **params})


def logistic(table) -> LogisticRegression:
    return LogisticRegression(C=0.5, max_iter=2000).fit(table.X, table.y)


def blend(table) -> LinearBoostingBlend:
    return LinearBoostingBlend(linear_weight=0.3, max_iter=30, random_state=0).fit(table.X, table.y)


@functools.cache
def _members(table) -> tuple:
    return (blend(table), hgb().fit(table.X, table.y),
            SplineLogisticRegression(n_knots=4).fit(table.X, table.y), logistic(table))


def ensemble(table, last) -> WeightedMean:
    """The trainer's kind of ensemble: a blend, a boosting model, a spline and a plain logistic regression, ``last``."""
    return WeightedMean.of_fitted([*_members(table), last], [0.3, 0.2, 0.2, 0.1, 0.2])


# --------------------------------------------------------------------------- compiled features

def test_compiled_features_equal_the_fitted_column_transformer(table):
    """``vector`` of every probe record equals the fitted ColumnTransformer's row, and the probe reaches every
    branch: missing indicators, pooled rare and unseen levels, an ignored unseen level, the pseudonymised column."""
    model = table.model(logistic(table))
    scorer = RecordScorer(model)
    assert scorer.compiled_features
    expected = model.preprocessor.transform(model.check(table.records)[0])
    got = np.vstack([scorer.vector(values) for values in checked(scorer, table.records)])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    names = list(model.preprocessor.get_feature_names_out())
    for name in ("num__missingindicator_load", "num__missingindicator_bursts", "num__missingindicator_backup",
                 "cat__region___missing__", "cat__region_infrequent_sklearn", "pseud__customer_infrequent_sklearn"):
        assert (expected[:, names.index(name)] > 0).any(), name
    band = [i for i, n in enumerate(names) if n.startswith("cat__band_")]
    assert (expected[:, band].sum(axis=1) == 0).any()              # unseen band, no rare level: ignored
    assert not any("cust-" in n for n in names)                    # the sensitive levels are pseudonyms
    assert [n for n in names if n.startswith("dt__")] == ["dt__seen_at_hour", "dt__seen_at_dayofweek"]


def test_an_unknown_preprocessing_is_not_compiled_and_scores_through_the_model(table):
    """A fitted preprocessing the compiler does not know (standard scaling, a step name of its own): nothing is
    compiled, and the records go through the model's own path, equal."""
    typed = coerce_frame(pd.DataFrame.from_records(table.records), table.schema, with_target=False)[0]
    train = typed.iloc[:60]   # the probe's first 60 records are training rows of the table
    preprocessor = ColumnTransformer([
        ("standard", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["load", "bursts", "users"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"), OneHotEncoder(handle_unknown="ignore")),
         ["region", "band"]),
    ], sparse_threshold=0.0)
    (X,) = fit_transform(preprocessor, train)
    y = table.y[:60]
    model = table.model(LogisticRegression(max_iter=2000).fit(X, y))
    model.preprocessor = preprocessor
    expected = model.predict_proba(table.records)
    scorer = RecordScorer(model)
    assert not scorer.compiled_features and not scorer.compiled
    with own_predict_proba_calls(model.estimator) as calls:
        got = scorer.proba(checked(scorer, table.records))
    assert calls == [len(table.records)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- compiled estimators

COMPILED: dict[str, Callable] = {
    "logistic-regression": logistic,
    "random-forest": lambda t: RandomForestClassifier(n_estimators=30, min_samples_leaf=2, random_state=0).fit(t.X, t.y),
    "random-forest-full-depth-no-bootstrap": lambda t: RandomForestClassifier(
        n_estimators=8, bootstrap=False, max_features=None, random_state=0).fit(t.X, t.y),
    "extra-trees": lambda t: ExtraTreesClassifier(n_estimators=30, random_state=0).fit(t.X, t.y),
    "hist-gradient-boosting": lambda t: hgb().fit(t.X, t.y),
    "hist-gradient-boosting-stumps-early-stopping": lambda t: hgb(
        max_iter=200, max_depth=1, learning_rate=0.3, early_stopping=True, validation_fraction=0.2).fit(t.X, t.y),
    "lightgbm": lambda t: lgbm(n_estimators=50, num_leaves=8, min_child_samples=10).fit(t.X, t.y),
    "lightgbm-subsampled": lambda t: lgbm(
        num_leaves=4, n_estimators=100, learning_rate=0.05, colsample_bytree=0.5, subsample=0.8, subsample_freq=1,
        reg_lambda=3.0).fit(t.X, t.y),
    "lightgbm-deep": lambda t: lgbm(n_estimators=20, num_leaves=64, min_child_samples=2, min_child_weight=0).fit(t.X, t.y),
    "lightgbm-one-split-then-single-leaves": lambda t: lgbm(n_estimators=20, min_child_samples=180).fit(t.X, t.y),
    "lightgbm-no-split": lambda t: lgbm(n_estimators=5, min_child_samples=1000).fit(t.X, t.y),   # constant: the base rate
    "linear-boosting-blend": blend,
    "weighted-mean": lambda t: ensemble(t, RandomForestClassifier(n_estimators=10, random_state=0).fit(t.X, t.y)),
    "weighted-mean-with-lightgbm": lambda t: ensemble(t, lgbm(n_estimators=30, num_leaves=8).fit(t.X, t.y)),
    "weighted-mean-of-weighted-means": lambda t: WeightedMean.of_fitted(
        [ensemble(t, ExtraTreesClassifier(n_estimators=10, random_state=0).fit(t.X, t.y)), logistic(t)], [0.7, 0.3]),
}


@pytest.mark.parametrize("kind", COMPILED)
def test_a_compiled_estimator_equals_the_model(table, kind):
    assert_scores_like_model(table.model(COMPILED[kind](table)), table.records, compiled=True,
                             constant=kind == "lightgbm-no-split")


@pytest.mark.parametrize("kind", ["logistic-regression", "hist-gradient-boosting", "weighted-mean-with-lightgbm"])
def test_a_calibrated_model_compiled_equals_the_model_and_keeps_the_raw_score(table, kind):
    model = table.model(COMPILED[kind](table), Calibration(a=0.6, b=-0.8))
    scorer = assert_scores_like_model(model, table.records, compiled=True)
    rows = checked(scorer, table.records)
    typed, _ = model.check(table.records)
    raw = scorer.scores(rows)
    np.testing.assert_allclose(raw, model.score_typed(typed), rtol=0, atol=TOL)
    np.testing.assert_allclose(scorer.proba(rows), model.calibrate(raw), rtol=0, atol=TOL)
    assert np.abs(scorer.proba(rows) - raw).max() > 0.05     # the map is applied, not the identity


@pytest.mark.parametrize("n_knots", [2, 4, 8])
def test_the_compiled_spline_equals_the_model_beyond_the_knots_and_with_repeated_knots(table, n_knots):
    """SplineLogisticRegression: inside the knots, beyond both outer knots (linear
    continuation) and on the zero-inflated column whose quantile knots repeat."""
    spline = SplineLogisticRegression(n_knots=n_knots).fit(table.X, table.y)
    bursts = column(table, "num__bursts")
    assert bursts in spline.spline_columns_
    knots = [b.t[3:-3] for b in spline.splines_.bsplines_]     # the base knots (degree 3 pads 3 on each side)
    assert bool((np.diff(knots[list(spline.spline_columns_).index(bursts)]) == 0).any()) is (n_knots > 2)
    model = table.model(spline)
    X = model.preprocessor.transform(model.check(table.records)[0])[:, spline.spline_columns_]
    lo, hi = np.array([k[0] for k in knots]), np.array([k[-1] for k in knots])
    assert ((X < lo) & (lo < hi)).any() and ((X > hi) & (lo < hi)).any()   # rows beyond both ends
    assert_scores_like_model(model, table.records, compiled=True)


def test_the_compiled_spline_of_a_float32_fit_equals_the_model(table):
    """SplineLogisticRegression fitted on float32, as the trainer fits every estimator (``fit_transform``)."""
    assert table.X.dtype == np.float32
    assert_scores_like_model(table.model(SplineLogisticRegression(n_knots=4).fit(table.X, table.y)), table.records,
                             compiled=True)


@pytest.mark.parametrize("kind", ["hist-gradient-boosting", "lightgbm"])
def test_boosting_leaves_a_missing_value_to_the_estimators_own_routing(table, kind):
    """A boosting model fitted with missing values in its input learns where they go at each split; the compiled
    model equals it on records (imputed: no missing value reaches it) and a feature row holding NaN is scored by
    the estimator's own routing, not by a guess of the compiler's."""
    X = table.X.copy()
    rng = np.random.default_rng(0)
    for name in ("num__load", "num__bursts"):
        X[rng.random(len(X)) < 0.25, column(table, name)] = np.nan
    estimator = (hgb() if kind == "hist-gradient-boosting" else lgbm(n_estimators=50, num_leaves=8)).fit(X, table.y)
    model = table.model(estimator)
    scorer = assert_scores_like_model(model, table.records, compiled=True)
    rows = checked(scorer, table.records[:40])
    for values in rows[::2]:
        values[table.schema.features.index("load")] = float("nan")   # past the checker: NaN, not a missing value
    vectors = np.vstack([scorer.vector(values) for values in rows])
    assert np.isnan(vectors).any()
    expected = estimator.predict_proba(vectors)[:, 1]
    np.testing.assert_allclose(scorer.proba(rows), expected, rtol=0, atol=TOL)
    # the routing matters: NaN is neither "always below" nor "always above" every threshold
    for end in (-1e30, 1e30):
        assert not np.allclose(estimator.predict_proba(np.nan_to_num(vectors, nan=end))[:, 1], expected, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- estimators left to their own predict_proba

def _categorical(t, fit: Callable):
    return fit([column(t, "cat__region_west"), column(t, "cat__region_north"), column(t, "num__backup")])


NOT_COMPILED: dict[str, Callable] = {
    "gaussian-naive-bayes": lambda t: GaussianNB().fit(t.X, t.y),
    "k-neighbors": lambda t: KNeighborsClassifier(n_neighbors=15).fit(t.X, t.y),
    "hist-gradient-boosting-categorical": lambda t: _categorical(t, lambda cols: hgb(categorical_features=cols).fit(t.X, t.y)),
    "lightgbm-categorical": lambda t: _categorical(
        t, lambda cols: lgbm(n_estimators=30, num_leaves=8, min_child_samples=10).fit(t.X, t.y, categorical_feature=cols)),
    "lightgbm-linear-leaves": lambda t: lgbm(n_estimators=20, linear_tree=True).fit(t.X, t.y),
    "lightgbm-random-forest-mode": lambda t: lgbm(n_estimators=20, boosting_type="rf", subsample=0.8,
                                                  subsample_freq=1).fit(t.X, t.y),
    "lightgbm-zero-as-missing": lambda t: lgbm(n_estimators=30, num_leaves=8, zero_as_missing=True).fit(t.X, t.y),
    "weighted-mean-with-gaussian-naive-bayes": lambda t: ensemble(t, GaussianNB().fit(t.X, t.y)),
    "weighted-mean-with-k-neighbors": lambda t: ensemble(t, KNeighborsClassifier(n_neighbors=15).fit(t.X, t.y)),
}


@pytest.mark.parametrize("kind", NOT_COMPILED)
def test_an_estimator_the_compiler_does_not_handle_scores_through_its_own_predict_proba(table, kind):
    assert_scores_like_model(table.model(NOT_COMPILED[kind](table)), table.records, compiled=False)

"""``MatrixScorer`` (tabpipe.scoring.matrix) against the estimators' own ``predict_proba`` on the generated table.

Every estimator kind, alone and in the ensembles ``tabpipe init``'s candidates make, gives the same
probabilities to 1e-12 on the preprocessed probe rows, in one block and in blocks of a few rows; the
histogram gradient boosting model takes the binned path (never its own ``predict_proba``), also on raw
rows holding NaN and +-inf; models it does not know go through their own ``predict_proba``; a row a
linear member refuses (inf) raises the estimator's own error. ``batch.probabilities`` equals
``TabularModel.predict_proba_typed`` on the valid rows and leaves the refused ones NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from tabpipe.model.calibration import Calibration
from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
from tabpipe.schema import coerce_frame
from tabpipe.scoring.batch import probabilities, score_frame, scores
from tabpipe.scoring.matrix import MatrixScorer

TOL = 1e-12


def hgb(t, **kw):
    return HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, early_stopping=False, random_state=0,
                                          **kw).fit(t.X, t.y)


ESTIMATORS = {
    "logistic": lambda t: LogisticRegression(max_iter=2000).fit(t.X, t.y),
    "spline": lambda t: SplineLogisticRegression(n_knots=6).fit(t.X, t.y),
    "plain-spline": lambda t: SplineLogisticRegression(n_knots=0).fit(t.X, t.y),
    "hgb": hgb,
    "hgb-few-bins": lambda t: hgb(t, max_bins=7),
    "blend": lambda t: LinearBoostingBlend(max_iter=40, random_state=0).fit(t.X, t.y),
    "forest": lambda t: RandomForestClassifier(n_estimators=10, random_state=0).fit(t.X, t.y),
    "default-ensemble": lambda t: WeightedMean.of_fitted(
        [LinearBoostingBlend(max_iter=40, random_state=0).fit(t.X, t.y), SplineLogisticRegression().fit(t.X, t.y)],
        [0.5, 0.5]),
    "nested": lambda t: WeightedMean.of_fitted(
        [WeightedMean.of_fitted([hgb(t), LogisticRegression(max_iter=2000).fit(t.X, t.y)], [2, 1]),
         RandomForestClassifier(n_estimators=5, random_state=0).fit(t.X, t.y)], [0.7, 0.3]),
}


def rows(table) -> np.ndarray:
    """The probe records preprocessed as the batch path preprocesses them (float64)."""
    typed, problems = coerce_frame(pd.DataFrame.from_records(table.records), table.schema, with_target=False)
    assert not [p for p in problems if p.hard]
    return table.preprocessor.transform(typed)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("block_rows", [1_000_000, 7])
def test_equals_own_predict_proba(table, name, block_rows):
    est = ESTIMATORS[name](table)
    X = rows(table)
    got = MatrixScorer(est, block_rows=block_rows)(X)
    assert got.shape == (len(X),) and got.dtype == np.float64
    np.testing.assert_allclose(got, est.predict_proba(X)[:, 1], rtol=0, atol=TOL)


def test_boosting_takes_the_binned_path_also_for_nan_and_inf(table, monkeypatch):
    est = hgb(table)
    X = rows(table)
    X[::5, 0], X[1::7, 1], X[2::9, 2] = np.nan, np.inf, -np.inf
    expected = est.predict_proba(X)[:, 1]
    monkeypatch.setattr(est, "predict_proba", lambda X: pytest.fail("the binned path was not taken"))
    np.testing.assert_allclose(MatrixScorer(est)(X), expected, rtol=0, atol=TOL)


def test_unknown_boosting_internals_fall_back_to_own_predict_proba(table):
    est = hgb(table)
    X = rows(table)
    expected = est.predict_proba(X)[:, 1]
    del est._bin_mapper.missing_values_bin_idx_   # another scikit-learn's internals
    calls = []
    original = est.predict_proba
    est.predict_proba = lambda X: calls.append(len(X)) or original(X)
    np.testing.assert_allclose(MatrixScorer(est)(X), expected, rtol=0, atol=TOL)
    assert calls == [len(X)]


def test_a_row_a_linear_member_refuses_raises_its_error(table):
    est = ESTIMATORS["default-ensemble"](table)
    X = rows(table)
    X[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.predict_proba(X)
    with pytest.raises(ValueError, match="infinity"):
        MatrixScorer(est)(X)


def test_batch_probabilities_equal_the_model_and_skip_refused_rows(table):
    model = table.model(ESTIMATORS["default-ensemble"](table))
    frame = pd.DataFrame.from_records(table.records)
    frame.loc[[4, 9], "load"] = "not a number"          # refused (hard type rule)
    typed, problems = model.check(frame)
    proba = probabilities(model, typed, problems, block_rows=16)
    assert np.isnan(proba[[4, 9]]).all() and not np.isnan(np.delete(proba, [4, 9])).any()
    valid = ~np.isnan(proba)
    np.testing.assert_allclose(proba[valid], model.predict_proba_typed(typed[valid]), rtol=0, atol=TOL)


def test_a_calibrated_model_batch_probabilities_and_scores_equal_the_model(table):
    model = table.model(ESTIMATORS["default-ensemble"](table), Calibration(a=1.7, b=0.3))
    frame = pd.DataFrame.from_records(table.records)
    frame.loc[[3], "load"] = "not a number"             # refused (hard type rule)
    typed, problems = model.check(frame)
    valid = np.ones(len(frame), dtype=bool)
    valid[3] = False
    proba, raw = probabilities(model, typed, problems, block_rows=16), scores(model, typed, problems, block_rows=16)
    assert np.isnan(proba[3]) and np.isnan(raw[3])
    np.testing.assert_allclose(proba[valid], model.predict_proba_typed(typed[valid]), rtol=0, atol=TOL)
    np.testing.assert_allclose(raw[valid], model.score_typed(typed[valid]), rtol=0, atol=TOL)
    assert np.abs(proba[valid] - raw[valid]).max() > 0.05     # the map is applied, not the identity
    out, _ = score_frame(model, frame)
    np.testing.assert_array_equal(out["probability"].to_numpy(), proba)
    np.testing.assert_array_equal(out["score"].to_numpy(), raw)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_stages_prepare_column_by_column_and_give_the_scorers_probabilities(table, name):
    """positive(prepare(X)) is the scorer's answer, and shuffling a column's rows in every prepared array is
    shuffling them in X (what permutation importance relies on to bin the rows once)."""
    est = ESTIMATORS[name](table)
    X = rows(table)
    scorer = MatrixScorer(est)
    stages = scorer.stages()
    prepared = stages.prepare(X)
    assert len(prepared) == stages.arrays and all(a.shape == X.shape for a in prepared)
    np.testing.assert_array_equal(stages.positive(prepared), scorer(X))
    order = np.random.default_rng(0).permutation(len(X))
    for column in (0, X.shape[1] - 1):
        shuffled_rows = X.copy()
        shuffled_rows[:, column] = X[order, column]
        shuffled_prepared = [a.copy() for a in prepared]
        for a, original in zip(shuffled_prepared, prepared):
            a[:, column] = original[order, column]
        np.testing.assert_array_equal(stages.positive(shuffled_prepared), scorer(shuffled_rows))

"""Drift of the model's reasons (``tabpipe.monitoring.contributions``): a column whose values move to where
the model is steep gains mean |contribution|, untouched columns keep theirs, and the answer says why when
there is none."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from tabpipe.model import TabularModel
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.monitoring.contributions import contribution_drift, mean_abs_contributions
from tabpipe.schema import Schema, coerce_frame

SCHEMA = {"target": {"name": "bad", "positive": 1},
          "columns": {"signal": {"type": "float"}, "noise": {"type": "float"}, "kind": {"type": "category"}}}


def _frame(n: int, seed: int, spread: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n) * spread
    kind = rng.choice(["a", "b", "c"], n)
    y = (2.0 * signal + 0.8 * (kind == "c") + rng.normal(size=n) > 0.5).astype(int)
    return pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "kind": kind}), y


def _model(estimator) -> TabularModel:
    schema = Schema.model_validate(SCHEMA)
    train, y = _frame(3000, 0)
    preprocessor = build_preprocessor(schema)
    (X,) = fit_transform(preprocessor, coerce_frame(train, schema, with_target=False)[0])
    return TabularModel(schema=schema, preprocessor=preprocessor, estimator=estimator.fit(X, y), threshold=0.5,
                        labels=(0, 1), feature_means=X.mean(axis=0))


def test_a_column_spread_wider_gains_mean_contribution_and_ranks_first():
    model = _model(LogisticRegression())
    reference, _ = _frame(4000, 1)
    window, _ = _frame(3000, 2, spread=3.0)
    result = contribution_drift(model, reference, window, sample_rows=2000, min_rows=100, seed=0)
    assert result["status"] == "ok" and result["rows"] == {"reference": 2000, "window": 2000}
    by_column = {c["column"]: c for c in result["columns"]}
    assert result["columns"][0]["column"] == "signal"
    assert 2.5 < by_column["signal"]["ratio"] < 3.5                 # linear term: |coef| * |x - mean| triples
    assert 0.8 < by_column["noise"]["ratio"] < 1.25 and 0.8 < by_column["kind"]["ratio"] < 1.25


def test_the_mean_is_of_the_explained_contributions():
    model = _model(LogisticRegression())
    rows, _ = _frame(500, 3)
    means, n = mean_abs_contributions(model, rows)
    from tabpipe.scoring.explain import explainer_for

    typed = coerce_frame(rows, model.schema, with_target=False)[0]
    expected = np.abs(explainer_for(model).explain(model.preprocessor.transform(typed)).contributions).mean(axis=0)
    assert n == 500 and means == pytest.approx(expected, abs=1e-12)


def test_no_signal_without_enough_rows_or_for_a_model_not_explained():
    reference, _ = _frame(1000, 1)
    window, _ = _frame(50, 2)
    small = contribution_drift(_model(LogisticRegression()), reference, window, sample_rows=2000, min_rows=100, seed=0)
    assert small["status"] == "insufficient_data" and small["rows"]["window"] == 50
    knn = contribution_drift(_model(KNeighborsClassifier()), reference, reference, sample_rows=500, min_rows=100, seed=0)
    assert knn["status"] == "not_explainable" and knn["message"]


def test_no_signal_when_a_sample_lacks_a_feature_column():
    """Sensitive columns are kept in neither the reference nor the window sample: said, not crashed on."""
    reference, _ = _frame(1000, 1)
    window, _ = _frame(500, 2)
    result = contribution_drift(_model(LogisticRegression()), reference.drop(columns=["kind"]), window,
                                sample_rows=500, min_rows=100, seed=0)
    assert result["status"] == "columns_missing" and "kind" in result["message"]

"""Permutation importance on the test rows (tabpipe.training.importance): the column the label depends on
ranks first with an interval above zero, a column of noise gets an interval around zero."""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd
from sklearn.linear_model import LogisticRegression

from tabpipe.model import TabularModel
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.schema import Schema, coerce_frame
from tabpipe.training.importance import BOOTSTRAP, permutation_importance

SCHEMA = {"target": {"name": "bad", "positive": 1},
          "columns": {"signal": {"type": "float"}, "noise": {"type": "float"},
                      "kind": {"type": "category"}}}


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    kind = rng.choice(["a", "b", "c"], n)
    y = (2.0 * signal + 0.8 * (kind == "c") + rng.normal(size=n) > 0.5).astype(int)
    return pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "kind": kind}), y


def _model(threshold: float = 0.5, calibration=None) -> TabularModel:
    """A logistic regression on 3,000 rows of ``_frame``."""
    schema = Schema.model_validate(SCHEMA)
    train, y_train = _frame(3000, 0)
    preprocessor = build_preprocessor(schema)
    (X,) = fit_transform(preprocessor, coerce_frame(train, schema, with_target=False)[0])
    return TabularModel(schema=schema, preprocessor=preprocessor, estimator=LogisticRegression().fit(X, y_train),
                        threshold=threshold, labels=(0, 1), calibration=calibration)


def test_the_informative_column_ranks_first_with_an_interval_above_zero():
    model = _model()
    schema = model.schema
    test, y_test = _frame(1500, 1)
    result = permutation_importance(model, coerce_frame(test, schema, with_target=False)[0], y_test, "roc_auc")
    by_column = {r["column"]: r for r in result["columns"]}
    assert [r["column"] for r in result["columns"]][0] == "signal"
    assert result["rows"] == 1500 and result["bootstrap"] == BOOTSTRAP and 0.5 < result["baseline"] <= 1
    signal, noise, kind = by_column["signal"], by_column["noise"], by_column["kind"]
    assert signal["low"] > 0.1 and signal["low"] <= signal["importance"] <= signal["high"]
    assert kind["low"] > 0                                        # the one-hot block shuffled as one column
    assert noise["low"] <= 0.0 <= noise["high"] + 1e-9 and abs(noise["importance"]) < 0.01
    # same seed, same answer
    assert permutation_importance(model, coerce_frame(test, schema, with_target=False)[0], y_test, "roc_auc") == result


def test_f1_is_taken_on_the_served_probability_at_the_models_threshold():
    """A calibrated model: f1 compares the calibrated probability (what is served) with the threshold, not the
    raw score; the baseline equals scikit-learn's f1 of the model's own decisions on the same rows."""
    from sklearn.metrics import f1_score

    from tabpipe.model.calibration import Calibration

    model = _model(threshold=0.2, calibration=Calibration(a=1.0, b=-2.0))
    test, y_test = _frame(1500, 1)
    typed_test = coerce_frame(test, model.schema, with_target=False)[0]
    served = model.predict_proba_typed(typed_test)
    assert (served >= 0.2).mean() != (model.score_typed(typed_test) >= 0.2).mean()   # the map moves decisions
    result = permutation_importance(model, typed_test, y_test, "f1")
    assert result["baseline"] == pytest.approx(f1_score(y_test, served >= 0.2), abs=1e-6)


def test_a_wide_table_is_bounded_rows_first_then_shuffles_for_the_least_important(monkeypatch):
    """rows x shuffles stays within MAX_ROW_SCORINGS: rows shrink to MIN_ROWS, every column gets one shuffle, and
    the columns that dropped the metric most get the other shuffles while the bound allows."""
    from tabpipe.training import importance

    wide = {"target": {"name": "bad", "positive": 1},
            "columns": {"signal": {"type": "float"}, **{f"noise{i}": {"type": "float"} for i in range(20)}}}
    schema = Schema.model_validate(wide)
    rng = np.random.default_rng(0)

    def frame(n):
        signal = rng.normal(size=n)
        cols = {"signal": signal, **{f"noise{i}": rng.normal(size=n) for i in range(20)}}
        return pd.DataFrame(cols), (signal + 0.5 * rng.normal(size=n) > 0).astype(int)
    train, y_train = frame(2000)
    preprocessor = build_preprocessor(schema)
    (X,) = fit_transform(preprocessor, coerce_frame(train, schema, with_target=False)[0])
    model = TabularModel(schema=schema, preprocessor=preprocessor, estimator=LogisticRegression().fit(X, y_train),
                         threshold=0.5, labels=(0, 1))
    test, y_test = frame(1500)
    typed = coerce_frame(test, schema, with_target=False)[0]
    monkeypatch.setattr(importance, "MIN_ROWS", 500)
    monkeypatch.setattr(importance, "MAX_ROW_SCORINGS", 500 * (21 + 10))   # one shuffle each, then 10 more
    result = permutation_importance(model, typed, y_test, "roc_auc")
    repeats = {r["column"]: r["repeats"] for r in result["columns"]}
    assert result["rows"] == 500
    assert sum(repeats.values()) * result["rows"] <= importance.MAX_ROW_SCORINGS
    assert sorted(repeats.values()) == [1] * 16 + [3] * 5
    assert result["columns"][0]["column"] == "signal" and repeats["signal"] == 3
    assert result["columns"][0]["low"] > 0.1
    monkeypatch.setattr(importance, "MAX_ROW_SCORINGS", 2_000_000)          # the default: no bound at this width
    unbounded = permutation_importance(model, typed, y_test, "roc_auc")
    assert unbounded["rows"] == 1500 and {r["repeats"] for r in unbounded["columns"]} == {importance.REPEATS}

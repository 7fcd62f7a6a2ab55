"""The calibration map inside the shipped model (tabpipe.model.calibration, TabularModel.calibrate):
Platt scaling affine in the raw logit, fitted only when it can calibrate, applied by ``predict_proba``
while ``score_typed`` keeps the raw score; a model saved before calibration existed loads and scores as before."""
from __future__ import annotations

import dill
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from tabpipe.model import TabularModel
from tabpipe.model.calibration import Calibration, fit_platt, logit
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.schema import Schema, coerce_frame

SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "x": {"type": "float"}, "kind": {"type": "category"}}})


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    kind = rng.choice(["a", "b", "c"], n)
    y = (rng.random(n) < expit(1.5 * x + (kind == "a"))).astype(int)
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


def model(calibration: Calibration | None) -> tuple[TabularModel, pd.DataFrame]:
    df = frame()
    typed, _ = coerce_frame(df, SCHEMA, with_target=False)
    preprocessor = build_preprocessor(SCHEMA)
    (X,) = fit_transform(preprocessor, typed)
    estimator = LogisticRegression().fit(X, df["y"].to_numpy())
    return TabularModel(schema=SCHEMA, preprocessor=preprocessor, estimator=estimator, threshold=0.4,
                        labels=(0, 1), calibration=calibration), df.drop(columns=["y"])


def test_platt_is_affine_in_the_raw_logit_and_monotone():
    c = Calibration(a=0.5, b=-1.0)
    s = np.array([1e-20, 0.1, 0.3, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(logit(c(s)), 0.5 * logit(s) - 1.0, rtol=0, atol=1e-9)
    assert np.all(np.diff(c(s)) > 0)
    assert np.isnan(c(np.array([np.nan]))[0])
    assert c.record() == {"method": "platt", "a": 0.5, "b": -1.0, "rows": 0}


def test_fit_platt_recovers_the_map_and_refuses_what_it_cannot_calibrate():
    rng = np.random.default_rng(1)
    z = rng.normal(size=20_000)
    y = (rng.random(len(z)) < expit(z)).astype(int)
    fitted = fit_platt(expit(3 * z - 2), y)     # raw logit = 3 z - 2, so the map is z = (logit + 2) / 3
    assert fitted.a == pytest.approx(1 / 3, rel=0.05) and fitted.b == pytest.approx(2 / 3, rel=0.08)
    assert fitted.rows == len(y)
    assert fit_platt(expit(z), np.zeros(len(z), dtype=int)) is None          # one class
    assert fit_platt(expit(-z), y) is None                                    # a score falling with the label


def test_predict_proba_is_the_calibrated_score_and_the_raw_score_stays():
    calibration = Calibration(a=0.7, b=0.4)
    calibrated, rows = model(calibration)
    raw, _ = model(None)
    typed, _ = calibrated.check(rows)
    score = calibrated.score_typed(typed)
    np.testing.assert_array_equal(score, raw.predict_proba(rows))
    np.testing.assert_array_equal(calibrated.predict_proba(rows), calibration(score))
    assert np.abs(calibrated.predict_proba(rows) - score).max() > 0.02
    # the threshold applies to the calibrated probability
    np.testing.assert_array_equal(calibrated.predict(rows), (calibration(score) >= 0.4).astype(int))


def test_a_model_saved_before_calibration_existed_loads_and_scores_as_before():
    old, rows = model(None)
    expected = old.estimator.predict_proba(old.preprocessor.transform(old.check(rows)[0]))[:, 1]
    del old.__dict__["calibration"]                  # what a model pickled by an earlier tabpipe holds
    data = dill.dumps(old)
    assert b"calibration" not in data
    loaded = dill.loads(data)
    assert "calibration" not in loaded.__dict__ and loaded.calibration is None
    np.testing.assert_array_equal(loaded.predict_proba(rows), expected)
    typed, _ = loaded.check(rows)
    np.testing.assert_array_equal(loaded.score_typed(typed), expected)

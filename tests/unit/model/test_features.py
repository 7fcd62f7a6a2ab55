"""Schema-built preprocessing (impute + robust scale, impute + one-hot, datetime parts) and resampling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tabpipe  # noqa: F401
from imblearn.combine import SMOTETomek  # noqa: E402
from imblearn.over_sampling import SMOTE  # noqa: E402
from tabpipe.model import features as preprocessing
from tabpipe.model.features import MISSING, build_preprocessor, datetime_parts, fit_transform
from tabpipe.training.resampling import make_sampler, resample
from tabpipe.schema import Schema, coerce_frame

SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "a": {"type": "float"},
    "n": {"type": "int"},
    "c": {"type": "category"},
    "d": {"type": "datetime"},
    "b": {"type": "bool"},
    "key": {"type": "string", "role": "id"},
    "skip": {"type": "float", "role": "ignore"},
}})


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    raw = pd.DataFrame({
        "a": np.where(rng.random(n) < 0.2, np.nan, rng.normal(10, 3, n)),
        "n": rng.integers(0, 5, n),
        "c": rng.choice(["x", "y", "z", None], n, p=[0.4, 0.3, 0.2, 0.1]),
        "d": pd.date_range("2024-01-01", periods=n, freq="7h"),
        "b": rng.random(n) < 0.5,
        "key": [f"k{i}" for i in range(n)],
        "skip": rng.normal(size=n),
        "y": rng.integers(0, 2, n),
    })
    typed, problems = coerce_frame(raw, SCHEMA, with_target=True)
    assert problems == []
    return typed


def col(pre, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, list(pre.get_feature_names_out()).index(name)]


def test_output_columns_and_roles():
    train = frame()
    pre = build_preprocessor(SCHEMA)
    (X,) = fit_transform(pre, train)
    names = list(pre.get_feature_names_out())
    assert X.dtype == np.float32 and X.shape == (len(train), len(names))   # what estimators are fitted on
    assert names[:4] == ["num__a", "num__n", "num__b", "num__missingindicator_a"]
    assert {"cat__c_x", "cat__c_y", "cat__c_z", f"cat__c_{MISSING}"} <= set(names)
    assert names[-2:] == ["dt__d_hour", "dt__d_dayofweek"]
    assert not any("key" in n or "skip" in n or n.endswith("__y") for n in names)  # id/ignore/target unused
    assert np.isfinite(X).all()


def test_numeric_median_imputation_and_robust_scaling():
    train = frame()
    pre = build_preprocessor(SCHEMA)
    (X,) = fit_transform(pre, train)
    a = train["a"]
    # the scaler sees the median-imputed column and scales by its 5-95 % range
    imputed = a.fillna(a.median())
    med, spread = imputed.median(), imputed.quantile(0.95) - imputed.quantile(0.05)
    np.testing.assert_allclose(col(pre, X, "num__a"), (imputed - med) / spread)
    missing = a.isna().to_numpy()
    assert missing.any()
    np.testing.assert_allclose(col(pre, X, "num__a")[missing], 0.0)       # median -> 0 after centring
    indicator = col(pre, X, "num__missingindicator_a")
    assert len(np.unique(indicator)) == 2 and (indicator[missing] == indicator[missing][0]).all()
    assert (indicator[missing] != indicator[~missing][0]).all()


def test_zero_inflated_column_is_still_scaled():
    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {"z": {"type": "float"}}})
    z = pd.DataFrame({"z": [0.0] * 85 + [100.0] * 15})            # interquartile range 0
    pre = build_preprocessor(schema)
    (X,) = fit_transform(pre, z)
    np.testing.assert_allclose(col(pre, X, "num__z"), z["z"] / 100.0)  # 5-95 % range = 100


def test_one_hot_missing_level_and_unknown_categories_ignored():
    train = frame()
    pre = build_preprocessor(SCHEMA)
    fit_transform(pre, train)
    new = pd.DataFrame({"a": [1.0, 2.0], "n": [1.0, 2.0], "c": ["never-seen", np.nan],
                        "d": pd.to_datetime(["2024-05-05 13:00", "2024-05-06 00:00"]), "b": [1.0, 0.0]})
    X = pre.transform(new)
    cat_cols = [i for i, n in enumerate(pre.get_feature_names_out()) if n.startswith("cat__")]
    assert X[0, cat_cols].sum() == 0                        # unknown category: no column set, no error
    assert col(pre, X, f"cat__c_{MISSING}")[1] == 1.0       # missing -> its own level
    assert X[1, cat_cols].sum() == 1


def test_rare_categories_pooled_and_max_categories():
    rng = np.random.default_rng(1)
    n = 200
    common = rng.choice([f"v{i}" for i in range(8)], n)
    common[:3] = "rare"                                      # only 3 occurrences (< min_frequency 5)
    schema = Schema.model_validate({"target": {"name": "y", "positive": 1},
                                    "columns": {"c": {"type": "category"}}})
    df = pd.DataFrame({"c": common})
    pre = build_preprocessor(schema, max_categories=30)
    (X,) = fit_transform(pre, df)
    names = list(pre.get_feature_names_out())
    assert "cat__c_rare" not in names and "cat__c_infrequent_sklearn" in names
    assert col(pre, X, "cat__c_infrequent_sklearn")[:3].tolist() == [1.0, 1.0, 1.0]
    X_unknown = pre.transform(pd.DataFrame({"c": ["brand-new"]}))
    assert col(pre, X_unknown, "cat__c_infrequent_sklearn")[0] == 1.0   # unknowns pooled with the rare ones
    small = build_preprocessor(schema, max_categories=3)
    (Xs,) = fit_transform(small, df)
    assert Xs.shape[1] == 3


def test_datetime_parts():
    X = pd.DataFrame({"d": pd.to_datetime(["2024-03-04 13:45", None, "2024-03-10 00:05"])})  # Mon, NaT, Sun
    parts = datetime_parts(X)
    assert parts.shape == (3, 2)
    assert parts[0].tolist() == [13.0, 0.0] and parts[2].tolist() == [0.0, 6.0]
    assert np.isnan(parts[1]).all()
    assert datetime_parts(pd.DataFrame(index=range(4))).shape == (4, 0)


def test_fit_transform_fits_on_the_first_frame_only():
    train, test = frame(60, seed=0), frame(40, seed=1)
    test["a"] = test["a"] + 1000.0                                 # very different test distribution
    pre = build_preprocessor(SCHEMA)
    X_train, X_test = fit_transform(pre, train, test)
    scaler = pre.named_transformers_["num"][-1]
    imputer = pre.named_transformers_["num"][0]
    assert imputer.statistics_[0] == pytest.approx(train["a"].median())
    assert scaler.center_[0] == pytest.approx(train["a"].fillna(train["a"].median()).median())
    assert X_test.shape == (40, X_train.shape[1])
    assert col(pre, X_test, "num__a")[~test["a"].isna().to_numpy()].min() > 50  # scaled with train statistics
    refit = build_preprocessor(SCHEMA)
    (X_alone,) = fit_transform(refit, train)
    np.testing.assert_array_equal(X_alone, X_train)


def test_float32_matrices_are_the_preprocessors_output_block_by_block(monkeypatch):
    """Training matrices are float32 copies of what the fitted preprocessor (float64, as served) returns,
    also when the rows are transformed a few at a time."""
    train, test = frame(60, seed=0), frame(41, seed=1)
    pre = build_preprocessor(SCHEMA)
    monkeypatch.setattr(preprocessing, "TRANSFORM_CELLS", 5 * len(build_preprocessor(SCHEMA).fit(train)
                                                                   .get_feature_names_out()))   # 5 rows a block
    X_train, X_test = fit_transform(pre, train, test)
    served = pre.transform(test)
    assert served.dtype == np.float64 and X_test.dtype == X_train.dtype == np.float32
    np.testing.assert_array_equal(X_test, served.astype(np.float32))
    np.testing.assert_array_equal(X_train, pre.transform(train).astype(np.float32))
    assert preprocessing.transform32(pre, test.iloc[:0]).shape == (0, X_train.shape[1])
    plain = build_preprocessor(SCHEMA).fit(train)       # fitted the ordinary way (dense output throughout)
    assert pre.sparse_output_ is plain.sparse_output_ is False and pre.get_params()["sparse_threshold"] == 0.0
    for df in (train, test):
        np.testing.assert_array_equal(pre.transform(df), plain.transform(df))
    np.testing.assert_array_equal(pre.get_feature_names_out(), plain.get_feature_names_out())


# --------------------------------------------------------------------------- resampling

def imbalanced(n: int = 200, positives: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, positives, replace=False)] = 1
    X[y == 1] += 2.0
    return X, y


def test_make_sampler_kinds():
    _, y = imbalanced()
    assert make_sampler("none", 0, y) is None
    smote = make_sampler("smote", 0, y)
    assert isinstance(smote, SMOTE) and smote.k_neighbors == 5 and smote.random_state == 0
    combo = make_sampler("smotetomek", 7, y)
    assert isinstance(combo, SMOTETomek) and combo.random_state == 7 and combo.smote.k_neighbors == 5


def test_make_sampler_small_minority():
    y = np.array([0] * 30 + [1] * 3)
    assert make_sampler("smote", 0, y).k_neighbors == 2
    assert make_sampler("smote", 0, np.array([0] * 30 + [1])) is None


def test_resample_none_returns_input_unchanged():
    X, y = imbalanced()
    X2, y2 = resample(X, y, "none", 0)
    assert X2 is X and y2 is y


@pytest.mark.parametrize("kind", ["smote", "smotetomek"])
def test_resample_balances_keeps_originals_and_is_seeded(kind):
    X, y = imbalanced()
    X2, y2 = resample(X, y, kind, 0)
    counts = np.bincount(y2)
    assert counts[1] > 20 and counts[1] >= 0.9 * counts[0]
    if kind == "smote":
        assert counts[0] == counts[1] == 180
        np.testing.assert_array_equal(X2[:200], X)             # originals first, synthetic rows appended
    X3, y3 = resample(X, y, kind, 0)
    np.testing.assert_array_equal(X2, X3)
    np.testing.assert_array_equal(y2, y3)
    X4, _ = resample(X, y, kind, 1)
    assert not np.array_equal(X2, X4)


def test_resample_tiny_minority_still_works():
    X, y = imbalanced(n=40, positives=3)
    X2, y2 = resample(X, y, "smote", 0)
    assert np.bincount(y2).tolist() == [37, 37]


def test_sensitive_category_is_one_hot_encoded_on_pseudonyms():
    """Same columns of 0/1 as the clear categories (equality kept), but no category in the fitted encoder."""
    from tabpipe.model.features import pseudonym, pseudonyms

    doc = SCHEMA.model_dump(mode="json")
    doc["columns"]["c"]["sensitive"] = True
    hidden = Schema.model_validate(doc)
    train = frame(200)
    clear, secret = build_preprocessor(SCHEMA), build_preprocessor(hidden)
    (X_clear,), (X_secret,) = fit_transform(clear, train), fit_transform(secret, train)
    names = list(secret.get_feature_names_out())
    assert not any(n.startswith("cat__c_") for n in names)
    (categories,) = secret.named_transformers_["pseud"][-1].categories_
    assert all(c.startswith("h:") or c == MISSING for c in categories) and len(categories) == 4
    for value in ("x", "y", "z"):   # the pseudonym's column is the clear category's column
        np.testing.assert_array_equal(col(secret, X_secret, f"pseud__c_{pseudonym('c', value)}"),
                                      col(clear, X_clear, f"cat__c_{value}"))
    np.testing.assert_array_equal(col(secret, X_secret, f"pseud__c_{MISSING}"), col(clear, X_clear, f"cat__c_{MISSING}"))
    out = pseudonyms(pd.DataFrame({"c": ["x", None, "x", "w"]}))
    assert out[0, 0] == out[2, 0] != out[3, 0] and pd.isna(out[1, 0]) and out[0, 0].startswith("h:")
    assert pseudonym("c", "x") != pseudonym("other", "x")   # per column: equal values of two columns differ

"""Preprocessing built from the schema (pure builders; nothing is fitted here).

Numeric: median imputation (+ missing-value indicators) then robust scaling (5-95 % range).
Categorical: a ``__missing__`` level, then one-hot; unseen categories at predict time are pooled
with the rare ones (or ignored when there are none). A ``sensitive: true`` categorical feature is
first replaced by its pseudonym (``pseudonyms``), so the fitted encoder — and the model file, the
feature names in run.json — hold pseudonyms, not the categories. Datetimes: hour of day and day of week.
Resampling is the trainer's business, not the model's: ``tabpipe.training.resampling``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler

from tabpipe.schema import Schema

MISSING = "__missing__"
QUANTILES = (5.0, 95.0)  # robust scale on the 5-95 % range: zero-inflated columns (IQR 0) still get scaled


def datetime_parts(X: pd.DataFrame) -> np.ndarray:
    """(n, k) datetime frame -> (n, 2k) float array: hour of day, day of week; NaN where missing."""
    cols = []
    for name in X.columns:
        column = X[name]   # typed by the schema check: datetime64 already (to_datetime would scan it again)
        dt = column if pd.api.types.is_datetime64_any_dtype(column) else pd.to_datetime(column, errors="coerce")
        cols += [dt.dt.hour.astype(float).to_numpy(), dt.dt.dayofweek.astype(float).to_numpy()]
    return np.column_stack(cols) if cols else np.empty((len(X), 0))


def _datetime_names(_transformer, names_in) -> list[str]:
    return [f"{n}_{part}" for n in names_in for part in ("hour", "dayofweek")]


def pseudonyms(X: pd.DataFrame) -> np.ndarray:
    """(n, k) category frame -> (n, k) object array: each value replaced by ``h:`` + 16 hex digits of the
    SHA-256 of its column name and text; missing stays missing. Equal values get equal pseudonyms, so
    one-hot encoding learns the same thing. Pseudonymised, not anonymised: there is no secret key (the
    model must score without one), so whoever holds the model file can test guesses."""
    out = np.empty(X.shape, dtype=object)
    for j, name in enumerate(X.columns):
        codes, uniques = pd.factorize(X[name], use_na_sentinel=True)
        names = np.array([pseudonym(name, v) for v in uniques] + [np.nan], dtype=object)
        out[:, j] = names[codes]   # code -1 (missing) picks the trailing NaN
    return out


def pseudonym(column: str, value) -> str:
    """The pseudonym of one category value of ``column`` (see ``pseudonyms``)."""
    from tabpipe.privacy import canonical

    return "h:" + hashlib.sha256(f"{column}\0{canonical(value)}".encode()).hexdigest()[:16]


def build_preprocessor(schema: Schema, max_categories: int = 30) -> ColumnTransformer:
    """Unfitted ColumnTransformer mapping the schema's feature columns to a dense float matrix."""
    numeric = schema.features_of_type("int", "float", "bool")
    categorical = [name for name in schema.features_of_type("category") if name not in schema.sensitive]
    hidden = [name for name in schema.features_of_type("category") if name in schema.sensitive]
    datetimes = schema.features_of_type("datetime")
    steps = []
    if numeric:
        imputer = SimpleImputer(strategy="median", add_indicator=True)
        steps.append(("num", make_pipeline(imputer, RobustScaler(quantile_range=QUANTILES)), numeric))
    if categorical:
        steps.append(("cat", _one_hot(max_categories), categorical))
    if hidden:
        hide = FunctionTransformer(pseudonyms, feature_names_out="one-to-one")
        steps.append(("pseud", Pipeline([("pseudonyms", hide), *_one_hot(max_categories).steps]), hidden))
    if datetimes:
        parts = FunctionTransformer(datetime_parts, feature_names_out=_datetime_names)
        steps.append(("dt", make_pipeline(parts, SimpleImputer(strategy="median"), RobustScaler(quantile_range=QUANTILES)), datetimes))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=True)


def _one_hot(max_categories: int) -> Pipeline:
    encoder = OneHotEncoder(
        handle_unknown="infrequent_if_exist", max_categories=max_categories, min_frequency=5,
        sparse_output=True, dtype=np.float32,   # the ColumnTransformer densifies (sparse_threshold=0)
    )
    return make_pipeline(SimpleImputer(strategy="constant", fill_value=MISSING), encoder)


TRANSFORM_CELLS = 20_000_000   # rows x columns transformed at a time by ``transform32`` (~160 MB of float64)


def fit_transform(preprocessor: ColumnTransformer, train: pd.DataFrame, *others: pd.DataFrame) -> list[np.ndarray]:
    """Fit on ``train`` only, then transform ``train`` and each of ``others``.

    The matrices are float32, what every estimator is fitted on (the search's folds and the final
    refit alike): half the memory of float64 on wide one-hot data. The fitted preprocessor itself
    still returns float64, so serving is unchanged.
    """
    out = [_fit_transform32(preprocessor, train)]
    out += [transform32(preprocessor, df) for df in others]
    return out


def _fit_transform32(preprocessor: ColumnTransformer, train: pd.DataFrame) -> np.ndarray:
    """Fit on ``train`` and return its rows as float32, without a dense float64 copy of the whole matrix.

    The fit runs with sparse output (the one-hot block stays a few values per row), then the fitted
    preprocessor is set back to the dense output it was built with: the fitted statistics do not depend
    on the output format, so it is the preprocessor ``fit`` gives (tested), and the training rows are
    densified a block at a time.
    """
    threshold = preprocessor.sparse_threshold
    preprocessor.set_params(sparse_threshold=1.0)
    try:
        X = preprocessor.fit_transform(train)
    finally:
        preprocessor.set_params(sparse_threshold=threshold)
    if not sparse.issparse(X):
        return X.astype(np.float32, copy=False)
    preprocessor.sparse_output_ = False   # what fitting with sparse_threshold=0 sets (see its documentation)
    X = X.tocsr()
    out = np.empty(X.shape, dtype=np.float32)
    step = max(1, TRANSFORM_CELLS // max(X.shape[1], 1))
    for start in range(0, X.shape[0], step):
        out[start:start + step] = X[start:start + step].toarray()
    return out


def transform32(preprocessor: ColumnTransformer, df: pd.DataFrame) -> np.ndarray:
    """``preprocessor.transform(df)`` as float32, a block of rows at a time (every step works row by row),
    so no float64 copy of the whole matrix is ever held."""
    width = len(preprocessor.get_feature_names_out())
    out = np.empty((len(df), width), dtype=np.float32)
    step = max(1, TRANSFORM_CELLS // max(width, 1))
    for start in range(0, len(df), step):
        out[start:start + step] = preprocessor.transform(df.iloc[start:start + step])
    return out


__all__ = ["Pipeline", "build_preprocessor", "datetime_parts", "fit_transform",
           "transform32"]

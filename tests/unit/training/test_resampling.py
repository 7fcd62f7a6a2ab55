"""FastTomekLinks / smote_tomek give exactly imbalanced-learn's output (same rows, same order).

Both sides run under the same OpenMP thread limit, because scikit-learn's brute-force neighbour
search picks its parallel strategy (and so its tie order) from the thread count; the limit also
makes sure these sizes take the fast path on any machine.
"""
from __future__ import annotations


import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import tabpipe  # noqa: F401
from imblearn.combine import SMOTETomek  # noqa: E402
from imblearn.over_sampling import SMOTE  # noqa: E402
from imblearn.under_sampling import TomekLinks  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from tabpipe.training import resampling  # noqa: E402
from tabpipe.training.components.transformation import split_xy  # noqa: E402
from tabpipe.model.features import build_preprocessor  # noqa: E402
from tabpipe.training.resampling import make_sampler, resample  # noqa: E402
from tabpipe.sources.sample import generate  # noqa: E402
from tabpipe.schema import coerce_frame, load_schema  # noqa: E402

from helpers import REPO as ROOT  # noqa: E402
THREADS = 2


def sample_matrix(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled schema's preprocessing of generated rows: 30 columns, numeric + one-hot, ~5 % positives."""
    schema = load_schema(ROOT / "schema.yaml")
    typed, _ = coerce_frame(generate(rows, seed=seed), schema, with_target=True)
    X, y = split_xy(typed, schema)
    return build_preprocessor(schema).fit_transform(X).astype(np.float64), np.asarray(y, dtype=np.int64)


def one_hot_with_duplicates(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """12 one-hot columns, 2 coarse integer columns, 2 constant columns and one that is 0 on half the
    rows, noise on the others: many exact duplicates (some in both classes) next to distinct rows."""
    rng = np.random.default_rng(seed)
    blocks = [np.eye(k)[rng.integers(0, k, rows)] for k in (3, 4, 5)]
    coarse = rng.integers(0, 3, size=(rows, 2)).astype(float)
    noise = np.where(rng.random(rows) < 0.5, 0.0, rng.normal(0, 0.5, rows))[:, None]
    X = np.hstack(blocks + [coarse, np.zeros((rows, 2)), noise])
    logit = -3.2 + 1.5 * X[:, 0] + 0.8 * coarse[:, 0] - 0.7 * X[:, 7]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y


def numeric_with_ties(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """18 numeric columns (one constant), 10 % of rows exact copies of others with a random label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 18))
    X[:, 5] = 3.0
    copies = rng.choice(rows, rows // 10, replace=False)
    X[copies] = X[rng.choice(rows, len(copies))]
    y = (rng.random(rows) < 0.08).astype(np.int64)
    X[y == 1, :3] += 0.8
    return X, y


def reference(X, y, seed, k_neighbors=5):
    return SMOTETomek(smote=SMOTE(random_state=seed, k_neighbors=k_neighbors), random_state=seed).fit_resample(X, y)


def assert_same(ours, theirs):
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


@pytest.mark.parametrize(("rows", "seed"), [(6_000, 0), (6_000, 1), (20_000, 2)])
def test_sample_data_equals_imblearn(rows, seed):
    X, y = sample_matrix(rows, seed + 10)
    with threadpool_limits(THREADS, user_api="openmp"):
        smoted, _ = SMOTE(random_state=seed).fit_resample(X, y)
        assert resampling._brute_force_is_parallel_on_x(smoted)    # the fast path is the one tested
        theirs = reference(X, y, seed)
        ours = resampling.smote_tomek(seed).fit_resample(X, y)
    assert_same(ours, theirs)
    if rows >= 20_000:
        assert len(ours[1]) < len(smoted)                             # links were found and removed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_smote_equals_imblearn_across_blocks(monkeypatch, dtype):
    """The synthetic rows computed a few at a time equal imbalanced-learn's one-pass rows, in both
    dtypes the trainer uses, alone and inside SMOTETomek."""
    X, y = sample_matrix(3_000, 7)
    X = X.astype(dtype)
    monkeypatch.setattr(resampling, "SMOTE_BLOCK_CELLS", 7 * X.shape[1])    # 7 rows a block: many blocks
    ours = resampling.smote(3).fit_resample(X, y)
    theirs = SMOTE(random_state=3).fit_resample(X, y)
    assert ours[0].dtype == dtype and len(ours[1]) > len(y) + 100
    assert_same(ours, theirs)
    with threadpool_limits(THREADS, user_api="openmp"):
        ours = resample(X, y, "smotetomek", 3)                  # float32 rows are resampled as float64
        theirs = reference(X.astype(np.float64), y, 3)
    assert ours[0].dtype == dtype
    assert_same(ours, (theirs[0].astype(dtype), theirs[1]))


@pytest.mark.parametrize("seed", [0, 3])
def test_one_hot_duplicates_equal_imblearn(seed):
    X, y = one_hot_with_duplicates(8_000, seed)
    assert len(np.unique(X, axis=0)) < 0.6 * len(X)                   # many duplicates
    with threadpool_limits(THREADS, user_api="openmp"):
        ours = resampling.smote_tomek(seed).fit_resample(X, y)
        assert_same(ours, reference(X, y, seed))
        assert len(ours[1]) < 2 * np.bincount(y).max()                # links were found and removed


@pytest.mark.parametrize("seed", [0, 5])
def test_numeric_ties_and_constant_column_equal_imblearn(seed):
    X, y = numeric_with_ties(8_000, seed)
    with threadpool_limits(THREADS, user_api="openmp"):
        assert_same(resampling.smote_tomek(seed).fit_resample(X, y), reference(X, y, seed))


@pytest.mark.parametrize("strategy", ["all", "auto"])
def test_tomek_links_alone_equal_imblearn_with_opposite_class_duplicates(strategy):
    """Without SMOTE, exact duplicates across classes and either cleaning strategy."""
    X, y = numeric_with_ties(5_000, 7)
    X[100:140] = X[0:40]
    y[100:140] = 1 - y[0:40]
    with threadpool_limits(THREADS, user_api="openmp"):
        theirs = TomekLinks(sampling_strategy=strategy).fit_resample(X, y)
        fast = resampling.FastTomekLinks(sampling_strategy=strategy)
        ours = fast.fit_resample(X, y)
        nearest = resampling.tomek_nearest(X, y)
        reference_nn = NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X, return_distance=False)[:, 1]
    assert_same(ours, theirs)
    assert nearest and all(reference_nn[i] == nn for i, nn in nearest.items())
    linked = [i for i, nn in nearest.items() if y[nn] != y[i] and nearest.get(nn) == i]
    assert linked                                                      # the case exercises real links


def test_small_data_uses_imblearn_itself():
    X, y = numeric_with_ties(300, 1)
    with threadpool_limits(THREADS, user_api="openmp"):
        assert not resampling._brute_force_is_parallel_on_x(X)
        assert_same(resampling.smote_tomek(0, 3).fit_resample(X, y), reference(X, y, 0, 3))


def test_few_features_use_imblearn_kd_tree_path():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4_000, 6)), (rng.random(4_000) < 0.1).astype(np.int64)
    assert not resampling._brute_force_is_parallel_on_x(X)
    assert_same(resampling.smote_tomek(1).fit_resample(X, y), reference(X, y, 1))


def test_tiny_minority_through_resample():
    X, y = numeric_with_ties(4_000, 2)
    y[:] = 0
    y[[5, 900, 1700]] = 1                                             # 3 positives: k_neighbors capped at 2
    with threadpool_limits(THREADS, user_api="openmp"):
        ours = resample(X, y, "smotetomek", 4)
        assert_same(ours, reference(X, y, 4, k_neighbors=2))
    assert make_sampler("smotetomek", 0, np.zeros(50, dtype=np.int64)) is None   # single class: nothing to do
    X1, y1 = resample(X[:50], np.zeros(50, dtype=np.int64), "smotetomek", 0)
    assert X1.shape == (50, 18)

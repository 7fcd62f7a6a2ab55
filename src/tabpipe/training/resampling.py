"""SMOTETomek whose Tomek step costs near-linear time, with exactly imbalanced-learn's result.

Design notes: docs/training.md#smotetomek-in-near-linear-time-resampling
"""
from __future__ import annotations

import numpy as np
from imblearn.combine import SMOTETomek
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import TomekLinks
from scipy import sparse
from scipy.spatial import cKDTree
from sklearn import get_config
from sklearn.metrics._pairwise_distances_reduction import ArgKmin
from sklearn.metrics._pairwise_distances_reduction._base import _sqeuclidean_row_norms64
from sklearn.utils import _safe_indexing
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

PROJECTED_DIMS = 8      # PCA components searched with a KD-tree (low enough for trees to prune)
SAME_CLASS_PROBES = 4   # projected same-class neighbours whose true distance bounds u_j
CHECKS_PER_BRUTE_ROW = 16  # a row with over n/16 projected candidates goes straight to the exact search
KD_TREE_MAX_FEATURES = 15  # scikit-learn's NearestNeighbors(algorithm="auto") uses a KD-tree up to here
SMOTE_BLOCK_CELLS = 4_000_000  # synthetic values computed at a time by BlockSMOTE (a few 32 MB float64 temporaries)


def _brute_force_is_parallel_on_x(X: np.ndarray) -> bool:
    """True when ``NearestNeighbors(2).fit(X).kneighbors(X)`` runs ArgKmin brute force over chunks of X.

    Mirrors ``sklearn.neighbors._base`` (brute above 15 features) and the "auto" strategy of
    ``BaseDistancesReductionDispatcher`` (parallel on X when 4 * chunk_size * threads < n).
    """
    n, d = X.shape
    if d <= KD_TREE_MAX_FEATURES or n < 4 or not ArgKmin.is_usable_for(X, X, "euclidean"):
        return False
    chunk = get_config().get("pairwise_dist_chunk_size", 256)
    return 4 * chunk * _openmp_effective_n_threads() < n


def _nearest_two(X: np.ndarray, rows: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """(len(rows), 2) indices of the two nearest rows of X to X[rows], exactly as sklearn's brute force.

    Same kernel, same row norms, same chunks of X as the reference side, same strategy
    (parallel on X: each query sees the rows in index order), hence the same distances and ties.
    """
    if len(rows) == 0:
        return np.empty((0, 2), dtype=np.intp)
    return ArgKmin.compute(
        X=np.ascontiguousarray(X[rows]), Y=X, k=2, metric="euclidean",
        metric_kwargs={"X_norm_squared": norms[rows], "Y_norm_squared": norms},
        strategy="parallel_on_X", return_distance=False,
    )


def _sq_dist(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared euclidean distances between rows X[a] and X[b], pairwise."""
    diff = X[a] - X[b]
    return np.einsum("ij,ij->i", diff, diff)


def _projection(X: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Rows projected on the top ``dims`` principal axes (orthonormal: distances only shrink),
    and an absolute bound on the rounding of projected differences."""
    rng = np.random.default_rng(seed)
    sample = X[rng.choice(len(X), min(len(X), 20_000), replace=False)]
    mean = sample.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(sample - mean, rowvar=False))
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims])
    centred = X - mean
    Z = centred @ basis
    scale = float(np.sqrt(np.einsum("ij,ij->i", centred, centred).max())) if len(X) else 0.0
    return Z, 64 * X.shape[1] * np.finfo(float).eps * (scale + 1.0)


def _same_class_bound(X: np.ndarray, Z: np.ndarray, rows: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Squared distance from each of ``rows`` to some other row of ``members`` (its class): an upper
    bound on its same-class nearest-neighbour distance; inf for a class of one row."""
    best = np.full(len(rows), np.inf)
    if len(members) < 2:
        return best
    k = min(SAME_CLASS_PROBES + 1, len(members))
    _, found = cKDTree(Z[members]).query(Z[rows], k=k, workers=-1)
    for col in range(k):
        other = members[found[:, col]]
        ok = other != rows
        best[ok] = np.minimum(best[ok], _sq_dist(X, rows[ok], other[ok]))
    return best


def _link_candidates(X: np.ndarray, Z: np.ndarray, proj_err: float, queries: np.ndarray,
                     radius2: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Rows of ``queries`` that may have a row of ``others`` within squared distance ``radius2``.

    Exact on the rows it leaves out: a row is dropped only when no other-class row is within its
    radius in the projection (which never exceeds the true distance), or none passes the exact check.
    Rows with a radius that is infinite or that holds many projected rows are kept unchecked.
    """
    radius = np.sqrt(radius2) * (1 + 1e-7) + proj_err
    keep = ~np.isfinite(radius)               # no same-class row: always a candidate
    search = np.flatnonzero(~keep)
    if len(search) == 0 or len(others) == 0:
        return queries[keep]
    lists = cKDTree(Z[others]).query_ball_point(Z[queries[search]], radius[search], workers=-1,
                                               return_sorted=False)
    lengths = np.fromiter((len(item) for item in lists), dtype=np.intp, count=len(lists))
    crowded = lengths > max(512, len(X) // CHECKS_PER_BRUTE_ROW)   # cheaper to settle by the exact search
    keep[search[crowded]] = True
    lengths[crowded] = 0
    if lengths.sum():
        q = np.repeat(search, lengths)
        o = others[np.concatenate([np.asarray(lists[i], dtype=np.intp) for i in np.flatnonzero(lengths)])]
        close = np.zeros(len(q), dtype=bool)
        for start in range(0, len(q), 1 << 16):
            part = slice(start, start + (1 << 16))
            close[part] = _sq_dist(X, queries[q[part]], o[part]) <= radius2[q[part]] * (1 + 1e-7)
        keep[np.unique(q[close])] = True
    return queries[keep]


def tomek_nearest(X: np.ndarray, y: np.ndarray) -> dict[int, int]:
    """Nearest neighbour (as ``NearestNeighbors(n_neighbors=2).kneighbors(X)[:, 1]``) of every row that
    can be in a Tomek link; rows left out have no other-class mutual nearest neighbour.

    Needs ``_brute_force_is_parallel_on_x(X)`` and two classes in ``y``.
    """
    n, d = X.shape
    eps = np.finfo(float).eps
    norms = np.asarray(_sqeuclidean_row_norms64(X, _openmp_effective_n_threads()))
    # |sklearn's squared distance - exact| <= c * eps * (|x|^2 + |y|^2): one margin for all pairs.
    margin = 8 * (d + 4) * eps * (2 * float(norms.max()) + 1.0)
    Z, proj_err = _projection(X, min(PROJECTED_DIMS, d))
    classes = np.unique(y)
    members = {c: np.flatnonzero(y == c) for c in classes}
    # query from the denser class (after SMOTE: the synthetic one): small radii, cheap searches;
    # either choice is exact. Density is judged on a sample of each class.
    rng = np.random.default_rng(0)
    sampled = {c: rng.choice(members[c], min(len(members[c]), 2_000), replace=False) for c in classes}
    dense = min(classes, key=lambda c: np.median(_same_class_bound(X, Z, sampled[c], members[c])))
    other = np.flatnonzero(y != dense)
    radius2 = _same_class_bound(X, Z, members[dense], members[dense]) * (1 + 1e-7) + 2 * margin
    first = _link_candidates(X, Z, proj_err, members[dense], radius2, other)
    nearest = dict(zip(first.tolist(), _nearest_two(X, first, norms)[:, 1].tolist()))
    partners = np.array(sorted({nn for j, nn in nearest.items() if y[nn] != y[j] and nn not in nearest}), dtype=np.intp)
    nearest.update(zip(partners.tolist(), _nearest_two(X, partners, norms)[:, 1].tolist()))
    return nearest


class FastTomekLinks(TomekLinks):
    """``TomekLinks`` with the same output in near-linear time on dense data above 15 features."""

    def _fit_resample(self, X, y):
        if (sparse.issparse(X) or X.dtype != np.float64 or len(np.unique(y)) != 2
                or not _brute_force_is_parallel_on_x(X)):
            return super()._fit_resample(X, y)
        nearest = tomek_nearest(X, y)
        links = np.zeros(len(y), dtype=bool)
        for i, nn in nearest.items():
            if y[i] in self.sampling_strategy_ and y[nn] != y[i] and nearest.get(nn) == i:
                links[i] = True
        self.sample_indices_ = np.flatnonzero(~links)
        return _safe_indexing(X, self.sample_indices_), _safe_indexing(y, self.sample_indices_)


class BlockSMOTE(SMOTE):
    """imbalanced-learn's ``SMOTE`` with the same output, its synthetic rows computed a block of rows at a time
    and written once into the result (imbalanced-learn copies the input, then stacks the copy and the new rows)."""

    def _fit_resample(self, X, y):
        if sparse.issparse(X):
            return super()._fit_resample(X, y)
        self._validate_estimator()
        made = []   # imbalanced-learn's SMOTE._fit_resample, step for step, but for the copies
        for class_sample, n_samples in self.sampling_strategy_.items():
            if n_samples == 0:
                continue
            X_class = _safe_indexing(X, np.flatnonzero(y == class_sample))
            self.nn_k_.fit(X_class)
            nns = self.nn_k_.kneighbors(X_class, return_distance=False)[:, 1:]
            made.append(self._make_samples(X_class, y.dtype, class_sample, X_class, nns, n_samples, 1.0))
        X_out = np.empty((len(X) + sum(len(y_new) for _, y_new in made), X.shape[1]), dtype=X.dtype)
        X_out[:len(X)] = X
        start = len(X)
        for X_new, y_new in made:
            X_out[start:start + len(y_new)] = X_new
            start += len(y_new)
        return X_out, np.hstack([y] + [y_new for _, y_new in made])

    def _generate_samples(self, X, nn_data, nn_num, rows, cols, steps, y_type=None, y=None):
        if sparse.issparse(X) or y is not None:
            return super()._generate_samples(X, nn_data, nn_num, rows, cols, steps, y_type, y)
        out = np.empty((len(rows), X.shape[1]), dtype=X.dtype)
        block = max(1, SMOTE_BLOCK_CELLS // max(X.shape[1], 1))
        for start in range(0, len(rows), block):   # row by row arithmetic: any split gives the same values
            part = slice(start, start + block)
            out[part] = super()._generate_samples(X, nn_data, nn_num, rows[part], cols[part], steps[part])
        return out


def smote(seed: int, k_neighbors: int = 5) -> BlockSMOTE:
    """imbalanced-learn's ``SMOTE`` (same synthetic rows), computed in blocks."""
    return BlockSMOTE(random_state=seed, k_neighbors=k_neighbors)


def smote_tomek(seed: int, k_neighbors: int = 5) -> SMOTETomek:
    """imbalanced-learn's ``SMOTETomek`` (same SMOTE, same links removed) with ``BlockSMOTE`` and ``FastTomekLinks``."""
    return SMOTETomek(smote=smote(seed, k_neighbors),
                      tomek=FastTomekLinks(sampling_strategy="all"), random_state=seed)


def make_sampler(kind: str, seed: int, y: np.ndarray):
    """imbalanced-learn sampler for ``kind``, or None (``none``, or too few minority rows to synthesise).

    SMOTE's neighbour count is capped by the minority class size so small folds still work.
    ``smotetomek`` / ``smote`` are imbalanced-learn's ``SMOTETomek`` / ``SMOTE`` with the same output,
    computed faster and in less memory (above).
    """
    if kind == "none":
        return None
    minority = int(min(np.bincount(y.astype(int), minlength=2)))
    if minority < 2:
        return None
    k_neighbors = min(5, minority - 1)
    return smote_tomek(seed, k_neighbors) if kind == "smotetomek" else smote(seed, k_neighbors)


def resample(X: np.ndarray, y: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampled copy of a TRAINING matrix (same dtype); returns the input unchanged when no sampler applies."""
    sampler = make_sampler(kind, seed, y)
    if sampler is None:
        return X, y
    if kind == "smotetomek" and X.dtype != np.float64:
        # the fast Tomek-link search is exact (imbalanced-learn's links) on float64 rows
        X_res, y_res = sampler.fit_resample(X.astype(np.float64), y)
        return X_res.astype(X.dtype), y_res
    return sampler.fit_resample(X, y)

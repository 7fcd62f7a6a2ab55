"""Population Stability Index (PSI) of new rows against frozen reference bins (pure functions, no I/O).

    PSI = sum over buckets of (a - e) * ln(a / e)      a = share of the window, e = share of the reference

Buckets and edge cases (the ``EPSILON`` floor, ``MIN_ROWS``, the ``noise`` figure):
docs/monitoring.md#psi-buckets-and-edge-cases
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPSILON = 1e-4
MIN_ROWS = 500
MAX_COMPARE_EDGES = 64
OTHER = "__other__"
MISSING = "__missing__"


@dataclass(frozen=True)
class FeaturePSI:
    """PSI of one feature in one window; ``value`` is None when ``status`` is ``insufficient_data``."""

    feature: str
    status: str                  # "ok" | "insufficient_data"
    value: float | None
    rows: int                    # rows in the window
    noise: float | None          # expected PSI with no drift at all, (k-1)(1/n + 1/n_ref)
    buckets: tuple[str, ...]     # bucket labels, in order
    reference_shares: tuple[float, ...]
    window_shares: tuple[float, ...]
    message: str = ""

    def as_dict(self) -> dict:
        """The JSON form (``value`` under the key ``psi``)."""
        return {"feature": self.feature, "status": self.status, "psi": self.value, "rows": self.rows,
                "noise": self.noise, "buckets": list(self.buckets), "reference_shares": list(self.reference_shares),
                "window_shares": list(self.window_shares), "message": self.message}


def psi(reference_shares, window_shares, epsilon: float = EPSILON) -> float:
    """PSI of two share vectors over the same buckets; shares are floored at ``epsilon``."""
    e = np.maximum(np.asarray(reference_shares, dtype=float), epsilon)
    a = np.maximum(np.asarray(window_shares, dtype=float), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"share vectors differ in length: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior cut points of ``bins`` quantile bins of the non-missing ``values``, duplicates merged.

    Empty input gives no edges (one bin for every value); a constant column gives one edge.
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    if len(finite) == 0:
        return np.empty(0)
    probs = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, probs))
    return edges if len(edges) else np.unique(finite)[:1]


def numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bucket: len(edges) + 1 right-closed bins, then missing.

    Vectorised as one ``count_nonzero(x <= edge)`` per edge (cumulative counts; edges ascend): for the
    ~10 edges of a profile that is ~40x faster than ``np.searchsorted`` on float data with NaNs.
    """
    x = np.asarray(values, dtype=float)
    n_missing = int(np.count_nonzero(np.isnan(x)))
    if len(edges) > MAX_COMPARE_EDGES:
        present = x[~np.isnan(x)]
        counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
        return np.r_[counts, n_missing]
    at_most = [np.count_nonzero(x <= edge) for edge in edges]      # NaN <= edge is False
    return np.diff(np.r_[0, at_most, len(x) - n_missing, len(x)]).astype(np.int64)


def categorical_counts(values, categories: list[str]) -> np.ndarray:
    """Counts per bucket: each reference category, then ``other`` (unseen), then missing.

    Vectorised: the column is factorised once (hashing), then only its distinct values are looked up.
    """
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    per_unique = np.bincount(codes[codes >= 0], minlength=len(uniques))
    bucket = pd.Index(categories, dtype=object).get_indexer(pd.Index(uniques, dtype=object).astype(str))
    bucket = np.where(bucket < 0, len(categories), bucket)          # unknown -> other
    counts = np.bincount(bucket, weights=per_unique, minlength=len(categories) + 1).astype(np.int64)
    return np.r_[counts, np.count_nonzero(codes < 0)]


def numeric_labels(edges) -> tuple[str, ...]:
    """Bucket labels of numeric bins with ``edges``: ``<= e0``, ``(e0, e1]``, ..., ``> e_last``, then ``missing``."""
    edges = list(edges)
    if not edges:
        return ("all values", "missing")
    labels = [f"<= {edges[0]:.6g}"]
    labels += [f"({lo:.6g}, {hi:.6g}]" for lo, hi in zip(edges, edges[1:])]
    labels.append(f"> {edges[-1]:.6g}")
    return (*labels, "missing")


def categorical_labels(categories) -> tuple[str, ...]:
    """Bucket labels of a categorical profile: its categories, then ``other`` and ``missing``."""
    return (*map(str, categories), "other", "missing")


def shares(counts: np.ndarray) -> np.ndarray:
    """``counts`` as shares of their total (all zeros when the total is 0)."""
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def bucket_counts(feature: str, reference: dict, values) -> np.ndarray:
    """Rows of ``values`` per bucket of a profile entry (see ``feature_psi``); counts of chunks add up."""
    if reference["kind"] == "numeric":
        return numeric_counts(values, np.asarray(reference["edges"], dtype=float))
    if reference["kind"] == "categorical":
        return categorical_counts(values, list(reference["categories"]))
    raise ValueError(f"{feature}: unknown profile kind {reference['kind']!r}")


def column_values(reference: dict, column: pd.Series):
    """A typed column as ``bucket_counts`` takes it: the Series (categorical) or float values (numeric)."""
    return column if reference["kind"] == "categorical" else column.to_numpy(dtype=float)


def feature_psi(feature: str, reference: dict, values, *, min_rows: int = MIN_ROWS) -> FeaturePSI:
    """PSI of ``values`` (one column of the window) against a profile entry.

    ``reference``: ``{"kind": "numeric", "edges": [...], "shares": [...], "rows": n}`` or
    ``{"kind": "categorical", "categories": [...], "shares": [...], "rows": n}`` with shares over
    the buckets described in the module docstring.
    """
    return counts_psi(feature, reference, bucket_counts(feature, reference, values), min_rows=min_rows)


def counts_psi(feature: str, reference: dict, counts: np.ndarray, *, min_rows: int = MIN_ROWS) -> FeaturePSI:
    """PSI of a window given as its rows per bucket (``bucket_counts``, summed over the window's chunks)."""
    labels = (numeric_labels(reference["edges"]) if reference["kind"] == "numeric"
              else categorical_labels(reference["categories"]))
    ref_shares = np.asarray(reference["shares"], dtype=float)
    if len(ref_shares) != len(counts):
        raise ValueError(f"{feature}: profile has {len(ref_shares)} shares for {len(counts)} buckets")
    n, n_ref = int(counts.sum()), int(reference.get("rows", 0))
    k = int(np.count_nonzero(ref_shares)) or 1
    noise = (k - 1) * (1 / n + (1 / n_ref if n_ref else 0.0)) if n else None
    win_shares = shares(counts)
    common = dict(feature=feature, rows=n, noise=noise, buckets=labels,
                  reference_shares=tuple(float(s) for s in ref_shares), window_shares=tuple(float(s) for s in win_shares))
    if n < min_rows:
        return FeaturePSI(status="insufficient_data", value=None,
                          message=f"{n} rows in the window; PSI needs at least {min_rows} to mean anything", **common)
    return FeaturePSI(status="ok", value=psi(ref_shares, win_shares), **common)


def frame_psi(profile_features: dict[str, dict], frame: pd.DataFrame, *, min_rows: int = MIN_ROWS) -> dict[str, FeaturePSI]:
    """PSI of every profiled feature present in ``frame`` (typed as by ``coerce_frame``)."""
    return {name: feature_psi(name, ref, column_values(ref, frame[name]), min_rows=min_rows)
            for name, ref in profile_features.items() if name in frame.columns}

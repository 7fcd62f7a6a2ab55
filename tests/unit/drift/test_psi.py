"""PSI against hand-computed values: the definition, empty buckets, unseen categories, constant columns, tiny windows."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tabpipe.drift.psi import (
    EPSILON,
    MIN_ROWS,
    categorical_counts,
    feature_psi,
    frame_psi,
    numeric_counts,
    psi,
    quantile_edges,
)

LN = math.log


@pytest.mark.parametrize("reference, window, expected", [
    ([0.5, 0.5], [0.5, 0.5], 0.0),
    ([0.5, 0.5], [0.25, 0.75], (0.25 - 0.5) * LN(0.25 / 0.5) + (0.75 - 0.5) * LN(0.75 / 0.5)),   # 0.274653
    ([0.2, 0.3, 0.5], [0.3, 0.3, 0.4], 0.1 * LN(0.3 / 0.2) + 0.0 + (-0.1) * LN(0.4 / 0.5)),         # 0.062861
    # an empty reference bucket: its share is floored at 1e-4, never log(0)
    ([0.5, 0.5, 0.0], [0.5, 0.25, 0.25], (0.25 - 0.5) * LN(0.5) + (0.25 - 1e-4) * LN(0.25 / 1e-4)),
    # an empty window bucket, symmetric
    ([0.5, 0.25, 0.25], [0.5, 0.5, 0.0], (0.5 - 0.25) * LN(2) + (1e-4 - 0.25) * LN(1e-4 / 0.25)),
    # empty on both sides: contributes nothing
    ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0], 0.0),
    # the worst case is finite: everything moved to a bucket that was empty
    ([1.0, 0.0], [0.0, 1.0], 2 * (1 - 1e-4) * LN(1e4)),                                           # 18.4188
])
def test_psi_definition_and_smoothing(reference, window, expected):
    assert EPSILON == 1e-4
    assert psi(reference, window) == pytest.approx(expected, abs=1e-12)
    assert math.isfinite(psi(reference, window))


def test_psi_rejects_mismatched_buckets():
    with pytest.raises(ValueError, match="differ in length"):
        psi([0.5, 0.5], [1.0])


@pytest.mark.parametrize("values, bins, edges", [
    (np.arange(1, 11, dtype=float), 2, [5.5]),
    (np.arange(1, 11, dtype=float), 5, [2.8, 4.6, 6.4, 8.2]),       # numpy's linear quantiles of 1..10
    (np.array([7.0, 7.0, 7.0]), 10, [7.0]),                         # constant: one edge
    (np.array([0.0] * 8 + [1.0, 2.0]), 10, [0.0, 0.2, 1.1]),        # zero-inflated: duplicates merged
    (np.array([np.nan, np.nan]), 10, []),                           # nothing observed: one bin
])
def test_quantile_edges(values, bins, edges):
    assert quantile_edges(values, bins).tolist() == pytest.approx(edges)


def test_numeric_counts_right_closed_bins_and_missing():
    # bins: (-inf, 1], (1, 2], (2, inf), missing
    counts = numeric_counts(np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan, -np.inf, np.inf]), np.array([1.0, 2.0]))
    assert counts.tolist() == [3, 2, 2, 1]


def test_categorical_counts_unseen_go_to_other_and_missing_is_its_own_bucket():
    counts = categorical_counts(pd.Series(["a", "a", "b", "c", None, "d", np.nan]), ["a", "b"])
    assert counts.tolist() == [2, 1, 2, 2]     # a, b, other (c, d), missing (None, NaN)


def numeric_ref(edges, shares, rows=1000):
    return {"kind": "numeric", "edges": edges, "shares": shares, "rows": rows}


def test_constant_reference_column():
    ref = numeric_ref([7.0], [1.0, 0.0, 0.0])             # always 7: "<= 7", "> 7", missing
    same = feature_psi("c", ref, np.full(600, 7.0))
    assert same.status == "ok" and same.value == pytest.approx(0.0)
    moved = feature_psi("c", ref, np.full(600, 8.0))
    assert moved.value == pytest.approx(2 * (1 - 1e-4) * LN(1e4))
    nulls = feature_psi("c", ref, np.r_[np.full(300, 7.0), np.full(300, np.nan)])
    assert nulls.window_shares == (0.5, 0.0, 0.5)
    assert nulls.value == pytest.approx((0.5 - 1) * LN(0.5) + (0.5 - 1e-4) * LN(0.5 / 1e-4))


def test_constant_window_against_spread_reference():
    ref = numeric_ref([1.0, 2.0], [0.3, 0.3, 0.4, 0.0])
    result = feature_psi("x", ref, np.full(1000, 1.5))                 # all in (1, 2]
    expected = (1e-4 - 0.3) * LN(1e-4 / 0.3) + (1 - 0.3) * LN(1 / 0.3) + (1e-4 - 0.4) * LN(1e-4 / 0.4)
    assert result.value == pytest.approx(expected)


def test_unseen_categories_count_in_other():
    ref = {"kind": "categorical", "categories": ["a", "b"], "shares": [0.5, 0.5, 0.0, 0.0], "rows": 1000}
    window = pd.Series(["a"] * 250 + ["b"] * 250 + ["z"] * 500)
    result = feature_psi("cat", ref, window)
    assert result.window_shares == (0.25, 0.25, 0.5, 0.0)
    assert result.buckets == ("a", "b", "other", "missing")
    expected = 2 * (0.25 - 0.5) * LN(0.25 / 0.5) + (0.5 - 1e-4) * LN(0.5 / 1e-4)   # 4.604319
    assert result.value == pytest.approx(expected)
    assert result.noise == pytest.approx(1 * (1 / 1000 + 1 / 1000))     # 2 non-empty buckets


@pytest.mark.parametrize("rows, status", [(0, "insufficient_data"), (1, "insufficient_data"),
                                          (MIN_ROWS - 1, "insufficient_data"), (MIN_ROWS, "ok")])
def test_tiny_windows_say_so_instead_of_a_value(rows, status):
    ref = numeric_ref([1.0], [0.5, 0.5, 0.0])
    result = feature_psi("x", ref, np.full(rows, 5.0))   # every row drifted: a huge PSI if computed
    assert result.status == status
    if status == "ok":
        assert result.value > 1
    else:
        assert result.value is None and f"at least {MIN_ROWS}" in result.message


def test_min_rows_is_configurable():
    ref = numeric_ref([1.0], [0.5, 0.5, 0.0])
    assert feature_psi("x", ref, np.zeros(50), min_rows=50).status == "ok"


def test_profile_mismatch_is_an_error_naming_the_feature():
    with pytest.raises(ValueError, match="x: profile has 2 shares for 3 buckets"):
        feature_psi("x", numeric_ref([1.0], [0.5, 0.5]), np.zeros(10))


def test_frame_psi_bins_each_profiled_column():
    profile = {"n": numeric_ref([0.0], [0.5, 0.5, 0.0]),
               "c": {"kind": "categorical", "categories": ["x"], "shares": [1.0, 0.0, 0.0], "rows": 10}}
    frame = pd.DataFrame({"n": [-1.0] * 500 + [1.0] * 500, "c": ["x"] * 1000, "unprofiled": 1})
    result = frame_psi(profile, frame)
    assert set(result) == {"n", "c"}
    assert result["n"].value == pytest.approx(0.0) and result["c"].value == pytest.approx(0.0)


@pytest.mark.parametrize("n_edges", [3, 200])   # the comparison path and the searchsorted path for many edges
def test_numeric_counts_paths_agree_with_a_plain_loop(n_edges):
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=5000), 1)
    x[::17] = np.nan
    edges = np.unique(np.round(rng.normal(size=n_edges), 1))
    expected = [0] * (len(edges) + 2)
    for v in x:
        expected[-1 if np.isnan(v) else int(sum(v > e for e in edges))] += 1
    assert numeric_counts(x, edges).tolist() == expected

"""Single-column AUCs of the target-leakage check (tabpipe.training.leakage)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tabpipe.training.leakage import (
    FOLDS,
    MIN_LEVEL_ROWS,
    fold_of_rows,
    level_auc,
    ordered_auc,
    rank_auc,
    single_column_aucs,
)

N = 4000


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return (np.random.default_rng(0).random(N) < 0.1).astype(np.int64)


def test_rank_auc_is_roc_auc_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500)
    scores = rng.integers(0, 7, 500).astype(float) + labels   # many ties
    assert rank_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(rank_auc(scores, np.ones(500, dtype=np.int64)))   # one class: undefined


def test_ordered_auc_reads_both_ways_and_places_missing_values_at_either_end(y):
    noise = np.random.default_rng(2).normal(size=N)
    assert ordered_auc(-y.astype(float), y) == 1.0           # a negated target
    assert ordered_auc(np.where(y == 1, 7.0, 3.0), y) == 1.0  # a relabelled target
    assert ordered_auc(np.where(y == 1, np.nan, noise), y) == pytest.approx(1.0)   # missing exactly for positives
    assert ordered_auc(np.where(y == 0, np.nan, noise), y) == pytest.approx(1.0)   # ...or for negatives
    assert 0.5 <= ordered_auc(noise, y) < 0.6
    assert ordered_auc(np.full(N, np.nan), y) == 0.5


def test_level_auc_is_out_of_fold_so_id_like_columns_do_not_trip(y):
    folds = fold_of_rows(N, seed=0)
    assert sorted(np.bincount(folds)) == [N // FOLDS] * FOLDS   # balanced
    assert level_auc(y.copy(), y, folds) == pytest.approx(1.0)   # the target as two levels
    assert level_auc(np.arange(N), y, folds) == 0.5             # every value distinct
    pairs = np.arange(N) // 2                                   # every value twice: too rare out of fold
    assert level_auc(pairs, y, folds) == 0.5
    few = np.arange(N) // MIN_LEVEL_ROWS                        # rare values whose copies happen to share labels
    assert level_auc(few, np.repeat(y[::MIN_LEVEL_ROWS], MIN_LEVEL_ROWS), folds) < 0.98


def test_a_code_only_filled_in_for_positives_trips(y):
    ticket = pd.Series(np.where(y == 1, [f"T{i}" for i in range(N)], None), dtype=object)
    frame = pd.DataFrame({"ticket": ticket})
    assert single_column_aucs(frame, ["ticket"], y, seed=0)["ticket"] == pytest.approx(1.0)


def test_single_column_aucs_per_type(y):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "copy": y.astype(float),
        "yes_no": np.where(y == 1, "yes", "no").astype(object),
        "flipped": np.where(y == 1, "no", "yes").astype(object),
        "as_text": pd.Series(np.where(y == 1, "T", "F")).astype("str"),   # pandas' string dtype, not object
        "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(np.where(y == 1, 10, 0) + rng.random(N), unit="D"),
        "customer": np.array([f"c{i}" for i in rng.permutation(N)], dtype=object),
        "region": rng.choice(["n", "s", "e", "w"], N).astype(object),
        "signal": rng.normal(size=N) + 1.0 * y,
        "noise": rng.normal(size=N),
    })
    frame.loc[rng.random(N) < 0.05, "when"] = pd.NaT
    aucs = single_column_aucs(frame, list(frame.columns), y, seed=0)
    assert list(aucs) == list(frame.columns)
    for leaked in ("copy", "yes_no", "flipped", "as_text"):
        assert aucs[leaked] == 1.0, leaked
    assert 0.9 < aucs["when"] < 0.98   # separates except where missing: high, under the threshold
    for honest in ("customer", "region", "noise"):
        assert aucs[honest] < 0.6, honest
    assert 0.7 < aucs["signal"] < 0.9
    assert single_column_aucs(frame, ["copy"], np.zeros(N, dtype=np.int64), seed=0) == {}   # one class: no AUCs


def test_single_column_aucs_follow_the_seed(y):
    frame = pd.DataFrame({"lvl": (np.arange(N) % 40).astype(str).astype(object)})
    assert single_column_aucs(frame, ["lvl"], y, seed=5) == single_column_aucs(frame, ["lvl"], y, seed=5)


def test_grouped_aucs_equal_roc_auc_of_the_per_row_scores():
    """The AUCs computed over groups equal scikit-learn's on the per-row scores they stand for."""
    rng = np.random.default_rng(4)
    n = 3000
    labels = (rng.random(n) < 0.2).astype(np.int64)
    values = np.round(rng.normal(size=n) + labels, 1)
    values[rng.random(n) < 0.1] = np.nan
    low, high = np.where(np.isnan(values), -1e9, values), np.where(np.isnan(values), 1e9, values)   # missing: below or above
    expected = max(max(a, 1 - a) for a in (roc_auc_score(labels, low), roc_auc_score(labels, high)))
    assert ordered_auc(values, labels) == pytest.approx(expected)

    codes = rng.integers(0, 60, n) + 60 * labels * (rng.random(n) < 0.3)   # some levels only positives hold
    folds = fold_of_rows(n, seed=1)
    frame = pd.DataFrame({"code": codes, "fold": folds, "y": labels})
    scores = np.empty(n)
    for f in range(FOLDS):   # per row: its value's positive rate in the other folds, the overall rate if rare there
        other = frame[frame.fold != f].groupby("code")["y"].agg(["sum", "count"])
        rows = frame.index[frame.fold == f]
        seen = other.reindex(frame.loc[rows, "code"])
        rate = (seen["sum"] / seen["count"]).to_numpy()
        scores[rows] = np.where(seen["count"].fillna(0).to_numpy() >= MIN_LEVEL_ROWS, rate, labels.mean())
    assert level_auc(codes, labels, folds) == pytest.approx(roc_auc_score(labels, scores))

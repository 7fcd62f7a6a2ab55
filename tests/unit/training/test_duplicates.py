"""Repeated rows: counts, and every copy of a feature row kept on one side of the split (tabpipe.training.duplicates)."""
from __future__ import annotations

import numpy as np

import pandas as pd
import pytest

from tabpipe.training.duplicates import (CHANCE, CHANCE_RATE, across_split, chance_copies, conflicting_labels,
                                             exact_duplicates, one_side)


def hashes(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_exact_duplicates_count_every_copy_after_the_first():
    h = hashes(1, 1, 1, 2, 2, 3)
    assert exact_duplicates(h, np.array([0, 0, 0, 1, 0, 1])) == 2   # row 1 twice again; row 2 with two labels: none
    assert exact_duplicates(hashes(1, 2, 3), np.array([0, 1, 0])) == 0


def test_conflicting_labels_count_rows_and_feature_rows():
    h = hashes(1, 1, 1, 2, 2, 3, 4, 4)
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    assert conflicting_labels(h, y) == (5, 2)   # feature rows 1 (3 rows) and 4 (2 rows)
    assert conflicting_labels(hashes(5, 6), np.array([0, 1])) == (0, 0)


def test_across_split_counts_both_sides():
    assert across_split(hashes(1, 1, 2, 3), hashes(1, 3, 3, 4)) == {"train_rows": 3, "test_rows": 3, "feature_rows": 2}
    assert across_split(hashes(1, 2), hashes(3)) == {"train_rows": 0, "test_rows": 0, "feature_rows": 0}


def test_one_side_moves_copies_to_the_side_holding_more_of_them():
    train, test = hashes(1, 1, 2, 3, 5, 9), hashes(1, 2, 2, 3, 4)
    to_test, to_train = one_side(train, test)
    # 1: two in train, one in test -> train; 2: one in train, two in test -> test; 3: a tie -> train
    assert to_test.tolist() == [False, False, True, False, False, False]
    assert to_train.tolist() == [True, False, False, True, False]
    new_train = np.concatenate([train[~to_test], test[to_train]])
    new_test = np.concatenate([test[~to_train], train[to_test]])
    assert not set(new_train.tolist()) & set(new_test.tolist())
    assert sorted(new_train.tolist() + new_test.tolist()) == sorted(train.tolist() + test.tolist())


def test_one_side_moves_nothing_without_repeats_across_the_split():
    to_test, to_train = one_side(hashes(1, 1, 2), hashes(3, 4, 4))
    assert not to_test.any() and not to_train.any()
    to_test, to_train = one_side(hashes(), hashes(3))
    assert to_test.shape == (0,) and not to_train.any()


def test_one_side_never_moves_the_rows_marked_to_stay():
    train, test = hashes(1, 1, 2, 3), hashes(1, 2, 2, 3)
    stay_train, stay_test = np.array([True, True, False, False]), np.array([True, False, False, False])
    to_test, to_train = one_side(train, test, stay_train, stay_test)    # feature row 1 stays split
    assert to_test.tolist() == [False, False, True, False] and to_train.tolist() == [False, False, False, True]


def test_chance_copies_leaves_out_the_rows_group():
    frame = pd.DataFrame({"a": ["x", "x", "x", "y"], "b": [1.0, 1.0, np.nan, np.nan]})
    h = hashes(10, 10, 20, 30)    # rows 0 and 1 identical
    # row 0: n - g = 2 other rows, a=x in 1 of them, b=1 in none -> 0 (a value only its group has: a copy)
    # row 2: 3 other rows, a=x in 2, missing b in 1 -> 3 * 2/3 * 1/3; row 3: y in none of the others -> 0
    assert chance_copies(frame, ["a", "b"], h) == pytest.approx([0, 0, 2 / 3, 0])
    assert chance_copies(frame.iloc[:0], ["a", "b"], hashes()).shape == (0,)
    assert chance_copies(frame.iloc[:2], ["a", "b"], h[:2]).tolist() == [0, 0]   # nothing else to compare with
    assert 1 - np.exp(-CHANCE_RATE) == pytest.approx(CHANCE)

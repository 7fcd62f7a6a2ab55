"""Repeated rows before training: exact duplicates, identical feature rows with opposite labels, and
feature rows on both sides of the split — whose copies are then moved to one side.

A feature row is identified by a 64-bit hash of its typed feature values in schema order
(``tabpipe.training.holdout.row_hashes``; missing values hash alike); an exact duplicate also has the
same label. A
feature row on both sides of the split lets the test split score rows the model was trained on, so
the evaluation looks better than the model is: ``one_side`` moves every copy of such a feature row to
the side that already holds more of them (the training side on a tie). Rows of feature rows that
occur on one side only never move, so a split without repeats is exactly the seeded, stratified one.

Design notes: docs/training.md#integrity-before-training
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _isin(values: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Mask of ``values`` that occur in ``others`` (a hash table, not a sort)."""
    return pd.Series(values, dtype=np.uint64).isin(others).to_numpy()


def exact_duplicates(hashes: np.ndarray, y: np.ndarray) -> int:
    """Rows that repeat an earlier row's features and label (every copy after the first)."""
    return int(pd.DataFrame({"h": hashes, "y": y}).duplicated().sum())


def conflicting_labels(hashes: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(rows, distinct feature rows) of the feature rows that occur with both labels."""
    labels = pd.Series(y).groupby(hashes, sort=False).agg(["min", "max"])
    conflicted = labels.index[labels["min"].to_numpy() != labels["max"].to_numpy()].to_numpy(dtype=np.uint64)
    return int(_isin(hashes, conflicted).sum()), int(len(conflicted))


def across_split(train: np.ndarray, test: np.ndarray) -> dict[str, int]:
    """How many train rows and test rows have a feature row that also occurs on the other side, and how many
    distinct feature rows that is."""
    in_train, in_test = _isin(train, test), _isin(test, train)
    return {"train_rows": int(in_train.sum()), "test_rows": int(in_test.sum()),
            "feature_rows": int(len(pd.unique(train[in_train])))}


def one_side(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the train rows to move to test, mask of the test rows to move to train) so that every copy of
    a feature row ends on one side: the side holding more of its copies, train on a tie."""
    in_train, in_test = _isin(train, test), _isin(test, train)
    if not in_train.any():
        return in_train, in_test
    train_copies = pd.Series(train[in_train], dtype=np.uint64).value_counts()
    test_copies = pd.Series(test[in_test], dtype=np.uint64).value_counts().reindex(train_copies.index)
    to_test = train_copies.index[test_copies.to_numpy() > train_copies.to_numpy()].to_numpy(dtype=np.uint64)
    return _isin(train, to_test), in_test & ~_isin(test, to_test)

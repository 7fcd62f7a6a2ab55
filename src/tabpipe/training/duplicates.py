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


def exact_duplicates(hashes: np.ndarray, y: np.ndarray) -> int:
    """Rows that repeat an earlier row's features and label (every copy after the first)."""
    return int(pd.DataFrame({"h": hashes, "y": y}).duplicated().sum())


def conflicting_labels(hashes: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(rows, distinct feature rows) of the feature rows that occur with both labels."""
    labels = pd.Series(y).groupby(hashes, sort=False).agg(["min", "max"])
    conflicted = labels.index[labels["min"].to_numpy() != labels["max"].to_numpy()].to_numpy(dtype=np.uint64)
    return int(np.isin(hashes, conflicted).sum()), int(len(conflicted))


def across_split(train: np.ndarray, test: np.ndarray) -> dict[str, int]:
    """How many train rows and test rows have a feature row that also occurs on the other side, and how many
    distinct feature rows that is."""
    common = np.intersect1d(train, test)
    return {"train_rows": int(np.isin(train, common).sum()), "test_rows": int(np.isin(test, common).sum()),
            "feature_rows": int(len(common))}


def one_side(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the train rows to move to test, mask of the test rows to move to train) so that every copy of
    a feature row ends on one side: the side holding more of its copies, train on a tie."""
    common = np.intersect1d(train, test)
    if not len(common):
        return np.zeros(len(train), dtype=bool), np.zeros(len(test), dtype=bool)
    in_train, in_test = np.isin(train, common), np.isin(test, common)
    _, train_copies = np.unique(train[in_train], return_counts=True)   # both in common's (sorted) order
    _, test_copies = np.unique(test[in_test], return_counts=True)
    to_test = common[test_copies > train_copies]
    return np.isin(train, to_test), in_test & ~np.isin(test, to_test)

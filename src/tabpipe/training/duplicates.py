"""Repeated rows before training: exact duplicates, identical feature rows with opposite labels, and
feature rows on both sides of the split — whose copies are then moved to one side.

A feature row is identified by a 64-bit hash of its typed feature values in schema order
(``tabpipe.training.holdout.row_hashes``; missing values hash alike); an exact duplicate also has the
same label. A
feature row on both sides of the split lets the test split score rows the model was trained on, so
the evaluation looks better than the model is: ``one_side`` moves every copy of such a feature row to
the side that already holds more of them (the training side on a tie). Rows of feature rows that
occur on one side only never move, so a split without repeats is exactly the seeded, stratified one.

Not every repeat is a copy. With few, coarse columns (a survey's age, sex and education) the same feature row
is shared by many different people: moving those would empty the test split of its most common rows and the
evaluation would measure the model on the rare ones only. ``chance_copies`` gives, per row, how many other rows
would share its feature row by chance if the columns were independent; a repeat that chance explains with
probability ``CHANCE`` or more (a rate of at least ``CHANCE_RATE`` expected chance copies) stays where the
seeded split put it, and is counted apart.

Design notes: docs/training.md#integrity-before-training
"""
from __future__ import annotations

import numpy as np
import pandas as pd


CHANCE = 0.05                          # a repeat more likely than this by chance is not treated as a copy
CHANCE_RATE = float(-np.log1p(-CHANCE))   # expected chance copies λ with P(at least one) = 1 - exp(-λ) = CHANCE


def chance_copies(frame: pd.DataFrame, columns: list[str], hashes: np.ndarray) -> np.ndarray:
    """Per row, the number of rows outside its group of identical feature rows (``hashes``) expected to share its
    values in ``columns`` if the columns were independent: (n - g) times the product of each value's share of its
    column among those n - g rows (missing is one value). The group is left out so that a copy's own values do not
    make it look common. Correlated columns make the true figure higher: this errs towards calling a repeat a copy."""
    n = len(frame)
    group = pd.Series(hashes, dtype=np.uint64).map(pd.Series(hashes, dtype=np.uint64).value_counts()).to_numpy()
    rest = (n - group).astype(float)
    log_share = np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        for column in columns:
            codes, _ = pd.factorize(frame[column], use_na_sentinel=False)
            counts = np.bincount(codes, minlength=1)[codes]
            log_share += np.log((counts - group) / rest)
        expected = rest * np.exp(log_share)
    return np.nan_to_num(expected, nan=0.0)


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


def one_side(train: np.ndarray, test: np.ndarray, stay_train: np.ndarray | None = None,
             stay_test: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the train rows to move to test, mask of the test rows to move to train) so that every copy of
    a feature row ends on one side: the side holding more of its copies, train on a tie. Rows marked in
    ``stay_train`` / ``stay_test`` (repeats chance explains: the same for every row of a feature row) never move."""
    in_train, in_test = _isin(train, test), _isin(test, train)
    if stay_train is not None:
        in_train, in_test = in_train & ~stay_train, in_test & ~stay_test
    if not in_train.any():
        return in_train, in_test
    train_copies = pd.Series(train[in_train], dtype=np.uint64).value_counts()
    test_copies = pd.Series(test[in_test], dtype=np.uint64).value_counts().reindex(train_copies.index)
    to_test = train_copies.index[test_copies.to_numpy() > train_copies.to_numpy()].to_numpy(dtype=np.uint64)
    return _isin(train, to_test), in_test & ~_isin(test, to_test)

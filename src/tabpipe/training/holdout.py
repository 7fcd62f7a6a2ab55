"""Which rows a published model was trained on, so that a later gate never scores it on them.

Design notes: docs/training.md#rows-production-was-trained-on-holdout
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.schema import Schema
from tabpipe.training.duplicates import CHANCE_RATE, chance_copies

TRAIN_ROWS_FILE = "train_rows.npy"


def hash_columns(schema: Schema) -> list[str]:
    """The columns a row's identity is hashed over: features and target, without sensitive columns."""
    return [name for name, spec in schema.columns.items() if spec.role == "feature" and not spec.sensitive] + \
        [schema.target.name]


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row of ``frame`` over ``columns`` (in that order); equal rows hash equal."""
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(dtype=np.uint64)


def write_train_rows(train: pd.DataFrame, schema: Schema, path: Path) -> dict:
    """Write the training rows' hashes to ``path``; the metadata entry that describes them."""
    columns = hash_columns(schema)
    hashes = np.unique(row_hashes(train, columns))
    np.save(path, hashes, allow_pickle=False)
    return {"file": path.name, "columns": columns, "rows": int(len(train)), "distinct": int(len(hashes))}


def unseen_by_production(test: pd.DataFrame, registry, version: str) -> tuple[np.ndarray | None, str]:
    """(mask of the test rows ``version`` was not trained on, note) — mask None when that is unknown."""
    meta = registry.metadata(version)
    entry = meta.get("train_rows")
    if not isinstance(entry, dict) or TRAIN_ROWS_FILE not in meta.get("files", {}):
        return None, f"{version} does not record its training rows: both models scored on the whole test split"
    columns = [str(c) for c in entry.get("columns", [])]
    missing = [c for c in columns if c not in test.columns]
    if not columns or missing:
        return None, (f"{version}'s training rows are hashed over columns the test split lacks "
                      f"({', '.join(missing[:5]) or 'none recorded'}): both models scored on the whole test split")
    hashes = row_hashes(test, columns)
    seen = np.isin(hashes, np.load(registry.fetch(version, TRAIN_ROWS_FILE), allow_pickle=False))
    # a common profile of coarse columns (labels included) repeats by chance: production saw others like it,
    # not this row; it stays in the comparison (docs/training.md#integrity-before-training)
    common = seen & (chance_copies(test, columns, hashes) >= CHANCE_RATE)
    mask = ~seen | common
    note = f"{int((~mask).sum())} of {len(mask)} test rows were {version}'s training rows and are left out"
    if common.any():
        note += (f"; {int(common.sum())} more match its training rows but are common enough to repeat by chance "
                 "and are kept")
    return mask, note

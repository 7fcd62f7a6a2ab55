"""RowFiles: the rows the training stages hand to each other (splits, typed splits, transformed arrays).

Without ``sensitive: true`` columns they are plain files in the run folder, read back by the next
stage and by a resumed run. With sensitive columns the clear rows never reach the disk: they stay in
this process's memory (as parquet / npy bytes, so a stage reads exactly what it would have read from
a file), the run folder gets a copy of each frame with those columns protected by the one rule
(``monitoring.sensitive.Protector``: keyed hash, or left out), and arrays derived from the rows
(scaled, one-hot) are not written at all. A resumed run therefore reads its source again
(``TrainingPipeline`` checks the data fingerprint).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.privacy import Protector


class RowFiles:
    """Writes and reads the stages' row files; see the module docstring."""

    def __init__(self, protector: Protector | None = None):
        self.protector = protector if protector else None   # a protector without columns: plain files
        self._memory: dict[Path, bytes] = {}

    @property
    def sensitive(self) -> frozenset[str]:
        """The schema's sensitive column names (empty without them)."""
        return self.protector.columns if self.protector is not None else frozenset()

    @property
    def in_memory(self) -> bool:
        """True when clear rows are kept in memory only (the schema has sensitive columns)."""
        return self.protector is not None

    def write_frame(self, df: pd.DataFrame, path: Path, *, index: bool = False) -> Path:
        """Store ``df`` under ``path`` (on disk: in clear, or its protected copy)."""
        path = Path(path)
        if self.protector is None:
            df.to_parquet(path, index=index)
            return path
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=index)
        self._memory[path] = buffer.getvalue()
        self.protector.frame(df).to_parquet(path, index=index)
        return path

    def read_frame(self, path: Path) -> pd.DataFrame:
        """The clear frame stored under ``path``."""
        path = Path(path)
        if path in self._memory:
            return pd.read_parquet(io.BytesIO(self._memory[path]))
        self._refuse(path)
        return pd.read_parquet(path)

    def write_array(self, array: np.ndarray, path: Path) -> Path:
        """Store ``array`` under ``path`` (.npy on disk, or in memory only)."""
        path = Path(path)
        if self.protector is None:
            np.save(path, array)
            return path
        buffer = io.BytesIO()
        np.save(buffer, array)
        self._memory[path] = buffer.getvalue()
        return path

    def read_array(self, path: Path) -> np.ndarray:
        """A numpy array written by ``write_array`` (never unpickled)."""
        path = Path(path)
        if path in self._memory:
            return np.load(io.BytesIO(self._memory[path]), allow_pickle=False)
        self._refuse(path)
        return np.load(path, allow_pickle=False)

    def _refuse(self, path: Path) -> None:
        if self.protector is not None:
            raise RuntimeError(f"{path}: the clear rows of a run with sensitive columns are only in the memory of "
                               "the process that made them, and this one did not")

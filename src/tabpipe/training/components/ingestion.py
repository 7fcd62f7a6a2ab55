"""DataIngestion: read the configured source, snapshot it, split train/test (stratified, seeded).

With ``training.include_uploaded_rows`` the rows uploaded with ``POST /data`` (history store table
``training_rows``) are appended after the source's rows, before the split; how many and up to which
store id is recorded in the artifact (run.json). Only the source's columns are kept.

A ``join`` source's parts (its base and each joined table) are each fingerprinted as read, with their
row counts, in the artifact's ``sources``: a resumed run compares them, and lineage shows them.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from tabpipe.training.specs import IngestionArtifact, IngestionConfig
from tabpipe.errors import DataError
from tabpipe.sources import JoinSource, read_tables
from tabpipe.sources.base import describe_source

log = logging.getLogger(__name__)


def fingerprint(df: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and every value (row order matters)."""
    h = hashlib.sha256()
    h.update(repr([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def split(df: pd.DataFrame, target: str, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded split; falls back to a plain split when a class is too rare to stratify.
    Both parts keep the row numbers of ``df`` as their index, so later reports can point at source rows."""
    labels = df[target].astype(str).fillna("__missing__")
    counts = labels.value_counts()
    stratify = labels if len(counts) > 1 and counts.min() >= 2 else None
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=stratify)
    return train, test


class DataIngestion:
    """Read the source, snapshot it, split it (stratified, seeded) and fingerprint it."""
    def __init__(self, config: IngestionConfig):
        self.config = config

    def run(self) -> IngestionArtifact:
        """Write raw, train and test rows into the stage folder."""
        cfg = self.config
        tables = read_tables(cfg.source, cfg.base_dir, environ=cfg.environ)
        df = tables.frame
        sources = source_parts(tables) if isinstance(cfg.source, JoinSource) else ()
        if cfg.target not in df.columns:
            raise DataError(f"the data has no target column {cfg.target!r}; columns are: {', '.join(map(str, df.columns))}")
        if len(df) < 20:
            raise DataError(f"only {len(df)} rows in the data; at least 20 are needed to train and test")
        df.columns = [str(c) for c in df.columns]
        df = df.reset_index(drop=True)  # row numbers 0..n-1 in source order
        log.info("read %d rows x %d columns", len(df), df.shape[1])
        uploaded, through = 0, None
        if cfg.uploaded_rows is not None:
            df, uploaded, through = append_uploaded(df, cfg.uploaded_rows())
        train, test = split(df, cfg.target, cfg.test_size, cfg.seed)
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        paths = {name: cfg.out_dir / f"{name}.parquet" for name in ("raw", "train", "test")}
        for name, frame in (("raw", df), ("train", train), ("test", test)):
            cfg.rows.write_frame(_parquet_ready(frame), paths[name], index=True)
        return IngestionArtifact(
            raw_path=paths["raw"], train_path=paths["train"], test_path=paths["test"],
            n_rows=len(df), n_train=len(train), n_test=len(test), fingerprint=fingerprint(df),
            uploaded_rows=uploaded, uploaded_through_id=through, sources=sources,
        )


def source_parts(tables) -> tuple[dict, ...]:
    """Per part of a joined source: its name, description (credentials hidden), rows and columns as read,
    base rows it matched (joined tables) and fingerprint."""
    return tuple({"name": part.name, "source": describe_source(part.config), "rows": len(part.frame),
                  "columns": int(part.frame.shape[1]), "matched_rows": part.matched,
                  "fingerprint": fingerprint(part.frame)} for part in tables.parts)


def append_uploaded(df: pd.DataFrame, uploaded: pd.DataFrame) -> tuple[pd.DataFrame, int, int | None]:
    """``df`` followed by the uploaded rows (source columns only; a column an upload lacks is missing),
    the number of rows appended and the store id of the last one."""
    if uploaded.empty:
        log.info("no uploaded training rows to append")
        return df, 0, None
    through = int(uploaded.index.max())
    extra = uploaded.reindex(columns=df.columns)
    log.info("appending %d uploaded training rows (store ids up to %d)", len(extra), through)
    return pd.concat([df, extra], ignore_index=True), len(extra), through


def _parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Parquet needs one type per column: mixed object columns (e.g. from MongoDB) are stored as text."""
    fixed = df.copy()
    for name in fixed.columns:
        col = fixed[name]
        if col.dtype == object and col.dropna().map(type).nunique() > 1:
            fixed[name] = col.astype(str).where(col.notna(), np.nan)
    return fixed

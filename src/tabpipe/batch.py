"""Batch scoring of a file: input rows in order + ``prediction`` + ``probability`` (+ ``error``)."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from tabpipe.model import TabularModel
from tabpipe.schema import summarize
from tabpipe.sources import read_file


@dataclass(frozen=True)
class BatchResult:
    rows: int
    scored: int
    problems: str      # readable summary, "" when every row was valid


def score_frame(model: TabularModel, df: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """Rows of ``df`` with prediction/probability; rows breaking the schema get an ``error`` instead."""
    typed, problems = model.check(df)
    errors: dict[int, list[str]] = {}
    for p in problems:
        for row in (p.rows or range(len(df))):
            errors.setdefault(row, []).append(f"{p.column}: {p.message}")
    valid = np.ones(len(df), dtype=bool)
    valid[list(errors)] = False
    proba = np.full(len(df), np.nan)
    proba[valid] = model.predict_proba_typed(typed[valid])
    result = df.reset_index(drop=True).copy()
    result["prediction"] = pd.Series(model.labels_for(proba[valid]), index=np.flatnonzero(valid)).reindex(range(len(df)))
    result["probability"] = proba
    if errors:
        result["error"] = pd.Series({row: "; ".join(msgs) for row, msgs in errors.items()}).reindex(range(len(df)))
    return result, problems


def read_csv_bytes(data: bytes) -> pd.DataFrame:
    """Parse CSV bytes with Arrow's multi-threaded reader (several times faster than pandas' C parser).
    Raises ValueError for unreadable CSV and for repeated column names."""
    frame = pd.read_csv(io.BytesIO(data), engine="pyarrow")
    repeated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"repeated column names: {', '.join(map(str, repeated))}")
    return frame


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV bytes written by Arrow (about 10x faster than ``DataFrame.to_csv`` on 100k rows)."""
    sink = io.BytesIO()
    pa_csv.write_csv(pa.Table.from_pandas(df, preserve_index=False), sink)
    return sink.getvalue()


def score_file(model: TabularModel, input_path: Path, output_path: Path,
               on_scored: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None) -> BatchResult:
    """Score a file into ``output_path``; ``on_scored(input_rows, scored_rows)`` is called once after
    scoring (the prediction log)."""
    df = read_file(Path(input_path))
    scored, problems = score_frame(model, df)
    if on_scored is not None:
        on_scored(df, scored)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix.lower() == ".parquet":
        scored.to_parquet(output_path, index=False)
    else:
        output_path.write_bytes(to_csv_bytes(scored))
    return BatchResult(rows=len(df), scored=int(scored["probability"].notna().sum()), problems=summarize(problems))

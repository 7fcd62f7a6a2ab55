"""Read a CSV or Parquet file into a DataFrame; every expected failure is a DataError naming the file."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tabpipe.errors import DataError

_EXTENSIONS = {
    ".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv", ".csv.xz": "csv", ".csv.zip": "csv",
    ".csv.zst": "csv", ".parquet": "parquet", ".pq": "parquet",
}


def read_file(path: Path, format: str = "auto", sep: str = ",") -> pd.DataFrame:
    """Read a CSV or Parquet file; DataError if it is missing, unreadable, of unknown type or empty."""
    if format not in ("auto", "csv", "parquet"):
        raise ValueError(f"format must be 'auto', 'csv' or 'parquet', not {format!r}")
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        reason = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {reason}: {path}")
    kind = _file_kind(path) if format == "auto" else format
    try:
        frame = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {kind} file {path}: {exc}") from exc
    if frame.empty:
        raise DataError(f"data file has no rows: {path}")
    return frame


def _file_kind(path: Path) -> str:
    """Map a file's extension to ``csv`` or ``parquet``; DataError for anything else."""
    name = path.name.lower()
    for suffix, kind in _EXTENSIONS.items():
        if name.endswith(suffix):
            return kind
    known = ", ".join(_EXTENSIONS)
    raise DataError(f"unknown data file extension for {path} (known: {known}; or set format: csv|parquet)")

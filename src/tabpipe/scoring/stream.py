"""A CSV or Parquet file read a chunk of rows at a time (``tabpipe predict``), and the pieces that make scoring
it chunk by chunk give what scoring it whole gives: memory flat in the file's length.

- CSV: two passes with Arrow's streaming reader. The first reads every value as text and settles each
  column's type over the *whole* file, as ``pandas.read_csv`` (what ``read_file`` reads) types it: int64 when
  every value is an integer and none is missing, float64 when every value is a number (or the column is
  empty), bool for True/False text without gaps, text otherwise; pandas' missing-value spellings are
  missing. The second reads the chunks with those types, so every chunk has the same columns and types, and
  a column with one unreadable number is text in every chunk (that row is refused by the schema check
  alone, as in a small file; ``read_file`` gave such a long file a column of mixed objects and failed).
- Parquet: one row group slice (``CHUNK_ROWS``) at a time, pandas' index columns left out as
  ``pd.read_parquet`` + ``reset_index(drop=True)`` left them.
- ``ProblemTally``: the problems of the chunks, rows counted from the file's start, in the order the schema
  check lists them for the whole file; ``ChunkWriter``: output chunks appended to ``<output>.part``, renamed
  into place when every chunk is written.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tabpipe.errors import DataError
from tabpipe.schema import Problem, Schema, rules_for

CHUNK_BYTES = 8 << 20     # CSV bytes per chunk (about 80,000 rows of 16 columns)
CHUNK_ROWS = 65_536       # Parquet rows per chunk
# pandas.read_csv's default missing-value spellings (pandas.io.parsers STR_NA_VALUES)
PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
TRUE_TEXT, FALSE_TEXT = ["True", "TRUE", "true"], ["False", "FALSE", "false"]
STREAMED_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")      # what Arrow decompresses as it reads
PARQUET = (".parquet", ".pq")


def streamable(path: Path) -> bool:
    """True for the files read here in chunks (CSV, plain or gzip/bzip2/zstd, and Parquet)."""
    name = Path(path).name.lower()
    return name.endswith(STREAMED_CSV + PARQUET)


def _csv_stream(path: Path, types: dict[str, pa.DataType] | None, block_bytes: int) -> pa_csv.CSVStreamingReader:
    convert = pa_csv.ConvertOptions(null_values=PANDAS_NA, strings_can_be_null=True, true_values=TRUE_TEXT,
                                    false_values=FALSE_TEXT, column_types=types or {})
    return pa_csv.open_csv(pa.input_stream(str(path), compression="detect"),
                           read_options=pa_csv.ReadOptions(block_size=block_bytes), convert_options=convert)


# the lattice of a column's type over the chunks seen: a column is text as soon as one value needs it
_ORDER = {"null": 0, "int": 1, "float": 2}


def _join(kind: str, seen: str) -> str:
    if kind == seen:
        return kind
    if {kind, seen} <= set(_ORDER):
        return max(kind, seen, key=_ORDER.get)
    if "null" in (kind, seen):
        return kind if seen == "null" else seen
    return "text"


# what a chunk's text must all match to be read as a number: tested first, because a failing cast is slow
_PATTERNS = {"int": r"^[+-]?\d+$",
             "float": r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?i:inf|infinity|nan)$"}
_ARROW = {"int": pa.int64(), "float": pa.float64()}
_CANDIDATES = {"null": ("int", "float", "bool"), "int": ("int", "float"), "float": ("float",), "bool": ("bool",),
               "text": ()}


def _kind(values: pa.Array, seen: str) -> str:
    """The narrowest type of one chunk's non-missing text values that can still join ``seen``."""
    if len(values) == 0:
        return "null"
    for kind in _CANDIDATES[seen]:       # what the column can still become, narrowest first
        if kind == "bool":
            if pc.all(pc.is_in(values, pa.array(TRUE_TEXT + FALSE_TEXT))).as_py():
                return "bool"
            continue
        if not pc.all(pc.match_substring_regex(values, _PATTERNS[kind])).as_py():
            continue
        try:
            pc.cast(values, _ARROW[kind])
            return kind
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return "text"


def csv_column_types(path: Path, block_bytes: int = CHUNK_BYTES) -> tuple[dict[str, pa.DataType], int]:
    """(column -> Arrow type as pandas would read the whole file, rows); the first of the two passes.

    Arrow's reader types the columns from the first chunk and reads the rest with those types; when that
    succeeds (the usual file), those are the types (dates and times read as text, as pandas leaves them; an
    integer column with a gap as float64). When a later chunk does not fit them, every value is read as
    text and each column's type settled over the whole file (``_text_column_types``)."""
    try:
        reader = _csv_stream(path, None, block_bytes)
        gaps, rows = set(), 0
        for batch in reader:
            rows += batch.num_rows
            gaps.update(name for name, column in zip(batch.schema.names, batch.columns) if column.null_count)
    except pa.ArrowInvalid:
        return _text_column_types(path, block_bytes)
    types = {}
    for field in reader.schema:
        kind = field.type
        if pa.types.is_null(kind) or pa.types.is_floating(kind) or pa.types.is_integer(kind) and field.name in gaps:
            types[field.name] = pa.float64()
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            types[field.name] = kind
        else:
            types[field.name] = pa.string()
    return types, rows


def _text_column_types(path: Path, block_bytes: int) -> tuple[dict[str, pa.DataType], int]:
    """``csv_column_types`` of a file whose chunks do not all fit the first one's types: every value read as text."""
    names = _csv_stream(path, None, 1 << 16).schema.names
    reader = _csv_stream(path, {name: pa.string() for name in names}, block_bytes)
    seen, gaps, rows = dict.fromkeys(names, "null"), dict.fromkeys(names, False), 0
    for batch in reader:
        rows += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            if seen[name] == "text":
                continue
            present = column.drop_null()
            gaps[name] = gaps[name] or len(present) < len(column)
            seen[name] = _join(_kind(present, seen[name]), seen[name])
    types = {}
    for name in names:
        kind = seen[name]
        if kind == "int" and gaps[name] or kind in ("null", "float"):
            types[name] = pa.float64()      # pandas: an integer column with a gap is float64, an empty one too
        elif kind == "int":
            types[name] = pa.int64()
        elif kind == "bool":
            types[name] = pa.bool_()
        else:
            types[name] = pa.string()
    return types, rows


def iter_csv(path: Path, types: dict[str, pa.DataType], block_bytes: int = CHUNK_BYTES) -> Iterator[pa.Table]:
    """The file's rows, a chunk of about ``block_bytes`` of CSV at a time, every chunk typed by ``types``."""
    for batch in _csv_stream(path, types, block_bytes):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


_INDEX = re.compile(r"__index_level_\d+__")


def _parquet_index(schema: pa.Schema) -> list[str]:
    """pandas' stored index columns (``pd.read_parquet`` makes them the index, dropped by the batch path)."""
    meta = schema.pandas_metadata or {}
    named = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    return named + [n for n in schema.names if _INDEX.fullmatch(n) and n not in named]


def parquet_columns(path: Path) -> tuple[list[str], int]:
    """(the columns ``iter_parquet`` yields, rows), from the file's footer."""
    meta = pq.read_metadata(str(path))
    schema = meta.schema.to_arrow_schema()
    index = set(_parquet_index(schema))
    return [n for n in schema.names if n not in index], meta.num_rows


def iter_parquet(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The file's rows, ``chunk_rows`` at a time, without pandas' index columns (pandas metadata kept otherwise)."""
    with pq.ParquetFile(str(path)) as file:
        columns, _ = parquet_columns(path)
        meta = file.schema_arrow.pandas_metadata
        metadata = None
        if meta is not None:   # the index is gone: tell pandas so, keep the column dtypes it recorded
            meta = {**meta, "index_columns": [], "columns": [c for c in meta.get("columns", [])
                                                             if c.get("field_name") in columns]}
            metadata = {b"pandas": json.dumps(meta).encode()}
        for batch in file.iter_batches(batch_size=chunk_rows, columns=columns):
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                yield table.replace_schema_metadata(metadata) if metadata else table


class ProblemTally:
    """The problems of consecutive chunks as ``coerce_frame`` would list them for the whole table: one problem
    per (column, rule, message, hardness), rows counted from the table's start, ordered as the schema check
    lists them (schema column order; a column's unreadable values first, in order of first appearance, then
    its rules in their order)."""

    def __init__(self, schema: Schema | None = None):
        self.rows = self.scored = 0
        self.merged: dict[tuple, list] = {}
        self.columns = {name: i for i, name in enumerate(schema.columns)} if schema is not None else {}
        self.rule_rank = {name: {(r.rule, r.message(spec)): 1 + i for i, r in enumerate(rules_for(spec))}
                          for name, spec in schema.columns.items()} if schema is not None else {}

    def add(self, problems: list[Problem], rows: int, scored: int) -> None:
        """One chunk's problems (rows counted in the chunk), rows and scored rows."""
        for p in problems:
            self.merged.setdefault((p.column, p.rule, p.message, p.hard), []).extend(r + self.rows for r in p.rows)
        self.rows += rows
        self.scored += scored

    def problems(self) -> list[Problem]:
        """The merged problems, in the whole table's order."""
        def rank(item: tuple[int, tuple]) -> tuple:
            first_seen, (column, rule, message, _) = item
            return (self.columns.get(column, len(self.columns)), self.rule_rank.get(column, {}).get((rule, message), 0),
                    first_seen)
        keys = [key for _, key in sorted(enumerate(self.merged), key=rank)] if self.columns else list(self.merged)
        return [Problem(column, rule, message, tuple(self.merged[(column, rule, message, hard)]), hard)
                for column, rule, message, hard in keys]


class ChunkWriter:
    """Tables appended to ``<path>.part`` (Parquet or CSV by the suffix of ``path``), renamed to ``path`` by
    ``commit``; ``abandon`` removes the part file. Every table is cast to the first one's schema."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.parquet = self.path.suffix.lower() == ".parquet"
        self.writer = None
        self.schema: pa.Schema | None = None

    def _open(self, schema: pa.Schema) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.writer = (pq.ParquetWriter(str(self.part), schema) if self.parquet
                       else pa_csv.CSVWriter(str(self.part), schema))

    def write(self, table: pa.Table | None) -> None:
        """Append ``table``'s rows (nothing for None or no rows)."""
        if table is None or table.num_rows == 0:
            return
        if self.writer is None:
            self._open(table.schema.remove_metadata() if not self.parquet else table.schema)
        if table.schema != self.schema:
            table = table.replace_schema_metadata(self.schema.metadata).cast(self.schema)
        self.writer.write_table(table)

    def commit(self, fallback_schema: pa.Schema | None = None) -> None:
        """Close and rename into place (no rows written: an empty file with ``fallback_schema``'s columns)."""
        if self.writer is None:
            if fallback_schema is None:
                raise DataError(f"nothing to write to {self.path}")
            self._open(fallback_schema)
        self.writer.close()
        os.replace(self.part, self.path)

    def abandon(self) -> None:
        """Close and remove the part file (an error stopped the scoring)."""
        if self.writer is not None:
            self.writer.close()
        self.part.unlink(missing_ok=True)

"""Batch scoring of a table: input rows in order + ``prediction``, ``probability``, ``score``, ``warnings``, ``error``.

``probability`` is the model's calibrated P(positive), ``score`` its raw estimator output (``TabularModel``).

Every row that can be scored is scored. A row that breaks a hard rule of the schema (a value that
cannot be read as its type, or a rule the column lists under ``hard:``) gets an ``error`` text and
no prediction; a row that only breaks expectations (range, category list, ``nullable: false``) is
scored as it is and its ``warnings`` text names field and rule. A table without one of the model's
feature columns cannot be scored at all: ``MissingColumns`` names them (never one error per row).
"""
from __future__ import annotations

import csv
import io
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from tabpipe.errors import DataError
from tabpipe.model import TabularModel
from tabpipe.schema import Problem, absent_columns, problem_rows, summarize, warning_counts
from tabpipe.scoring import stream
from tabpipe.scoring.matrix import BLOCK_ROWS, MatrixScorer
from tabpipe.sources import read_file

ROW_TEXT_ITEMS = 3   # per row, the warnings/error text names at most this many fields, then "(+k more)"


class MissingColumns(DataError):
    """The table lacks feature columns of the model's schema, so no row can be scored."""

    def __init__(self, columns: list[str], where: str = "the data"):
        self.columns = columns
        super().__init__(f"{where} has no column{'s' if len(columns) != 1 else ''} {', '.join(columns)} "
                         f"(every feature of the model's schema is needed; leave values empty for missing ones)")


@dataclass(frozen=True)
class BatchResult:
    """Counts of a scored table: rows, rows scored, the hard problems as text, warnings per column and rule."""
    rows: int
    scored: int
    errors: str                                  # readable summary of the hard problems, "" when every row was scored
    warning_counts: dict[str, dict[str, int]] = field(default_factory=dict)   # {column: {rule: rows}}
    rows_with_warnings: int = 0


@dataclass(frozen=True)
class Scored:
    """What scoring a table adds to its rows: per row the probability (NaN: not scored), the label (meaningless
    where the probability is NaN), the warnings and error texts (None: none), every problem found, and the
    raw score the probability is calibrated from (None: the same as ``proba``)."""
    proba: np.ndarray
    labels: np.ndarray
    warnings: list
    errors: list
    problems: list[Problem]
    reasons: dict = field(default_factory=dict)   # explain columns (name -> (n,) values), when asked for
    score: np.ndarray | None = None

    @property
    def raw(self) -> np.ndarray:
        """Per row the raw score (NaN: not scored)."""
        return self.proba if self.score is None else self.score

    @property
    def scored(self) -> int:
        """Rows with a probability."""
        return int(np.count_nonzero(~np.isnan(self.proba)))


def _row_texts(problems: list[Problem], n: int) -> list:
    """Per row "field (rule): message; ... (+k more)" (at most ROW_TEXT_ITEMS items), None for a row without any."""
    items: dict[int, list[str]] = {}
    for p in problems:
        text = p.text
        for row in p.rows:
            items.setdefault(row, []).append(text)
    out: list = [None] * n
    for row, texts in items.items():
        out[row] = "; ".join(texts[:ROW_TEXT_ITEMS]) + (f" (+{len(texts) - ROW_TEXT_ITEMS} more)"
                                                        if len(texts) > ROW_TEXT_ITEMS else "")
    return out


def score_rows(model: TabularModel, df: pd.DataFrame, explain: int = 0) -> Scored:
    """Score the rows of ``df`` (in order); ``MissingColumns`` when a feature column is absent.

    ``explain`` k > 0: each scored row's top k reasons too (``explained``; ``NotExplainable`` for a model
    whose estimator is not explained)."""
    absent = absent_columns(df.columns, model.schema)
    if absent:
        raise MissingColumns(absent)
    typed, problems = model.check(df)
    n = len(df)
    score = scores(model, typed, problems)
    proba = model.calibrate(score)
    reasons = explained(model, typed, ~np.isnan(proba), explain) if explain > 0 else {}
    return Scored(proba, model.labels_for(proba), _row_texts([p for p in problems if not p.hard], n),
                  _row_texts([p for p in problems if p.hard], n), problems, reasons, score)


def explained(model: TabularModel, typed: pd.DataFrame, valid: np.ndarray, k: int,
              block_rows: int = BLOCK_ROWS) -> dict[str, np.ndarray]:
    """The reason columns (``Reasons.table``) of the ``valid`` rows of ``typed``, k per row, a block at a time."""
    from tabpipe.scoring.explain import explainer_for

    explainer = explainer_for(model)
    at = np.flatnonzero(valid)
    blocks = [at[start:start + block_rows] for start in range(0, len(at), block_rows)] or [at]
    parts = [explainer.explain(model.preprocessor.transform(typed.iloc[rows])).table(k, np.arange(len(rows)), len(rows))
             if len(rows) else explainer.empty_table(k) for rows in blocks]
    out = {}
    for name in parts[0]:
        chunks = [part[name] for part in parts]
        column = np.full(len(typed), None if chunks[0].dtype == object else np.nan, dtype=chunks[0].dtype)
        column[at] = np.concatenate(chunks)
        out[name] = column
    return out


def score_frame(model: TabularModel, df: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Rows of ``df`` (in order) with prediction/probability/score/warnings/error, and every problem found.

    Raises ``MissingColumns`` when a feature column is absent."""
    scored = score_rows(model, df)
    n = len(df)
    valid = ~np.isnan(scored.proba)
    result = df.reset_index(drop=True).copy()
    result["prediction"] = pd.Series(scored.labels[valid], index=np.flatnonzero(valid)).reindex(range(n))
    result["probability"] = scored.proba
    result["score"] = scored.raw
    result["warnings"] = pd.Series(scored.warnings, dtype=object).where(pd.notna(scored.warnings), np.nan)
    result["error"] = pd.Series(scored.errors, dtype=object).where(pd.notna(scored.errors), np.nan)
    return result, scored.problems


OUTPUT_COLUMNS = ("prediction", "probability", "score", "warnings", "error")


def scored_table(rows: pa.Table, scored: Scored) -> pa.Table:
    """``rows`` (the input as read) followed by the output columns, built in Arrow: the table ``score_frame``'s
    frame converts to, without a pandas copy of the input. A column named like an output is replaced in place."""
    columns = {"prediction": pa.array(scored.labels, mask=np.isnan(scored.proba)),
               "probability": pa.array(scored.proba, from_pandas=True),
               "score": pa.array(scored.raw, from_pandas=True),
               "warnings": pa.array(scored.warnings, type=pa.string()),
               "error": pa.array(scored.errors, type=pa.string())}
    columns.update({name: pa.array(values, type=pa.string() if values.dtype == object else pa.float64(),
                                   from_pandas=True) for name, values in scored.reasons.items()})
    table = rows.replace_schema_metadata(None)
    for name in [*OUTPUT_COLUMNS, *scored.reasons]:
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, columns[name]) if at >= 0 else table.append_column(name, columns[name])
    return table


def probabilities(model: TabularModel, typed: pd.DataFrame, problems: list[Problem],
                  block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """(n,) calibrated positive-class probabilities of rows typed by ``model.check``; NaN for a row that breaks
    a hard rule. Equal to ``model.predict_proba_typed`` on the valid rows (to 1e-12, tested)."""
    return model.calibrate(scores(model, typed, problems, block_rows))


def scores(model: TabularModel, typed: pd.DataFrame, problems: list[Problem],
           block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """(n,) raw scores of rows typed by ``model.check``; NaN for a row that breaks a hard rule.

    Equal to ``model.score_typed`` on the valid rows (to 1e-12, tested), computed a block of rows at a
    time (preprocessing included: bounded temporaries) by the estimator's ``MatrixScorer``."""
    valid = np.ones(len(typed), dtype=bool)
    for p in problems:
        if p.hard:
            valid[list(p.rows)] = False
    proba = np.full(len(typed), np.nan)
    rows = typed if valid.all() else typed[valid]
    if len(rows) == 0:
        return proba
    scorer = matrix_scorer(model.estimator)
    positive = np.empty(len(rows))
    for start in range(0, len(rows), block_rows):
        positive[start:start + block_rows] = scorer(model.preprocessor.transform(rows.iloc[start:start + block_rows]))
    proba[valid] = positive
    return proba


_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def matrix_scorer(estimator) -> MatrixScorer:
    """The estimator's ``MatrixScorer``, compiled once per estimator object."""
    scorer = _SCORERS.get(estimator)
    if scorer is None:
        scorer = _SCORERS[estimator] = MatrixScorer(estimator)
    return scorer


def summary(problems: list[Problem], rows: int, scored: int) -> BatchResult:
    """Counts for a scored table: rows, rows scored, the hard problems as text, warnings per column and rule."""
    return BatchResult(rows=rows, scored=scored, errors=summarize([p for p in problems if p.hard]),
                       warning_counts=warning_counts(problems), rows_with_warnings=len(problem_rows(problems, hard=False)))


class TooManyRows(ValueError):
    """A table longer than the configured limit (checked before any row is converted or scored)."""

    def __init__(self, rows: int, limit: int):
        self.rows, self.limit = rows, limit
        super().__init__(f"{rows} rows; the limit is {limit}")


HEADER_SCAN_BYTES = 1 << 20


def _check_header(data: bytes, max_columns: int) -> None:
    """ValueError when the header line is longer than 1 MiB or names more than ``max_columns`` columns:
    a few hundred kB of commas would otherwise become a frame of 100,000 columns (GBs of overhead)."""
    end = data.find(b"\n", 0, HEADER_SCAN_BYTES)
    if end < 0 and len(data) > HEADER_SCAN_BYTES:
        raise ValueError(f"the header line is longer than {HEADER_SCAN_BYTES // 1024} KiB")
    header = data[: end if end >= 0 else len(data)]
    if header.count(b",") + 1 > max_columns:  # quoted commas can only over-count: the exact count is lower
        columns = len(next(csv.reader([header.decode("utf-8", errors="replace")]), []))
        if columns > max_columns:
            raise ValueError(f"the CSV has {columns} columns; at most {max_columns} are accepted")


def read_csv_bytes(data: bytes, *, max_rows: int | None = None, required: list[str] | tuple = (),
                   max_columns: int = 1000) -> pd.DataFrame:
    """``read_csv_table`` as a DataFrame."""
    return read_csv_table(data, max_rows=max_rows, required=required, max_columns=max_columns).to_pandas()


def read_csv_table(data: bytes, *, max_rows: int | None = None, required: list[str] | tuple = (),
                   max_columns: int = 1000) -> pa.Table:
    """Parse CSV bytes with Arrow's multi-threaded reader (several times faster than pandas' C parser).

    Checked on Arrow's compact columns, before any Python object per value exists, in this order:
    ValueError for unreadable CSV and repeated column names, ``MissingColumns`` when a ``required``
    column is absent from the header, ``TooManyRows`` above ``max_rows``."""
    _check_header(data, max_columns)
    table = pa_csv.read_csv(io.BytesIO(data))
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if binary:  # Arrow keeps bytes that are not UTF-8 as binary: refuse them here, not when writing the answer
        raise ValueError(f"the CSV is not UTF-8 text (column {binary[0]!r}); save it as UTF-8")
    names = table.column_names
    if len(set(names)) != len(names):
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        raise ValueError(f"repeated column names: {', '.join(repeated[:20])}")
    present = set(names)
    absent = [name for name in required if name not in present]
    if absent:
        raise MissingColumns(absent, "the CSV header")
    if max_rows is not None and table.num_rows > max_rows:
        raise TooManyRows(table.num_rows, max_rows)
    return table


def to_csv_bytes(df: pd.DataFrame | pa.Table) -> bytes:
    """CSV bytes written by Arrow (about 10x faster than ``DataFrame.to_csv`` on 100k rows)."""
    sink = io.BytesIO()
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    pa_csv.write_csv(table, sink)
    return sink.getvalue()


OnScored = Callable[[pd.DataFrame, Scored, int], None]


def score_file(model: TabularModel, input_path: Path, output_path: Path, on_scored: OnScored | None = None, *,
               chunk_bytes: int = stream.CHUNK_BYTES, chunk_rows: int = stream.CHUNK_ROWS,
               explain: int = 0) -> BatchResult:
    """Score a CSV/Parquet file into ``output_path`` (.csv or .parquet); MissingColumns writes nothing.

    CSV (plain, gzip, bzip2, zstd) and Parquet are read, scored and written a chunk at a time
    (``scoring/stream.py``: about ``chunk_bytes`` of CSV or ``chunk_rows`` Parquet rows), so memory does
    not grow with the file; the output is what scoring the whole file at once writes, renamed into place
    when complete. ``on_scored(input_rows, scored, first_row)`` is called for each chunk after scoring it
    (the prediction log), ``first_row`` being the chunk's first row in the file. ``explain`` k > 0 adds each
    scored row's top k reasons (``explained``)."""
    input_path = Path(input_path)
    if not input_path.is_file() or not stream.streamable(input_path):
        return _score_whole_file(model, input_path, output_path, on_scored, explain)
    if input_path.stat().st_size == 0:
        raise DataError(f"data file is empty: {input_path.absolute()}")
    try:
        if input_path.name.lower().endswith(stream.PARQUET):
            names, rows = stream.parquet_columns(input_path)
            chunks = stream.iter_parquet(input_path, chunk_rows)
        else:
            types, rows = stream.csv_column_types(input_path, chunk_bytes)
            names, chunks = list(types), stream.iter_csv(input_path, types, chunk_bytes)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read file {input_path}: {exc}") from exc
    if not names:
        raise DataError(f"data file is empty: {input_path}")
    absent = absent_columns(names, model.schema)
    if absent:
        raise MissingColumns(absent, str(input_path))
    if rows == 0:
        raise DataError(f"data file has no rows: {input_path}")
    out, tally = stream.ChunkWriter(Path(output_path)), stream.ProblemTally(model.schema)
    try:
        for table in chunks:
            frame = table.to_pandas()
            scored = score_rows(model, frame, explain)
            if on_scored is not None:
                on_scored(frame, scored, tally.rows)
            out.write(scored_table(table, scored))
            tally.add(scored.problems, len(frame), scored.scored)
        out.commit()
    except pa.ArrowException as exc:
        out.abandon()
        raise DataError(f"cannot read file {input_path}: {exc}") from exc
    except BaseException:
        out.abandon()
        raise
    return summary(tally.problems(), tally.rows, tally.scored)


def _score_whole_file(model: TabularModel, input_path: Path, output_path: Path,
                      on_scored: OnScored | None, explain: int = 0) -> BatchResult:
    """The whole file in memory: the formats Arrow does not stream (.csv.xz, .csv.zip)."""
    df = read_file(input_path)
    try:
        scored = score_rows(model, df, explain)
    except MissingColumns as exc:
        raise MissingColumns(exc.columns, str(input_path)) from None
    if on_scored is not None:
        on_scored(df, scored, 0)
    table = scored_table(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False), scored)
    out = stream.ChunkWriter(Path(output_path))
    try:
        out.write(table)
        out.commit(table.schema)
    except BaseException:
        out.abandon()
        raise
    return summary(scored.problems, len(df), scored.scored)

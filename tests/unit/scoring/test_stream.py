"""``score_file`` chunk by chunk (tabpipe.scoring.stream) against scoring the whole file at once.

The output of a file scored in many small chunks is byte for byte the output of the same file in one chunk,
and, for a file pandas reads with one type per column, the output the whole-frame path (``read_file`` +
``score_frame`` + Arrow's CSV writer) writes; the counts and the problems (rows counted from the file's start,
in the schema check's order) are the whole file's. Memory is flat by construction: no chunk handed to the
scorer holds more rows than a chunk, and chunks go by one at a time. Column types are pandas' for the whole
file, also when a late chunk holds a value the first chunk's types cannot read.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
from tabpipe.schema import coerce_frame
from tabpipe.scoring import batch, stream
from tabpipe.sources import read_file

COPIES = 8   # the probe records, repeated: a file of ~1,800 rows


@pytest.fixture(scope="module")
def model(table):
    est = WeightedMean.of_fitted([LinearBoostingBlend(max_iter=30, random_state=0).fit(table.X, table.y),
                                  SplineLogisticRegression().fit(table.X, table.y)], [0.5, 0.5])
    return table.model(est)


def frame_of(table, *, broken: bool = True) -> pd.DataFrame:
    df = pd.DataFrame.from_records(table.records * COPIES)
    if broken:   # hard problems and expectations spread over the file, a new kind of problem late in it
        df.loc[[3, 700, 1500], "users"] = -5                          # range: scored with a warning
        df.loc[[10, 1200], "region"] = "atlantis"                     # category: warning
        df.loc[[20, 1550], "seen_at"] = "not a date"                  # type: refused
        df.loc[1590, "backup"] = "maybe"                              # type: refused, only in the last chunk
    return df


def write(df: pd.DataFrame, path) -> None:
    df.to_csv(path, index=False)


def test_chunked_output_is_the_one_chunk_output(model, table, tmp_path):
    write(frame_of(table), tmp_path / "in.csv")
    one = batch.score_file(model, tmp_path / "in.csv", tmp_path / "one.csv", chunk_bytes=1 << 30)
    many = batch.score_file(model, tmp_path / "in.csv", tmp_path / "many.csv", chunk_bytes=4096)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()
    assert one == many
    assert one.rows == len(table.records) * COPIES and one.scored == one.rows - 3
    assert one.warning_counts["users"]["range"] >= 3 and one.warning_counts["region"]["category"] >= 2
    assert not list(tmp_path.glob("*.part"))


def test_output_is_what_the_whole_frame_path_writes(model, table, tmp_path):
    write(frame_of(table), tmp_path / "in.csv")
    result = batch.score_file(model, tmp_path / "in.csv", tmp_path / "out.csv", chunk_bytes=4096)
    df = read_file(tmp_path / "in.csv")
    scored, problems = batch.score_frame(model, df)
    assert (tmp_path / "out.csv").read_bytes() == batch.to_csv_bytes(scored)
    assert result == batch.summary(problems, len(df), int(scored["probability"].notna().sum()))
    typed, _ = model.check(df)
    ok = scored["probability"].notna().to_numpy()
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["probability"].to_numpy()[ok],
                               model.predict_proba_typed(typed[ok]), rtol=0, atol=1e-9)


def test_tally_lists_problems_as_the_whole_frame_check(model, table):
    df = frame_of(table)
    _, whole = coerce_frame(df, table.schema, with_target=False)
    tally = stream.ProblemTally(table.schema)
    for start in range(0, len(df), 333):
        part = df.iloc[start:start + 333].reset_index(drop=True)
        _, found = coerce_frame(part, table.schema, with_target=False)
        tally.add(found, len(part), 0)
    assert tally.problems() == whole


def test_memory_is_flat_by_construction(model, table, tmp_path, monkeypatch):
    write(frame_of(table), tmp_path / "in.csv")
    seen, firsts = [], []
    original = batch.score_rows
    monkeypatch.setattr(batch, "score_rows", lambda m, frame, *rest: seen.append(len(frame)) or original(m, frame, *rest))
    batch.score_file(model, tmp_path / "in.csv", tmp_path / "out.csv", chunk_bytes=8192,
                     on_scored=lambda rows, scored, first: firsts.append(first))
    assert len(seen) > 5 and max(seen) < 200 and sum(seen) == len(table.records) * COPIES
    assert firsts == list(np.cumsum([0, *seen[:-1]]))     # one chunk at a time, rows counted from the start


def as_read(df: pd.DataFrame, tmp_path) -> pd.DataFrame:
    """``df`` as a file holds it: written as CSV and read back (one type per column)."""
    write(df, tmp_path / "frame.csv")
    return pd.read_csv(tmp_path / "frame.csv")


def test_parquet_in_row_chunks_equals_one_chunk(model, table, tmp_path):
    df = as_read(frame_of(table), tmp_path)
    df.index = df.index + 1000                      # pandas stores this index: read_file dropped it, so do chunks
    df.to_parquet(tmp_path / "in.parquet")
    one = batch.score_file(model, tmp_path / "in.parquet", tmp_path / "one.parquet", chunk_rows=1 << 20)
    many = batch.score_file(model, tmp_path / "in.parquet", tmp_path / "many.parquet", chunk_rows=100)
    a, b = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "many.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert one == many and "__index_level_0__" not in a.columns
    assert list(a.columns) == [*df.columns, "prediction", "probability", "score", "warnings", "error"]


def test_column_types_are_pandas_types_of_the_whole_file(tmp_path):
    n = 3000
    df = pd.DataFrame({
        "int": np.arange(n), "gap_int": np.where(np.arange(n) == 2500, np.nan, np.arange(n)),
        "float": np.linspace(0, 1, n), "flag": np.arange(n) % 2 == 0, "text": [f"t{i % 7}" for i in range(n)],
        "when": ["2024-03-01 10:00:00"] * n, "empty": [np.nan] * n,
    })
    df.to_csv(tmp_path / "a.csv", index=False)
    types, rows = stream.csv_column_types(tmp_path / "a.csv", block_bytes=4096)
    assert rows == n
    assert types == {"int": pa.int64(), "gap_int": pa.float64(), "float": pa.float64(), "flag": pa.bool_(),
                     "text": pa.string(), "when": pa.string(), "empty": pa.float64()}
    pandas = pd.read_csv(tmp_path / "a.csv").dtypes
    assert [str(pandas[c]) for c in ("int", "gap_int", "float", "flag")] == ["int64", "float64", "float64", "bool"]


def test_a_late_value_the_first_chunk_types_cannot_read_makes_the_column_text(model, table, tmp_path):
    df = frame_of(table, broken=False)
    df["load"] = df["load"].astype(object)
    df.loc[len(df) - 3, "load"] = "n/a?"            # a number column with one unreadable value, in the last chunk
    write(df, tmp_path / "in.csv")
    types, _ = stream.csv_column_types(tmp_path / "in.csv", block_bytes=4096)
    assert types["load"] == pa.string() and types["bursts"] == pa.float64() and types["band"] == pa.string()
    result = batch.score_file(model, tmp_path / "in.csv", tmp_path / "out.csv", chunk_bytes=4096)
    out = pd.read_csv(tmp_path / "out.csv")
    assert result.scored == len(df) - 1 and out["probability"].isna().sum() == 1
    assert "load (type)" in out.loc[len(df) - 3, "error"]


def test_missing_column_writes_nothing_and_empty_files_are_data_errors(model, table, tmp_path):
    write(frame_of(table).drop(columns=["load"]), tmp_path / "short.csv")
    with pytest.raises(batch.MissingColumns, match="load"):
        batch.score_file(model, tmp_path / "short.csv", tmp_path / "out.csv")
    assert not list(tmp_path.glob("out.csv*"))
    write(frame_of(table).head(0), tmp_path / "header.csv")
    with pytest.raises(batch.DataError, match="no rows"):
        batch.score_file(model, tmp_path / "header.csv", tmp_path / "out.csv")
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(batch.DataError, match="empty"):
        batch.score_file(model, tmp_path / "zero.csv", tmp_path / "out.csv")


def test_scored_table_is_the_score_frame_table(model, table, tmp_path):
    df = as_read(frame_of(table), tmp_path)
    df["prediction"] = "old"                        # an input column named like an output: replaced in place
    rows = pa.Table.from_pandas(df, preserve_index=False)
    scored = batch.score_rows(model, df)
    frame, _ = batch.score_frame(model, df)
    assert batch.to_csv_bytes(batch.scored_table(rows, scored)) == batch.to_csv_bytes(frame)


def test_a_lone_logistic_regression_model_too(table, tmp_path):
    model = table.model(LogisticRegression(max_iter=2000).fit(table.X, table.y))
    write(frame_of(table), tmp_path / "in.csv")
    batch.score_file(model, tmp_path / "in.csv", tmp_path / "a.csv", chunk_bytes=4096)
    batch.score_file(model, tmp_path / "in.csv", tmp_path / "b.csv", chunk_bytes=1 << 30)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()

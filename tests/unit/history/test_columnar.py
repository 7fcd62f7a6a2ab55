"""The columnar log's files: one per (hour, model version), sorted by time, read back by window and column."""
from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabpipe.history.columnar import INPUT, log_table, read_batches, write_partitions

T0 = datetime(2026, 3, 1, 9, 40)


def table(stamps, versions, inputs):
    n = len(stamps)
    return log_table({"request_id": ["r"] * n, "row_index": list(range(n)), "row_id": [f"id{i}" for i in range(n)],
                      "logged_at": stamps, "model_version": versions, "probability": [i / 10 for i in range(n)],
                      "prediction": ["1"] * n, "warnings": ["[]"] * n}, inputs)


def test_one_file_per_hour_and_version_each_sorted_by_time(tmp_path):
    stamps = [T0 + timedelta(minutes=m) for m in (30, 5, 10, 25, 90)]   # 10:10, 09:45, 09:50, 10:05, 11:10
    written = write_partitions(tmp_path, table(stamps, ["v1", "v1", "v2", "v1", "v1"], {"a": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    got = {(f.hour, f.model_version): f for f in written}
    assert set(got) == {(datetime(2026, 3, 1, 9), "v1"), (datetime(2026, 3, 1, 9), "v2"),
                        (datetime(2026, 3, 1, 10), "v1"), (datetime(2026, 3, 1, 11), "v1")}
    ten = got[(datetime(2026, 3, 1, 10), "v1")]
    assert ten.rows == 2 and ten.path.startswith("hour=2026-03-01T10/v1-")
    assert (ten.first_logged_at, ten.last_logged_at) == (T0 + timedelta(minutes=25), T0 + timedelta(minutes=30))
    stored = pq.read_table(tmp_path / ten.path)
    assert stored.column("logged_at").to_pylist() == [T0 + timedelta(minutes=25), T0 + timedelta(minutes=30)]
    assert stored.column(INPUT + "a").to_pylist() == [4.0, 1.0]
    assert sum(f.rows for f in written) == 5
    assert not list(tmp_path.rglob(".*.tmp"))                      # written under a temporary name, then renamed


def test_input_types_inferred_and_mixed_values_kept_as_text(tmp_path):
    inputs = {"n": [1, None, 3], "x": [0.5, float("nan"), 2.0], "flag": [True, False, None], "c": ["a", "b", None],
              "mixed": [1, "two", None], "nested": [{"k": 1}, None, None],
              "when": [pd.Timestamp("2026-03-01 10:00"), None, datetime(2026, 3, 2, 11, 30)]}
    (f,) = write_partitions(tmp_path, table([T0] * 3, ["v1"] * 3, inputs))
    stored = pq.read_table(tmp_path / f.path)
    assert stored.schema.field(INPUT + "n").type == pa.int64()
    assert stored.column(INPUT + "x").to_pylist() == [0.5, None, 2.0]            # NaN stored as null, as JSON null
    assert stored.schema.field(INPUT + "flag").type == pa.bool_()
    assert stored.column(INPUT + "mixed").to_pylist() == ["1", "two", None]
    assert stored.column(INPUT + "nested").to_pylist() == ['{"k": 1}', None, None]
    assert stored.column(INPUT + "when").to_pylist() == ["2026-03-01T10:00:00", None, "2026-03-02T11:30:00"]   # as in JSON


def test_read_batches_projects_columns_and_cuts_the_window(tmp_path):
    stamps = [T0 + timedelta(minutes=m) for m in range(10)]
    (f,) = write_partitions(tmp_path, table(stamps, ["v1"] * 10, {"a": list(range(10)), "b": ["x"] * 10}))
    parts = list(read_batches(tmp_path / f.path, [INPUT + "a", "probability", "absent"],
                              since=stamps[2], until=stamps[7], batch_rows=2))
    assert all(p.column_names == [INPUT + "a", "probability"] for p in parts)   # logged_at read to cut, not returned
    assert [v for p in parts for v in p.column(INPUT + "a").to_pylist()] == [2, 3, 4, 5, 6]
    whole = pa.concat_tables(read_batches(tmp_path / f.path, ["row_id"]))
    assert whole.num_rows == 10


def test_nothing_written_for_no_rows(tmp_path):
    assert write_partitions(tmp_path, table([], [], {})) == []
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("version", ["v0001", "a/b c"])
def test_version_names_are_safe_file_names(tmp_path, version):
    (f,) = write_partitions(tmp_path, table([T0], [version], {"a": [1]}))
    assert (tmp_path / f.path).parent == tmp_path / "hour=2026-03-01T09" and f.model_version == version


def test_ahead_keeps_order_raises_the_workers_error_and_stops_with_the_consumer():
    from tabpipe.history.logread import ahead

    assert list(ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken file")

    got = []
    with pytest.raises(ValueError, match="broken file"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1]
    made = []

    def counted():
        for i in range(1000):
            made.append(i)
            yield i

    stream = ahead(counted(), depth=2)
    assert next(stream) == 0
    stream.close()                    # the consumer stops: the worker stops too, a few items ahead at most
    assert len(made) <= 5


def test_read_batches_reads_text_inputs_as_dictionaries_on_request(tmp_path):
    inputs = {"s": pa.array(["a", None, "b", "a"], pa.string()), "l": pa.array(["x", "y", None, "x"], pa.large_string()),
              "n": [1.0, 2.0, None, 4.0]}
    (f,) = write_partitions(tmp_path, table([T0] * 4, ["v1"] * 4, inputs))
    columns = [INPUT + "s", INPUT + "l", INPUT + "n", "row_id"]
    (plain,) = read_batches(tmp_path / f.path, columns)
    (coded,) = read_batches(tmp_path / f.path, columns, dictionary=True)
    assert [pa.types.is_dictionary(t) for t in coded.schema.types] == [True, True, False, False]   # inputs only
    assert not any(pa.types.is_dictionary(t) for t in plain.schema.types)
    assert all(coded.column(c).to_pylist() == plain.column(c).to_pylist() for c in columns)


def test_batches_whose_types_disagree_are_gathered_as_before():
    """A chunk's batches are concatenated by Arrow (text as Categoricals); when a value was kept as stored (text
    in a number column) the types disagree and each batch is converted and concatenated by pandas, as before."""
    from tabpipe.history.logread import tables_frame, typed_frame

    types = pa.schema([("x", pa.float64()), ("c", pa.string())])
    first = pa.table({"x": pa.array([1.0, None]), "c": pa.array(["a", None]).dictionary_encode()})
    second = pa.table({"x": pa.array(["oops", "2"]), "c": pa.array(["b", "a"], pa.large_string()).dictionary_encode()})
    third = pa.table({"c": pa.array(["c"]).dictionary_encode()})                 # a file without x
    mixed = tables_frame([first, second], [2, 2], types)
    plain = [typed_frame(t, types) for t in (first, second)]
    pd.testing.assert_frame_equal(mixed, pd.concat(plain, ignore_index=True))
    agreed = tables_frame([first, third], [2, 1], types)
    assert isinstance(agreed["c"].dtype, pd.CategoricalDtype)
    assert agreed["c"].astype(object).where(agreed["c"].notna(), None).tolist() == ["a", None, "c"]
    assert agreed["x"].tolist()[:1] == [1.0] and agreed["x"].isna().tolist() == [False, True, True]

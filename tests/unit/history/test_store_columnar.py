"""The history store with the columnar (Parquet) prediction log: the same public API as the SQL log, an index
that lets a window read only its files, outcomes joined on ``row_id``, and old stores migrated from 0004."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tabpipe.history.columnar import INPUT
from tabpipe.history.store import LOG_FILES, HistoryStore, current_revision

T0 = datetime(2026, 3, 1, 9, 40, tzinfo=timezone.utc)


def rows(n: int = 12, *, version: str = "v1", first: int = 0) -> list[dict]:
    return [{"request_id": f"req-{(first + i) // 5}", "row_index": (first + i) % 5,
             "row_id": None if i % 4 == 3 else f"id{first + i}",
             "logged_at": T0 + timedelta(minutes=20 * (first + i)), "model_version": version,
             "inputs": {"x": float(i) if i % 3 else None, "n": i, "c": "ab"[i % 2], "flag": bool(i % 2)},
             "probability": i / 20, "prediction": int(i % 2), "warnings": ["w"] if i == 5 else []}
            for i in range(n)]


@pytest.fixture()
def stores(tmp_path):
    """(SQL log, Parquet log) stores, each in its own folder."""
    (tmp_path / "sql").mkdir()
    (tmp_path / "pq").mkdir()
    sql = HistoryStore.open(f"sqlite:///{tmp_path / 'sql' / 'history.sqlite'}", log_format="sql")
    col = HistoryStore.open(f"sqlite:///{tmp_path / 'pq' / 'history.sqlite'}", log_format="parquet")
    yield sql, col
    sql.close()
    col.close()


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns=["id", "outcome_at"]).reset_index(drop=True).astype(object)
    return out.where(out.notna(), None)


def test_parquet_log_gives_what_the_sql_log_gives(stores):
    sql, col = stores
    for store in stores:
        assert store.log_predictions(rows(12)) == 12
        assert store.log_predictions(rows(3, version="v2", first=12)) == 3
    assert not sql.log_files() and sql.log_dir is not None        # the SQL store wrote no file
    assert col.count_predictions() == sql.count_predictions() == 15
    assert col.count_predictions(version="v2") == sql.count_predictions(version="v2") == 3
    assert col.prediction_summary() == sql.prediction_summary()
    pd.testing.assert_frame_equal(comparable(col.predictions()), comparable(sql.predictions()))
    since, until = T0 + timedelta(minutes=45), T0 + timedelta(hours=3)
    pd.testing.assert_frame_equal(comparable(col.predictions(since=since, until=until, version="v1")),
                                  comparable(sql.predictions(since=since, until=until, version="v1")))
    a, b = (list(s.prediction_chunks(since=since, chunk_rows=4)) for s in stores)
    assert [np.asarray(p).tolist() for _, p, _ in a] != [] and \
        np.concatenate([p for _, p, _ in a]).tolist() == np.concatenate([p for _, p, _ in b]).tolist()
    parsed = [pd.read_json(pd.io.common.StringIO("\n".join(t for chunk in c for t in chunk[0])), lines=True) for c in (a, b)]
    pd.testing.assert_frame_equal(parsed[0], parsed[1])


def test_outcomes_attach_and_join_like_the_sql_log(stores):
    sql, col = stores
    for store in stores:
        store.log_predictions(rows(12))
        store.log_predictions(rows(2, version="v2", first=0))   # id0, id1 logged again by another version
    labels = {"id0": 1, "id1": "0", "id5": 1, "nowhere": 0}
    assert col.attach_outcomes(labels) == sql.attach_outcomes(labels) == 5
    assert col.attach_outcomes({"id2": 1}, version="v2") == sql.attach_outcomes({"id2": 1}, version="v2") == 0
    assert col.attach_outcomes({"id5": 0}) == 1                               # a later label replaces the first
    sql.attach_outcomes({"id5": 0})
    assert col.prediction_summary()["labelled"] == sql.prediction_summary()["labelled"] == 5
    for labelled in (True, False):
        pd.testing.assert_frame_equal(comparable(col.predictions(labelled=labelled, with_inputs=False)),
                                      comparable(sql.predictions(labelled=labelled, with_inputs=False)))
    joined = col.predictions(labelled=True)
    assert sorted(zip(joined["row_id"], joined["outcome"])) == [("id0", "1"), ("id0", "1"), ("id1", "0"),
                                                                ("id1", "0"), ("id5", "0")]
    assert joined["outcome_at"].notna().all()
    outcomes = [o for _, _, chunk in col.columnar_chunks(["x"]) for o in chunk]
    assert sorted(o for o in outcomes if o is not None) == ["0", "0", "0", "1", "1"]
    wanted = ["id0", "id6", "req-0:3", "nowhere"]
    assert col.logged_row_ids(wanted) == sql.logged_row_ids(wanted) == {"id0", "id6", "req-0:3"}


def test_a_window_reads_only_its_files_and_columns(stores, monkeypatch):
    _, col = stores
    col.log_predictions(rows(12))                      # 09:40 .. 13:20: files for hours 9 .. 13
    files = col.log_files()
    assert [f["hour"].hour for f in files] == [9, 10, 11, 12, 13] and sum(f["rows"] for f in files) == 12
    assert all(f["path"].is_absolute() and f["path"].is_file() for f in files)
    since, until = T0 + timedelta(hours=1, minutes=20), T0 + timedelta(hours=2)     # 11:00 .. 11:40
    window = col.log_files(since=since, until=until)
    assert [f["hour"].hour for f in window] == [11]
    opened = []
    real = pq.ParquetFile

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", spy)
    chunks = list(col.columnar_chunks(["x", "c", "not_logged"], since=since, until=until))
    assert opened == [str(window[0]["path"])]
    assert sum(len(p) for _, p, _ in chunks) == 2
    assert all(t.column_names == ["x", "c"] for t, _, _ in chunks)


def test_a_file_the_index_does_not_name_is_never_read(stores):
    _, col = stores
    col.log_predictions(rows(3))
    stray = col.log_dir / "hour=2026-03-01T09" / "v1-stray.parquet"
    pq.write_table(pq.read_table(col.log_files()[0]["path"]), stray)    # e.g. written, then the store failed
    assert col.count_predictions() == 3 and len(col.predictions()) == 3


def test_the_parquet_log_needs_a_folder():
    with pytest.raises(Exception, match="needs a folder"):
        HistoryStore.open("sqlite://", log_format="parquet")


def test_migration_from_0004_keeps_the_sql_rows_readable_next_to_new_files(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    old = HistoryStore.open(url, migrate_to="0004")
    old.log_predictions(rows(6))                                   # a store as revision 0004 left it
    with old.engine.begin() as conn:                               # ... with an outcome its code attached
        conn.execute(sa.text("UPDATE predictions SET outcome = '1', outcome_at = '2026-03-02 00:00:00.000000' "
                             "WHERE row_id = 'id1'"))
    old.close()
    with HistoryStore.open(url, log_format="parquet") as store:
        assert current_revision(store.engine) == "0006"
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(LOG_FILES)).scalar_one() == 0
        store.log_predictions(rows(4, first=6))                    # new rows go to Parquet
        assert len(store.log_files()) > 0 and store.count_predictions() == 10
        assert store.attach_outcomes({"id2": 0, "id7": 1}) == 2    # one old SQL row, one new Parquet row
        logged = store.predictions()
        assert logged["row_index"].tolist() == [r["row_index"] for r in rows(10)]     # oldest first, both kinds
        assert logged["id"].notna().sum() == 6
        assert dict(zip(logged["row_id"], logged["outcome"]))["id1"] == "1"
        assert store.prediction_summary()["labelled"] == 3
        assert store.logged_row_ids(["id0", "id8", "idX"]) == {"id0", "id8"}
        parquet_inputs = pq.read_table(store.log_files()[0]["path"]).column_names
        assert {INPUT + "x", INPUT + "n", INPUT + "c", INPUT + "flag"} <= set(parquet_inputs)


def test_log_chunks_gather_small_files_into_chunks_of_the_same_rows(stores):
    from tabpipe.history.logread import log_chunks, read_window
    from tabpipe.schema import Schema

    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
        "x": {"type": "float"}, "n": {"type": "int"}, "c": {"type": "category"}, "flag": {"type": "bool"}}})
    sql, col = stores
    for store in stores:
        store.log_predictions(rows(12))                     # five files (one per hour) in the Parquet log
        store.attach_outcomes({"id1": 1, "id6": 0})
    chunks = list(log_chunks(col, schema, since=None, until=None, version=None, chunk_rows=5))
    assert [len(c.proba) for c in chunks] == [7, 5]         # files of 1, 3, 3 | 3, 2 rows gathered up to >= 5
    whole = [read_window(s, schema, since=None, until=None, version=None, chunk_rows=5) for s in (sql, col)]
    pd.testing.assert_frame_equal(whole[1].rows, whole[0].rows)
    assert whole[1].proba.tolist() == whole[0].proba.tolist()
    known = [[None if pd.isna(v) else v for v in w.outcomes] for w in whole]
    assert known[1] == known[0] == [None, "1"] + [None] * 4 + ["0"] + [None] * 5


def test_log_chunks_read_text_as_categoricals_that_check_as_the_same_rows(stores):
    """The Parquet log's text columns come as Categoricals (a dictionary per batch, unified per chunk): the
    schema check gives exactly the typed rows and problems of the same rows read from the SQL log."""
    from tabpipe.history.logread import log_chunks
    from tabpipe.schema import Schema, coerce_frame

    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
        "x": {"type": "float"}, "n": {"type": "int"}, "c": {"type": "category", "categories": ["a"]},
        "flag": {"type": "bool"}}})
    sql, col = stores
    for store in stores:
        store.log_predictions(rows(12))
    checked = []
    for store in stores:
        chunks = list(log_chunks(store, schema, since=None, until=None, version=None, chunk_rows=5))
        whole = pd.concat([c.rows for c in chunks], ignore_index=True) if store is sql else None
        checked.append([coerce_frame(c.rows, schema, with_target=False) for c in chunks] if whole is None
                       else [coerce_frame(whole, schema, with_target=False)])
    assert all(isinstance(c.rows["c"].dtype, pd.CategoricalDtype)
               for c in log_chunks(col, schema, since=None, until=None, version=None, chunk_rows=5))
    typed = pd.concat([t for t, _ in checked[1]], ignore_index=True)
    pd.testing.assert_frame_equal(typed, checked[0][0][0])
    unlisted = [(p.rule, p.rows) for _, problems in checked[1] for p in problems if p.column == "c"]
    assert unlisted == [("category", (1, 3, 5)), ("category", (0, 2, 4))]   # the "b" rows, per chunk of 7 | 5
    assert [(p.rule, p.rows) for p in checked[0][0][1] if p.column == "c"] == [("category", (1, 3, 5, 7, 9, 11))]

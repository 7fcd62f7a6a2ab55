"""The history store against SQLite and a real PostgreSQL server: migrations, round trips, concurrency."""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pg_server import empty_url_fixture, free_port, postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)
from tabpipe.history import store as store_module
from tabpipe.history.store import HEAD_REVISION, METADATA, HistoryStore, StoreError, current_revision, store_url

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)




@pytest.fixture
def store(empty_url):
    with HistoryStore.open(empty_url) as opened:
        yield opened


def test_migrations_create_exactly_the_declared_schema(empty_url):
    with HistoryStore.open(empty_url) as opened:
        assert current_revision(opened.engine) == "0006"
        with opened.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    with HistoryStore.open(empty_url) as again:  # opening an up-to-date store changes nothing
        assert current_revision(again.engine) == "0006"


def test_head_revision_is_alembics_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(store_module.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_store_at_head_opens_without_alembic_and_an_older_one_is_still_upgraded(empty_url, monkeypatch):
    HistoryStore.open(empty_url, migrate_to="0005").close()
    calls = []
    real = store_module.migrate
    monkeypatch.setattr(store_module, "migrate", lambda engine, revision: (calls.append(revision), real(engine, revision)))
    with HistoryStore.open(empty_url) as upgraded:               # 0005: Alembic runs
        assert current_revision(upgraded.engine) == HEAD_REVISION
    assert calls == ["head"]
    with HistoryStore.open(empty_url) as again:                  # at head: one query, no Alembic
        assert current_revision(again.engine) == HEAD_REVISION
    with HistoryStore.open(empty_url, migrate_to=HEAD_REVISION):
        pass
    assert calls == ["head"]


def test_upgrade_from_the_first_revision_keeps_logged_rows(empty_url):
    with HistoryStore.open(empty_url, migrate_to="0001") as old:
        assert current_revision(old.engine) == "0001"
        with old.engine.begin() as conn:
            assert "row_id" not in {c["name"] for c in sqlalchemy.inspect(conn).get_columns("predictions")}
            conn.execute(sqlalchemy.text(
                "INSERT INTO predictions (request_id, row_index, logged_at, model_version, probability, prediction) "
                "VALUES ('req1', 3, :at, 'v0001', 0.25, '0')"), {"at": T0.replace(tzinfo=None)})
    with HistoryStore.open(empty_url) as new:
        assert current_revision(new.engine) == "0006"
        logged = new.predictions()
        assert logged[["request_id", "row_index", "row_id", "probability"]].values.tolist() == [["req1", 3, "req1:3", 0.25]]
        assert new.attach_outcomes({"req1:3": 1}) == 1
        assert new.predictions(labelled=True)["outcome"].tolist() == ["1"]


def test_upgrade_from_0003_keeps_runs_and_links_new_ones(empty_url):
    with HistoryStore.open(empty_url, migrate_to="0003") as old, old.engine.begin() as conn:
        assert "trigger_run_id" not in {c["name"] for c in sqlalchemy.inspect(conn).get_columns("runs")}
        conn.execute(sqlalchemy.text("INSERT INTO runs (run_id, kind, status, started_at, model_version) "
                                     "VALUES ('t1', 'train', 'succeeded', :at, 'v0001')"), {"at": T0.replace(tzinfo=None)})
    with HistoryStore.open(empty_url) as new:
        assert current_revision(new.engine) == "0006"
        assert (new.run("t1")["model_version"], new.run("t1")["trigger_run_id"]) == ("v0001", None)
        new.record_run(kind="monitor", run_id="m1", model_version="v0001")
        new.record_run(kind="train", run_id="t2", trigger_run_id="m1")
        assert new.run("t2")["trigger_run_id"] == "m1"


def test_upgrade_from_0004_keeps_sql_rows_readable_next_to_the_parquet_log(empty_url, tmp_path):
    """Revision 0005 adds the columnar log's tables; the rows already in ``predictions`` stay and are read
    (and labelled) together with the new Parquet files."""
    with HistoryStore.open(empty_url, migrate_to="0004") as old, old.engine.begin() as conn:
        assert "log_files" not in sqlalchemy.inspect(conn).get_table_names()
        conn.execute(sqlalchemy.text(
            "INSERT INTO predictions (request_id, row_index, row_id, logged_at, model_version, inputs, probability, "
            "prediction, outcome) VALUES ('old', 0, 'a', :at, 'v0001', '{\"x\": 1.5}', 0.25, '0', '1'), "
            "('old', 1, 'b', :at, 'v0001', '{\"x\": 2.5}', 0.75, '1', NULL)"), {"at": T0.replace(tzinfo=None)})
    with HistoryStore.open(empty_url, log_dir=tmp_path / "log", log_format="parquet") as new:
        assert current_revision(new.engine) == "0006"
        new.log_predictions([{"request_id": "new", "row_index": 0, "row_id": "c", "logged_at": T0 + timedelta(hours=1),
                              "model_version": "v0001", "inputs": {"x": 3.5}, "probability": 0.5, "prediction": 1}])
        assert len(new.log_files()) == 1 and list((tmp_path / "log").rglob("*.parquet"))
        assert new.count_predictions() == 3
        assert new.attach_outcomes({"b": 0, "c": 1}) == 2
        logged = new.predictions()
        assert logged["row_id"].tolist() == ["a", "b", "c"]
        assert logged["outcome"].tolist() == ["1", "0", "1"]
        assert [i["x"] for i in logged["inputs"]] == [1.5, 2.5, 3.5]
        summary = new.prediction_summary()
        assert (summary["logged"], summary["labelled"]) == (3, 3)
        assert new.logged_row_ids(["a", "c", "z"]) == {"a", "c"}


def test_upgrade_from_0005_then_compaction_keeps_the_log_and_its_outcomes(empty_url, tmp_path):
    """Revision 0006 adds only the retired-files table: a 0005 log's files are compacted like new ones, and on
    PostgreSQL as on SQLite a compaction that lost the race to another changes nothing."""
    from tabpipe.history.compaction import compact

    def row(i: int) -> dict:
        return {"request_id": f"r{i}", "row_index": 0, "row_id": f"id{i}", "logged_at": T0 + timedelta(minutes=7 * i),
                "model_version": "v0001", "inputs": {"x": i / 2}, "probability": i / 20, "prediction": i % 2}

    with HistoryStore.open(empty_url, migrate_to="0005", log_dir=tmp_path / "log", log_format="parquet") as old:
        for i in range(12):                                    # one write, one file, each row: 2 hours of files
            old.log_predictions([row(i)])
        old.attach_outcomes({"id1": 1, "id10": 0})
    with HistoryStore.open(empty_url, log_dir=tmp_path / "log", log_format="parquet") as new:
        assert current_revision(new.engine) == "0006"
        before = new.predictions(with_inputs=True)
        listed = new.log_files()
        done = compact(new, now=T0 + timedelta(hours=4))
        assert (done.groups, done.files_before, done.files_after, done.rows) == (2, 12, 2, 12)
        assert len(new.log_files()) == 2
        pd.testing.assert_frame_equal(new.predictions(with_inputs=True), before)
        assert new.predictions(labelled=True)["row_id"].tolist() == ["id1", "id10"]
        assert new.replace_log_files(listed[:1], []) is False       # already replaced: rolled back
        assert len(new.log_files()) == 2
        assert compact(new, now=T0 + timedelta(hours=6)).deleted == 12 and not any(f["path"].exists() for f in listed)


def test_runs_round_trip(store):
    run_id = store.record_run(kind="train", run_id="20260301T000000Z", started_at=T0, source="file data.csv",
                              data_fingerprint="abc123", config_ref="/runs/20260301T000000Z/run.json")
    assert store.run(run_id)["status"] == "running"
    store.finish_run(run_id, status="succeeded", stage_seconds={"ingestion": 0.5, "trainer": 12.25}, rows=1000,
                     model_version="v0001", finished_at=T0 + timedelta(seconds=13))
    record = store.run(run_id)
    assert record["status"] == "succeeded" and record["error"] is None
    assert record["stage_seconds"] == {"ingestion": 0.5, "trainer": 12.25}
    assert record["finished_at"] - record["started_at"] == timedelta(seconds=13)
    assert (record["rows"], record["model_version"], record["source"]) == (1000, "v0001", "file data.csv")
    failed = store.record_run(kind="predict", started_at=T0 + timedelta(hours=1))
    store.finish_run(failed, status="failed", error="DataError: boom")
    listed = store.runs()
    assert listed["run_id"].tolist() == [failed, run_id]  # newest first
    assert store.runs(kind="train")["run_id"].tolist() == [run_id]
    assert store.runs(model_version="v0001")["run_id"].tolist() == [run_id]
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.finish_run("nope", status="failed")
    with pytest.raises(ValueError, match="run kind"):
        store.record_run(kind="bogus")


def test_quality_rows_and_overall_score(store):
    store.record_quality("r1", {"age": {"null_rate": 0.1, "duplicate_rate": 0.0},
                                "income": {"rule_violation_rate": 0.02, "expectation_violation_rate": 0.05}}, score=0.93)
    quality = store.quality("r1")
    assert quality["column_name"].tolist()[:2] == ["age", "income"] and pd.isna(quality["column_name"].iloc[2])
    assert quality.iloc[0]["null_rate"] == 0.1 and pd.isna(quality.iloc[0]["rule_violation_rate"])
    assert quality.iloc[1]["expectation_violation_rate"] == 0.05
    assert quality.iloc[2]["score"] == 0.93
    with pytest.raises(ValueError, match="unknown data-quality measures"):
        store.record_quality("r1", {"age": {"nul_rate": 0.1}}, score=1.0)


def test_prediction_log_filters_and_outcomes(store):
    rows = [{"request_id": f"r{i // 2}", "row_index": i % 2, "row_id": f"id{i}", "logged_at": T0 + timedelta(hours=i),
             "model_version": "v0001" if i < 4 else "v0002", "inputs": {"x": i, "city": "a"},
             "probability": i / 10, "prediction": int(i % 2), "warnings": ["x: above the usual range"] if i == 1 else []}
            for i in range(6)]
    assert store.log_predictions(rows) == 6
    everything = store.predictions()
    assert everything["row_id"].tolist() == [f"id{i}" for i in range(6)]
    assert everything.loc[1, "inputs"] == {"x": 1, "city": "a"} and everything.loc[1, "warnings"] == ["x: above the usual range"]
    assert everything["logged_at"].iloc[0] == pd.Timestamp(T0)
    window = store.predictions(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert window["row_id"].tolist() == ["id1", "id2"]
    assert store.predictions(version="v0002")["row_id"].tolist() == ["id4", "id5"]
    assert store.count_predictions(version="v0001") == 4
    assert store.attach_outcomes({"id0": 0, "id5": 1, "unknown": 1}) == 2
    labelled = store.predictions(labelled=True)
    assert labelled["row_id"].tolist() == ["id0", "id5"] and labelled["outcome"].tolist() == ["0", "1"]
    assert labelled["outcome_at"].notna().all()
    assert len(store.predictions(labelled=False)) == 4
    lean = store.predictions(labelled=True, with_inputs=False)       # what outcomes reads: no JSON to parse
    assert "inputs" not in lean and "warnings" not in lean
    pd.testing.assert_frame_equal(lean, labelled.drop(columns=["inputs", "warnings"]))
    assert store.attach_outcomes({"id1": 1}, version="v0002") == 0  # id1 belongs to v0001


def test_estimated_and_realised_metrics_side_by_side(store):
    w1, w2 = (T0, T0 + timedelta(days=7)), (T0 + timedelta(days=7), T0 + timedelta(days=14))
    store.record_window_metrics("v0001", {"roc_auc": 0.81, "precision": 0.5}, estimated=True,
                                window_start=w1[0], window_end=w1[1], rows=500)
    store.record_window_metrics("v0001", {"roc_auc": 0.74}, estimated=True, window_start=w2[0], window_end=w2[1], rows=400)
    store.record_window_metrics("v0001", {"roc_auc": 0.79}, estimated=False, window_start=w1[0], window_end=w1[1], rows=120)
    store.record_window_metrics("v0002", {"roc_auc": 0.5}, estimated=True, window_start=w1[0], window_end=w1[1])
    trend = store.metric_trend("v0001", "roc_auc")
    assert trend["window_start"].tolist() == [pd.Timestamp(w1[0]), pd.Timestamp(w2[0])]
    assert trend["estimated"].tolist() == [0.81, 0.74]
    assert trend.loc[0, "realised"] == 0.79 and pd.isna(trend.loc[1, "realised"])
    assert trend.loc[0, "estimated_rows"] == 500 and trend.loc[0, "realised_rows"] == 120
    assert len(store.metric_trend("v0001")) == 3
    assert store.metric_trend("v0009").empty


def test_drift_and_alerts(store):
    store.record_drift("v0001", [{"feature": "age", "psi": 0.31, "method": "psi", "verdict": "drift"},
                                 {"feature": "city", "psi": None, "method": "psi", "verdict": "too_few_rows"}],
                       window_start=T0, window_end=T0 + timedelta(days=1), rows=40, run_id="m1")
    drift = store.drift(version="v0001")
    assert drift["feature"].tolist() == ["age", "city"] and pd.isna(drift.loc[1, "psi"])
    assert store.drift(run_id="other").empty
    assert store.last_alert("psi", "v0001") is None
    first = store.record_alert(rule="psi", version="v0001", observed=0.31, threshold=0.2, created_at=T0, message="age drifted")
    second = store.record_alert(rule="psi", version="v0001", observed=0.4, threshold=0.2, created_at=T0 + timedelta(hours=1))
    store.record_alert(rule="psi", version="v0002", observed=0.9, threshold=0.2, created_at=T0 + timedelta(hours=2))
    store.update_alert(first, status="delivered", attempts=1)
    store.update_alert(second, status="failed", attempts=3)
    last = store.last_alert("psi", "v0001")
    assert (last["id"], last["status"], last["attempts"], last["observed"]) == (second, "failed", 3, 0.4)
    delivered = store.last_alert("psi", "v0001", status="delivered")
    assert delivered["id"] == first and delivered["delivered_at"] is not None
    assert store.alerts(version="v0002")["observed"].tolist() == [0.9]


def _write_rows(url: str, writer: int, count: int) -> None:
    store = HistoryStore.open(url)  # both processes also race on the migration of an empty database
    for i in range(count):
        store.log_predictions([{"request_id": f"w{writer}", "row_index": i, "model_version": "v0001",
                                "probability": 0.5, "prediction": 1, "inputs": {"i": i}}])
        if i % 50 == 0:
            store.record_run(kind="predict", run_id=f"w{writer}-{i}")
    store.close()


def test_switching_to_wal_waits_for_a_writer_instead_of_failing(tmp_path):
    # SQLite answers "database is locked" at once, without its busy handler, when a connection asks
    # for WAL while another holds a write lock: the race two processes opening a new store run into.
    path = tmp_path / "history.sqlite"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.5, writer.execute, args=("COMMIT",))
    release.start()
    try:
        with HistoryStore.open(f"sqlite:///{path}") as opened, opened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
    finally:
        release.join()
        writer.close()


def test_two_processes_writing_at_once(empty_url):
    count = 200
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_rows, args=(empty_url, n, count)) for n in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with HistoryStore.open(empty_url) as store:
        logged = store.predictions()
        assert len(logged) == 2 * count
        for writer in range(2):
            assert sorted(logged.loc[logged["request_id"] == f"w{writer}", "row_index"]) == list(range(count))
        assert len(store.runs(limit=1000)) == 2 * len(range(0, count, 50))
        if empty_url.startswith("sqlite"):
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_default_url_next_to_the_registry(tmp_path):
    local = store_url(None, registry_backend="local", registry_path=tmp_path / "reg", artifacts_dir=tmp_path / "art")
    assert local == f"sqlite:///{tmp_path / 'reg' / 'history.sqlite'}"
    s3 = store_url(None, registry_backend="s3", registry_path=tmp_path / "reg", artifacts_dir=tmp_path / "art")
    assert s3 == f"sqlite:///{tmp_path / 'art' / 'history.sqlite'}"
    assert store_url("postgresql+psycopg://u@h/db", registry_backend="local", registry_path=tmp_path,
                     artifacts_dir=tmp_path) == "postgresql+psycopg://u@h/db"


def test_unreachable_or_unusable_store_is_a_store_error_without_the_password(tmp_path):
    with pytest.raises(StoreError) as caught:
        HistoryStore.open(f"postgresql+psycopg://tabpipe:Pg-Secret-42@127.0.0.1:{free_port()}/postgres")
    assert "Pg-Secret-42" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(StoreError, match="not a valid SQLAlchemy URL"):
        HistoryStore.open("not a url")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the folder"):
        HistoryStore.open(f"sqlite:///{blocker / 'sub' / 'history.sqlite'}")
    if os.geteuid() != 0:  # root ignores file permissions
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        with pytest.raises(StoreError):
            HistoryStore.open(f"sqlite:///{folder / 'history.sqlite'}")

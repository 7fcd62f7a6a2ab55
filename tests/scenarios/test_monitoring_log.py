"""The prediction log end to end: service and batch logging, sensitive columns, store down, outcomes,
and the runs / lineage commands (on a small trained project with a real history store)."""
from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import random
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

import pg_server
from service_helpers import LOGREG, REPO_SCHEMA, TABPIPE_BIN, json_records, wait_until, write_pipeline
from tabpipe.history.predlog import PredictionLog, RowFormat
from tabpipe.privacy import Protector
from tabpipe.history.store import HistoryStore
from tabpipe.sources.sample import generate
from tabpipe.schema import Schema

KEY_ENV = "TABPIPE_TEST_HASH_KEY"
KEY = "test-key-not-a-secret"
VENDORS = ("Ericsson", "Huawei", "Nokia", "Samsung")


def _schema() -> dict:
    doc = copy.deepcopy(REPO_SCHEMA)
    doc["columns"]["measurement_id"]["sensitive"] = True      # the row id: joins outcomes, never stored in clear
    doc["columns"]["vendor"]["sensitive"] = True       # a sensitive feature
    return doc


def _data(rows: int, seed: int, offset: int = 0) -> pd.DataFrame:
    df = generate(rows, seed=seed)
    df["measurement_id"] = [f"APP-{offset + i:06d}" for i in range(rows)]  # one id per scored row
    return df


def _config(root: Path, name: str, **monitoring) -> Path:
    path = write_pipeline(root, name, data="data.csv", models="model.yaml")
    doc = yaml.safe_load(path.read_text())
    doc["monitoring"] = {"log_predictions": True, "hash_key_env": KEY_ENV, "flush_interval_s": 0.1, **monitoring}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(*args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    import os

    proc = subprocess.run([str(TABPIPE_BIN), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, KEY_ENV: KEY, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _token(value: str) -> str:
    return "hmac-sha256:" + hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained project (v0001, via `tabpipe train`) whose schema marks measurement_id and vendor sensitive."""
    root = tmp_path_factory.mktemp("monitoring-project")
    (root / "schema.yaml").write_text(yaml.safe_dump(_schema(), sort_keys=False))
    _data(1500, seed=0).to_csv(root / "data.csv", index=False)
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG, sort_keys=False))
    config = _config(root, "pipeline.yaml")
    _cli("train", "--config", config)
    return config


@pytest.fixture
def store_of(project):
    opened = []

    def open_(config: Path = project) -> HistoryStore:
        store = HistoryStore.open(f"sqlite:///{config.parent / 'registry' / 'history.sqlite'}")
        opened.append(store)
        return store
    yield open_
    for store in opened:
        store.close()


def _clear_values_absent(folder: Path, values: list[str]) -> None:
    """No history-store file under ``folder`` (database, WAL) contains any of ``values`` in clear.

    The files are read by another process: opening and closing an SQLite file in a process that has
    it open drops that process's POSIX locks on it (the classic way to corrupt a database)."""
    script = ("import json, pathlib, sys; folder, values = sys.argv[1], json.loads(sys.stdin.read()); "
              "files = [p for p in pathlib.Path(folder).rglob('history.sqlite*') if p.is_file()]; "
              "blob = b''.join(p.read_bytes() for p in files); "
              "print(json.dumps({'files': len(files), 'found': [v for v in values if v.encode() in blob]}))")
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], input=json.dumps(values), capture_output=True,
                          text=True, check=True)
    report = json.loads(proc.stdout)
    assert report["files"] >= 1 and report["found"] == []


def test_service_logs_every_row_with_sensitive_columns_hashed(project, store_of, monkeypatch):
    from tabpipe.serving.app import create_app

    monkeypatch.setenv(KEY_ENV, KEY)
    app = create_app(project)
    app.extensions["tabpipe"]["holder"].stop()
    client = app.test_client()
    fresh = _data(40, seed=7, offset=500_000)
    features = Schema.model_validate(_schema()).features
    records = json_records(fresh, ["measurement_id", *features])
    resp = client.post("/predict", json={"records": records[:3]}, headers={"X-Request-ID": "client-req-1"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "client-req-1"
    csv = fresh.iloc[3:].drop(columns=["fault_flag"]).to_csv(index=False).encode()
    resp = client.post("/predict/csv", data={"file": (io.BytesIO(csv), "rows.csv")}, content_type="multipart/form-data")
    assert resp.status_code == 200
    csv_request = resp.headers["X-Request-ID"]
    served = pd.read_csv(io.BytesIO(resp.data))
    log = app.extensions["tabpipe"]["prediction_log"]
    assert log.flush(30)
    health = client.get("/health").get_json()["prediction_log"]
    assert (health["logged_rows"], health["dropped_rows"], health["failed_writes"], health["waiting_rows"]) == (40, 0, 0, 0)

    logged = store_of().predictions(since=pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5))
    logged = logged[logged["request_id"].isin(["client-req-1", csv_request])]
    assert len(logged) == 40
    assert logged["row_id"].tolist() == [_token(v) for v in fresh["measurement_id"]]
    json_rows = logged[logged["request_id"] == "client-req-1"]
    assert json_rows["row_index"].tolist() == [0, 1, 2]
    for (_, row), record in zip(json_rows.iterrows(), records[:3]):
        assert row["inputs"]["vendor"] == (None if record["vendor"] is None else _token(record["vendor"]))
        assert "measurement_id" in row["inputs"] and row["inputs"]["measurement_id"].startswith("hmac-sha256:")
        assert row["inputs"]["latency_ms"] == record["latency_ms"]
    csv_rows = logged[logged["request_id"] == csv_request]
    np.testing.assert_allclose(csv_rows["probability"].to_numpy(), served["probability"].to_numpy())
    assert csv_rows["prediction"].tolist() == served["prediction"].astype(str).tolist()
    _clear_values_absent(project.parent, [*fresh["measurement_id"], *VENDORS])


def test_drop_mode_and_missing_key_keep_sensitive_columns_out(project, store_of, monkeypatch):
    from tabpipe.serving.app import create_app

    monkeypatch.setenv(KEY_ENV, KEY)
    for config in (_config(project.parent, "drop.yaml", sensitive="drop"),
                   _config(project.parent, "nokey.yaml", hash_key_env="TABPIPE_TEST_UNSET_KEY")):
        app = create_app(config)
        app.extensions["tabpipe"]["holder"].stop()
        fresh = _data(5, seed=11, offset=600_000)
        records = json_records(fresh, ["measurement_id", *Schema.model_validate(_schema()).features])
        resp = app.test_client().post("/predict", json={"records": records})
        assert resp.status_code == 200
        assert app.extensions["tabpipe"]["prediction_log"].flush(30)
        logged = store_of().predictions()
        logged = logged[logged["request_id"] == resp.headers["X-Request-ID"]]
        assert len(logged) == 5
        assert logged["row_id"].tolist() == [f"{resp.headers['X-Request-ID']}:{i}" for i in range(5)]
        assert all("vendor" not in inputs and "measurement_id" not in inputs and "latency_ms" in inputs
                   for inputs in logged["inputs"])
        _clear_values_absent(project.parent, [*fresh["measurement_id"], *VENDORS])


def test_logging_off_adds_nothing(project, monkeypatch):
    from tabpipe.serving.app import create_app

    app = create_app(_config(project.parent, "off.yaml", log_predictions=False))
    app.extensions["tabpipe"]["holder"].stop()
    assert app.extensions["tabpipe"]["prediction_log"] is None
    records = json_records(_data(2, seed=3), Schema.model_validate(_schema()).features)
    resp = app.test_client().post("/predict", json={"records": records})
    assert resp.status_code == 200 and "X-Request-ID" not in resp.headers
    assert "prediction_log" not in app.test_client().get("/health").get_json()


def test_sample_rate_keeps_about_that_share():
    schema = Schema.model_validate(_schema())
    fmt = RowFormat(schema, Protector([], mode="drop", key=None), 0.25, rng=random.Random(0))
    records = [{"latency_ms": float(i)} for i in range(4000)]
    rows = fmt.rows("r", "v0001", records, np.full(4000, 0.5), ["0"] * 4000)
    assert 850 < len(rows) < 1150
    assert [row["inputs"] for row in rows[:3]] == [records[row["row_index"]] for row in rows[:3]]
    unscored = fmt.rows("r", "v0001", records[:2], np.array([np.nan, 0.5]), [None, "1"])
    assert len(unscored) <= 1 and all(row["row_index"] == 1 for row in unscored)


def test_full_queue_drops_and_counts_without_blocking(tmp_path):
    schema = Schema.model_validate(_schema())
    release = threading.Event()

    def slow_store():
        release.wait(30)
        return HistoryStore.open(f"sqlite:///{tmp_path / 'h.sqlite'}")

    log = PredictionLog(slow_store, RowFormat(schema, Protector([], mode="drop", key=None), 1.0),
                        queue_rows=5, batch_rows=2, flush_interval_s=0.05)
    for i in range(10):
        log.submit(f"r{i}", "v0001", [{"latency_ms": 1.0}], np.array([0.5]), ["0"])
    assert log.stats()["dropped_rows"] == 5
    release.set()
    assert log.flush(30)
    stats = log.stats()
    assert (stats["logged_rows"], stats["dropped_rows"], stats["waiting_rows"]) == (5, 5, 0)
    with HistoryStore.open(f"sqlite:///{tmp_path / 'h.sqlite'}") as store:
        assert store.predictions()["request_id"].tolist() == [f"r{i}" for i in range(5)]
    log.close()


def test_store_down_during_serving_then_recovered(project, monkeypatch):
    """The history URL points at a PostgreSQL port where nothing listens: requests succeed, failures are
    counted in /health, rows wait in the buffer; once a server starts on that port, they are written."""
    from tabpipe.serving.app import create_app

    port = pg_server.free_port()
    url = f"postgresql+psycopg://{pg_server.USER}@127.0.0.1:{port}/postgres"
    monkeypatch.setenv("TABPIPE_HISTORY_URL", url)
    app = create_app(project)
    app.extensions["tabpipe"]["holder"].stop()
    client = app.test_client()
    records = json_records(_data(12, seed=5, offset=700_000), Schema.model_validate(_schema()).features)
    for i in range(4):
        resp = client.post("/predict", json={"records": records[3 * i:3 * i + 3]})
        assert resp.status_code == 200 and len(resp.get_json()["predictions"]) == 3
    wait_until(lambda: client.get("/health").get_json()["prediction_log"]["failed_writes"] >= 1, 30,
               what="a failed write to be counted")
    health = client.get("/health").get_json()
    assert health["status"] == "ok"
    assert health["prediction_log"]["waiting_rows"] == 12 and health["prediction_log"]["logged_rows"] == 0
    assert "127.0.0.1" in health["prediction_log"]["last_error"]
    with mock.patch.object(pg_server, "free_port", return_value=port), pg_server.postgres_server() as server:
        assert server.port == port
        log = app.extensions["tabpipe"]["prediction_log"]
        assert log.flush(60), log.stats()
        assert log.stats()["logged_rows"] == 12
        with HistoryStore.open(url) as store:
            logged = store.predictions()
            assert len(logged) == 12 and logged["request_id"].nunique() == 4
        log.close()


def test_batch_predict_logs_then_outcomes_record_realised_metrics(project, store_of, tmp_path):
    batch = _data(300, seed=21, offset=800_000)
    batch.drop(columns=["fault_flag"]).to_csv(tmp_path / "batch.csv", index=False)
    proc = _cli("predict", "--config", project, "--input", tmp_path / "batch.csv", "--output", tmp_path / "out.csv",
                "--request-id", "nightly-1")
    assert "logged 300 rows to the history store as request nightly-1" in proc.stdout
    store = store_of()
    logged = store.predictions()
    logged = logged[logged["request_id"] == "nightly-1"]
    assert len(logged) == 300 and logged["row_id"].tolist() == [_token(v) for v in batch["measurement_id"]]
    run = store.run("nightly-1")
    assert (run["kind"], run["status"], run["model_version"], run["rows"]) == ("predict", "succeeded", "v0001", 300)
    _clear_values_absent(project.parent, [*batch["measurement_id"], *VENDORS])

    labels = batch[["measurement_id", "fault_flag"]].iloc[:250].copy()
    labels.loc[labels.index[:5], "fault_flag"] = None          # no label yet: skipped
    labels = pd.concat([labels, pd.DataFrame({"measurement_id": ["APP-UNKNOWN"], "fault_flag": [1]})])
    labels.to_csv(tmp_path / "labels.csv", index=False)
    result = json.loads(_cli("outcomes", "--config", project, "--input", tmp_path / "labels.csv",
                             "--id-column", "measurement_id", "--json").stdout)
    assert (result["labels"], result["skipped"], result["matched"], result["unmatched_ids"]) == (246, 5, 245, 1)
    scored = pd.read_csv(tmp_path / "out.csv")
    expected = roc_auc_score(batch["fault_flag"].iloc[5:250], scored["probability"].iloc[5:250])
    window = [w for w in result["windows"] if w["version"] == "v0001"][-1]
    assert window["rows"] == 245 and window["metrics"]["roc_auc"] == pytest.approx(expected)
    trend = store.metric_trend("v0001", "roc_auc")
    assert trend["realised"].iloc[-1] == pytest.approx(expected)

    conflicting = pd.DataFrame({"measurement_id": ["APP-800001", "APP-800001"], "fault_flag": [0, 1]})
    conflicting.to_csv(tmp_path / "bad.csv", index=False)
    bad = _cli("outcomes", "--config", project, "--input", tmp_path / "bad.csv", "--id-column", "measurement_id", check=False)
    assert bad.returncode == 1 and "'APP-800001' has two different labels" in bad.stderr
    missing = _cli("outcomes", "--config", project, "--input", tmp_path / "labels.csv", "--id-column", "ID", check=False)
    assert missing.returncode == 1 and "no column 'ID' (--id-column)" in missing.stderr


def test_runs_and_lineage_commands(project, store_of):
    from helpers import registry_of

    meta = registry_of(project).metadata("v0001")
    store = store_of()
    store.record_window_metrics("v0001", {"roc_auc": 0.71}, estimated=True, window_start="2026-01-01",
                                window_end="2026-01-08", rows=900, run_id="monitor-1")
    store.record_drift("v0001", [{"feature": "latency_ms", "psi": 0.27, "method": "psi", "verdict": "drift"},
                                 {"feature": "region", "psi": 0.01, "method": "psi", "verdict": "ok"}],
                       window_start="2026-01-01", window_end="2026-01-08", rows=900, run_id="monitor-1")
    store.record_alert(rule="psi", version="v0001", observed=0.27, threshold=0.2, run_id="monitor-1",
                       window_start="2026-01-01", window_end="2026-01-08", status="delivered", attempts=1)

    listed = _cli("runs", "list", "--config", project, "--kind", "train").stdout
    assert meta["run_id"] in listed and "succeeded" in listed
    shown = json.loads(_cli("runs", "show", meta["run_id"], "--config", project, "--json").stdout)
    assert (shown["kind"], shown["status"], shown["model_version"]) == ("train", "succeeded", "v0001")
    assert shown["data_fingerprint"] == meta["data_fingerprint"] and shown["rows"] == meta["rows"]
    assert list(shown["stage_seconds"]) == ["ingestion", "validation", "transformation", "trainer", "evaluation", "pusher"]
    assert shown["source"] == f"file {project.parent / 'data.csv'}"
    text = _cli("runs", "show", meta["run_id"], "--config", project).stdout
    assert "stage trainer:" in text and meta["data_fingerprint"] in text
    absent = _cli("runs", "show", "no-such-run", "--config", project, check=False)
    assert absent.returncode == 1 and "no run 'no-such-run'" in absent.stderr

    document = json.loads(_cli("lineage", "v0001", "--config", project, "--json").stdout)
    assert document["is_production"] is True
    assert document["training"]["run_id"] == meta["run_id"]
    assert document["training"]["data_fingerprint"] == meta["data_fingerprint"]
    assert document["training"]["config_snapshot"]["pipeline"]["monitoring"]["log_predictions"] is True
    assert Path(document["training"]["config_ref"]).parent.parent == project.parent / "artifacts"
    january = [w for w in document["windows"] if str(w["window_start"]).startswith("2026-01-01")]
    assert [(w["metric"], w["estimated"], w["realised"]) for w in january] == [("roc_auc", 0.71, None)]
    assert document["drift"][0]["drifted"] == 1 and document["drift"][0]["max_psi"] == pytest.approx(0.27)
    assert [(a["rule"], a["status"]) for a in document["alerts"]] == [("psi", "delivered")]
    text = _cli("lineage", "v0001", "--config", project).stdout
    assert f"trained by run {meta['run_id']}" in text and "1/2 features drifted" in text
    unknown = _cli("lineage", "v0099", "--config", project, check=False)
    assert unknown.returncode == 1 and "version v0099 not found" in unknown.stderr


def test_forked_worker_does_not_inherit_the_parents_queue(tmp_path):
    """gunicorn forks workers: a child writes only its own rows, with its own writer and connections."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    schema = Schema.model_validate(_schema())
    log = PredictionLog(lambda: HistoryStore.open(url), RowFormat(schema, Protector([], mode="drop", key=None), 1.0),
                        batch_rows=1000, flush_interval_s=5.0)
    log.submit("parent-flushed", "v0001", [{"latency_ms": 1.0}], np.array([0.5]), ["0"])
    assert log.flush(30)
    log.submit("parent-queued", "v0001", [{"latency_ms": 2.0}], np.array([0.5]), ["0"])  # still queued at the fork

    def child() -> None:
        log.submit("child", "v0001", [{"latency_ms": 3.0}], np.array([0.5]), ["0"])
        raise SystemExit(0 if log.flush(30) else 3)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert log.flush(30)
    with HistoryStore.open(url) as store:
        assert sorted(store.predictions()["request_id"]) == ["child", "parent-flushed", "parent-queued"]
    log.close()


def test_gunicorn_workers_log_concurrently_and_flush_on_shutdown(project, store_of, tmp_path):
    """Two gunicorn workers log at once into one SQLite store; rows still queued when the server is
    stopped (SIGTERM) are written by each worker on its way out."""
    from concurrent.futures import ThreadPoolExecutor

    from service_helpers import http_request, running_server

    config = _config(project.parent, "gunicorn.yaml", flush_interval_s=60, batch_rows=100_000)
    records = json_records(_data(60, seed=31, offset=900_000), ["measurement_id", *Schema.model_validate(_schema()).features])

    with running_server(config, tmp_path / "server.log", workers=2, env={KEY_ENV: KEY}) as server:
        server.wait_healthy()

        def post(i: int) -> int:
            status, headers, _ = http_request(server.port, "POST", "/predict", json.dumps(records[i]).encode(),
                                              {"Content-Type": "application/json", "X-Request-ID": f"gun-{i}"})
            assert headers["x-request-id"] == f"gun-{i}"
            return status

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(post, range(60))) == [200] * 60
        assert store_of(config).predictions(labelled=None).query("request_id.str.startswith('gun-')").empty
        assert server.stop() == 0
    logged = store_of(config).predictions()
    logged = logged[logged["request_id"].str.startswith("gun-")]
    assert sorted(logged["request_id"]) == sorted(f"gun-{i}" for i in range(60))
    assert set(logged["row_id"]) == {_token(r["measurement_id"]) for r in records}

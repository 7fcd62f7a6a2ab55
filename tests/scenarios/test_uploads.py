"""POST /outcomes and POST /data: access, per-row validation in input order, JSON and CSV, the history
store (SQLite and a real PostgreSQL), and the next `tabpipe train` using the uploaded rows."""
from __future__ import annotations

import copy
import http.client
import io
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
import yaml

from pg_server import empty_url_fixture, postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)
from service_helpers import LOGREG, REPO_SCHEMA, json_records, running_server, run_cli, wait_until, write_pipeline
from tabpipe.history.store import HistoryStore, current_revision
from tabpipe.sources.sample import generate
from tabpipe.schema import Schema

TOKEN_ENV = "TABPIPE_TEST_UPLOAD_TOKEN"
TOKEN = "upload-token-for-tests"
KEY_ENV = "TABPIPE_TEST_HASH_KEY"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = copy.deepcopy(REPO_SCHEMA)
SCHEMA["columns"]["measurement_id"]["sensitive"] = True      # outcomes join on its keyed hash
FEATURES = Schema.model_validate(SCHEMA).features
SOURCE_ROWS = 1200


def _config(root: Path, name: str = "pipeline.yaml", **serve) -> Path:
    path = write_pipeline(root, name, data="data.csv", models="model.yaml")
    doc = yaml.safe_load(path.read_text())
    doc["serve"] = {**doc["serve"], "allow_uploads": True, "upload_token_env": TOKEN_ENV, **serve}
    doc["monitoring"] = {"log_predictions": True, "hash_key_env": KEY_ENV, "flush_interval_s": 0.05}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained project (v0001) with uploads enabled; its history store is history.sqlite by the registry."""
    from service_helpers import train

    root = tmp_path_factory.mktemp("uploads-project")
    (root / "schema.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    df = generate(SOURCE_ROWS, seed=0)
    df["measurement_id"] = [f"SRC-{i:06d}" for i in range(len(df))]
    df.to_csv(root / "data.csv", index=False)
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG, sort_keys=False))
    run = train(_config(root))
    assert run.record["accepted"] and run.record["stages"]["ingestion"]["artifact"]["uploaded_rows"] == 0
    return root / "pipeline.yaml"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(KEY_ENV, "hash-key-for-tests")


@pytest.fixture
def make_app():
    from tabpipe.serving.app import create_app

    apps = []

    def make(config: Path):
        app = create_app(config)
        app.extensions["tabpipe"]["holder"].stop()
        apps.append(app)
        return app

    yield make
    for app in apps:
        log = app.extensions["tabpipe"]["prediction_log"]
        if log is not None:
            log.close()


def _store(config: Path) -> HistoryStore:
    return HistoryStore.open(f"sqlite:///{config.parent / 'registry' / 'history.sqlite'}")


def _rows(n: int, seed: int, prefix: str) -> pd.DataFrame:
    df = generate(n, seed=seed)
    df["measurement_id"] = [f"{prefix}-{i:05d}" for i in range(n)]
    return df


def _labelled_records(df: pd.DataFrame) -> list[dict]:
    records = json_records(df, ["measurement_id", *FEATURES])
    for record, label in zip(records, df["fault_flag"].tolist()):
        record["fault_flag"] = int(label)
    return records


def _csv(df: pd.DataFrame) -> dict:
    return {"file": (io.BytesIO(df.to_csv(index=False).encode()), "rows.csv")}


# --------------------------------------------------------------------------- access


def test_uploads_are_off_by_default(tmp_path):
    from tabpipe.config import ServeSection, TrainingSection

    assert ServeSection().allow_uploads is False and TrainingSection().include_uploaded_rows is None


def test_access_disabled_unset_token_missing_and_wrong_token(project, make_app, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    off = make_app(_config(project.parent, "off.yaml", allow_uploads=False)).test_client()
    for path in ("/outcomes", "/data"):
        resp = off.post(path, json={"records": [{}]}, headers=AUTH)
        assert resp.status_code == 404 and "serve.allow_uploads: false" in resp.get_json()["error"]

    client = make_app(project).test_client()
    monkeypatch.delenv(TOKEN_ENV)
    for path in ("/outcomes", "/data"):
        resp = client.post(path, json={"records": [{}]}, headers=AUTH)
        assert resp.status_code == 503 and TOKEN_ENV in resp.get_json()["error"]
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    for path in ("/outcomes", "/data"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            resp = client.post(path, json={"records": [{}]}, headers=headers)
            assert resp.status_code == 401 and resp.get_json()["error"] == "missing or wrong bearer token"
    # the right token gets past the check (to row validation)
    assert client.post("/data", json={"records": ["x"]}, headers=AUTH).status_code == 422


def test_bounds_like_predict(project, make_app, env):
    client = make_app(_config(project.parent, "small.yaml", max_records=3, max_csv_rows=2)).test_client()
    resp = client.post("/outcomes", json={"records": [{"id": str(i), "label": 1} for i in range(4)]}, headers=AUTH)
    assert resp.status_code == 413 and "serve.max_records=3" in resp.get_json()["error"]
    resp = client.post("/data", data=_csv(_rows(3, 1, "B")), headers=AUTH, content_type="multipart/form-data")
    assert resp.status_code == 413 and "serve.max_csv_rows=2" in resp.get_json()["error"]
    resp = client.post("/data", data="a,b\n1,2\n", headers={**AUTH, "Content-Type": "text/csv"})
    assert resp.status_code == 415
    missing = _rows(2, 1, "M").drop(columns=["latency_ms", "fault_flag"])
    resp = client.post("/data", data=_csv(missing), headers=AUTH, content_type="multipart/form-data")
    assert resp.status_code == 422 and {d["field"] for d in resp.get_json()["details"]} == {"latency_ms", "fault_flag"}


# --------------------------------------------------------------------------- /outcomes


def test_outcomes_json_per_row_errors_then_realised_metrics(project, make_app, env):
    app = make_app(project)
    client = app.test_client()
    scored = _rows(30, seed=5, prefix="OUT")
    resp = client.post("/predict", json={"records": json_records(scored, ["measurement_id", *FEATURES])},
                       headers={"X-Request-ID": "outcomes-json-1"})
    assert resp.status_code == 200
    store = _store(project)
    try:
        wait_until(lambda: (store.predictions().query("request_id == 'outcomes-json-1'").shape[0] == 30), 20,
                   what="30 logged rows")
        labels = [{"id": cid, "label": int(y)} for cid, y in zip(scored["measurement_id"], scored["fault_flag"])]
        records = [
            labels[0],
            {"id": "OUT-NOT-LOGGED", "label": 1},                       # 1: unknown id
            {"id": labels[2]["id"], "label": "maybe"},                 # 2: not a class of the model
            {"id": labels[3]["id"]},                                   # 3: no label
            "not an object",                                           # 4
            *labels[5:],                                               # 5..29
            {"id": labels[0]["id"], "label": 1 - labels[0]["label"]},  # 30: contradicts row 0
        ]
        resp = client.post("/outcomes", json={"records": records}, headers=AUTH)
        body = resp.get_json()
        assert resp.status_code == 200, body
        assert [(e["row"], e["field"], e["rule"]) for e in body["errors"]] == [
            (1, "id", "unknown_id"), (2, "label", "classes"), (3, "label", "missing"), (4, None, "type"),
            (30, "id", "conflict")]
        assert "'maybe' is not one of the model's classes" in body["errors"][1]["message"]
        assert (body["rows"], body["accepted"], body["refused"], body["matched"]) == (31, 26, 5, 26)
        assert body["upload_id"] == resp.headers["X-Request-ID"]

        logged = store.predictions(labelled=True).query("request_id == 'outcomes-json-1'")
        assert sorted(logged["row_index"]) == [0, *range(5, 30)]
        expected = scored["fault_flag"].astype(str).tolist()
        assert all(logged["outcome"] == [expected[i] for i in logged["row_index"]])
        realised = store.metrics("v0001").query("not estimated and metric == 'roc_auc'")
        assert not realised.empty and body["windows"] and body["windows"][-1]["metrics"]["roc_auc"] is not None
        trend = store.metric_trend("v0001", "roc_auc")
        assert trend["realised"].iloc[-1] == pytest.approx(body["windows"][-1]["metrics"]["roc_auc"])
        run = store.runs(kind="outcomes", limit=1).iloc[0]
        assert (run["status"], run["rows"]) == ("succeeded", 26) and body["upload_id"] in run["source"]
    finally:
        store.close()


def test_outcomes_csv_by_request_id_and_row_index(project, make_app, env):
    client = make_app(project).test_client()
    scored = _rows(8, seed=6, prefix="CSV")
    resp = client.post("/predict", json={"records": json_records(scored, FEATURES)},  # no id column: REQUEST:ROW
                       headers={"X-Request-ID": "outcomes-csv-1"})
    assert resp.status_code == 200
    store = _store(project)
    try:
        wait_until(lambda: store.predictions().query("request_id == 'outcomes-csv-1'").shape[0] == 8, 20)
        labels = pd.DataFrame({"id": [f"outcomes-csv-1:{i}" for i in range(8)] + ["outcomes-csv-1:99"],
                               "label": [*scored["fault_flag"].astype(int), 1]})
        labels.loc[2, "label"] = None
        resp = client.post("/outcomes", data=_csv(labels), headers=AUTH, content_type="multipart/form-data")
        body = resp.get_json()
        assert resp.status_code == 200, body
        assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "label"), (8, "id")]
        assert (body["accepted"], body["matched"]) == (7, 7)
        logged = store.predictions(labelled=True).query("request_id == 'outcomes-csv-1'")
        assert sorted(logged["row_index"]) == [0, 1, 3, 4, 5, 6, 7]

        nothing = client.post("/outcomes", json={"records": [{"id": "nope:0", "label": 0}]}, headers=AUTH)
        assert nothing.status_code == 422 and nothing.get_json()["accepted"] == 0
    finally:
        store.close()


def test_outcome_for_one_measurement_labels_that_prediction_only(project, make_app, env):
    """The sample's join key is its per-row measurement_id (as generated, first id column of schema.yaml):
    a label for one measurement of a cell scored many times attaches to that one logged prediction, and
    the realised metrics count exactly the labelled rows; the cell id is not a join key."""
    assert next(n for n, spec in REPO_SCHEMA["columns"].items() if spec.get("role") == "id") == "measurement_id"
    client = make_app(project).test_client()
    batch = generate(600, seed=12, shift=0.5)
    busiest = batch["cell_id"].value_counts().index[:2]
    scored = batch[batch["cell_id"].isin(busiest)].reset_index(drop=True)
    assert scored.groupby("cell_id").size().min() >= 3
    resp = client.post("/predict", json={"records": json_records(scored, ["measurement_id", "cell_id", *FEATURES])},
                       headers={"X-Request-ID": "same-cell-1"})
    assert resp.status_code == 200
    store = _store(project)
    try:
        wait_until(lambda: store.predictions().query("request_id == 'same-cell-1'").shape[0] == len(scored), 20,
                   what=f"{len(scored)} logged rows")
        labelled_before = len(store.predictions(labelled=True, version="v0001"))
        chosen = [int(scored.index[scored["cell_id"] == cell][1]) for cell in busiest]   # one measurement per cell
        labels = {i: 1 - int(scored.loc[chosen[0], "fault_flag"]) if i == chosen[0] else int(scored.loc[i, "fault_flag"])
                  for i in chosen}
        resp = client.post("/outcomes", headers=AUTH, json={"records": [
            {"id": scored.loc[i, "measurement_id"], "label": label} for i, label in labels.items()]})
        body = resp.get_json()
        assert resp.status_code == 200, body
        assert (body["accepted"], body["matched"], body["errors"]) == (2, 2, [])

        logged = store.predictions(with_inputs=False).query("request_id == 'same-cell-1'").set_index("row_index")
        assert len(logged) == len(scored) >= 6
        got = logged["outcome"].dropna()
        assert sorted(got.index) == sorted(chosen)                      # not the other rows of the same cells
        assert {i: int(v) for i, v in got.items()} == labels
        labelled = store.predictions(labelled=True, version="v0001", with_inputs=False)
        assert len(labelled) == labelled_before + 2
        span = max(body["windows"], key=lambda window: window["rows"])  # the whole labelled span of v0001
        confusion = span["metrics"]
        assert span["rows"] == len(labelled) == confusion["tp"] + confusion["fp"] + confusion["fn"] + confusion["tn"]
        assert confusion["positives"] == int((labelled["outcome"] == "1").sum())

        cell = client.post("/outcomes", json={"records": [{"id": busiest[0], "label": 1}]}, headers=AUTH)
        assert cell.status_code == 422 and cell.get_json()["errors"][0]["rule"] == "unknown_id"
        assert store.predictions(with_inputs=False).query("request_id == 'same-cell-1'")["outcome"].notna().sum() == 2
    finally:
        store.close()


# --------------------------------------------------------------------------- /data


def test_data_json_hard_rules_refuse_expectations_warn_in_input_order(project, make_app, env):
    client = make_app(project).test_client()
    good = _labelled_records(_rows(6, seed=7, prefix="DATA"))
    records = copy.deepcopy(good)
    records[1]["latency_ms"] = "fast"                 # unreadable as float: hard
    records[2]["latency_ms"] = 9000.0                 # above max 5000: expectation, kept with a warning
    del records[3]["region"]                          # absent field: hard
    records[4]["fault_flag"] = 7                      # not one of the model's classes
    records[5]["packet_loss_pct"] = 150.0             # hard: [range]
    records.append("not an object")
    records.append({**good[0], "fault_flag": None})   # no target
    resp = client.post("/data", json={"records": records}, headers=AUTH)
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert [(e["row"], e["field"], e["rule"]) for e in body["errors"]] == [
        (1, "latency_ms", "type"), (3, "region", "missing_column"), (4, "fault_flag", "classes"),
        (5, "packet_loss_pct", "range"), (6, None, "type"), (7, "fault_flag", "null")]
    assert [(w["row"], w["field"], w["rule"]) for w in body["warnings"]] == [(2, "latency_ms", "range")]
    assert (body["rows"], body["accepted"], body["refused"], body["rows_with_warnings"]) == (8, 2, 6, 1)

    store = _store(project)
    try:
        stored = store.training_rows()
        mine = stored.tail(2)      # this upload's rows, in input order; the sensitive id column is not stored
        assert "measurement_id" not in stored.columns and int(mine.index.max()) == body["last_row_id"]
        assert mine["latency_ms"].tolist() == [good[0]["latency_ms"], 9000.0]
        assert mine["region"].tolist() == [good[0]["region"], good[2]["region"]]
        assert int(mine.index.max()) == body["last_row_id"]
    finally:
        store.close()
    retried = client.post("/data", json={"records": records}, headers={**AUTH, "X-Request-ID": body["upload_id"]})
    assert retried.status_code == 409 and retried.get_json()["last_row_id"] == body["last_row_id"]
    store = _store(project)
    try:
        assert int(store.training_rows().index.max()) == body["last_row_id"]      # nothing added by the retry
    finally:
        store.close()
    refused = client.post("/data", json={"records": records[1:2]}, headers=AUTH)
    assert refused.status_code == 422 and refused.get_json()["accepted"] == 0


# --------------------------------------------------------------------------- the next training run (real processes)


def test_uploads_over_a_real_server_then_train_includes_the_rows(project, tmp_path):
    """gunicorn serves the uploads; `tabpipe train` then appends every uploaded row before the split."""
    store = _store(project)
    try:
        before = len(store.training_rows())
    finally:
        store.close()
    new = _rows(200, seed=9, prefix="NEW")
    env = {TOKEN_ENV: TOKEN, KEY_ENV: "hash-key-for-tests"}
    with running_server(project, tmp_path / "server.log", workers=2, env=env) as server:
        server.wait_healthy()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        body = json.dumps({"records": _labelled_records(new.iloc[:150])})
        conn.request("POST", "/data", body, {"Content-Type": "application/json", **AUTH})
        answer = json.loads(conn.getresponse().read())
        assert answer["accepted"] == 150, answer
        boundary = uuid.uuid4().hex
        csv_bytes = new.iloc[150:].to_csv(index=False).encode()
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.csv\"\r\n"
                f"Content-Type: text/csv\r\n\r\n").encode() + csv_bytes + f"\r\n--{boundary}--\r\n".encode()
        conn.request("POST", "/data", form, {"Content-Type": f"multipart/form-data; boundary={boundary}", **AUTH})
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and answer["accepted"] == 50, answer
        conn.request("POST", "/data", body, {"Content-Type": "application/json"})
        assert conn.getresponse().status == 401
        conn.close()
    last_id = answer["last_row_id"]

    proc = run_cli("train", "--config", str(project), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = sorted((project.parent / "artifacts").glob("*/run.json"))
    record = json.loads(runs[-1].read_text())
    first = json.loads(runs[0].read_text())["stages"]["ingestion"]["artifact"]
    ingestion = record["stages"]["ingestion"]["artifact"]
    assert ingestion["uploaded_rows"] == before + 200 and ingestion["uploaded_through_id"] == last_id
    assert ingestion["n_rows"] == SOURCE_ROWS + before + 200 == first["n_rows"] + before + 200
    assert ingestion["n_train"] > first["n_train"]
    raw = pd.read_parquet(ingestion["raw_path"])            # source rows, then the uploaded ones in upload order
    assert "measurement_id" not in raw.columns     # sensitive, and no hash key in this process: left out of the run folder
    assert raw["latency_ms"].iloc[-200:].tolist() == pytest.approx(new["latency_ms"].tolist())
    assert raw["fault_flag"].iloc[-200:].astype(int).tolist() == new["fault_flag"].astype(int).tolist()
    split = pd.concat([pd.read_parquet(ingestion["train_path"]), pd.read_parquet(ingestion["test_path"])])
    assert sorted(split.index) == list(range(len(raw)))      # every uploaded row is in the train or test split

    off = _config(project.parent, "no-uploaded.yaml")
    doc = yaml.safe_load(off.read_text())
    doc["training"]["include_uploaded_rows"] = False
    off.write_text(yaml.safe_dump(doc, sort_keys=False))
    from tabpipe.config import load_settings

    assert load_settings(off).pipeline.includes_uploaded_rows is False
    assert load_settings(project).pipeline.includes_uploaded_rows is True


# --------------------------------------------------------------------------- the store (SQLite and PostgreSQL)




def test_store_training_rows_and_logged_ids_after_upgrading_from_0002(empty_url):
    with HistoryStore.open(empty_url, migrate_to="0002") as old:
        assert "training_rows" not in sqlalchemy.inspect(old.engine).get_table_names()
        old.log_predictions([{"request_id": "r1", "row_index": i, "model_version": "v0001", "probability": 0.5,
                              "prediction": 1} for i in range(3)])
    with HistoryStore.open(empty_url) as store:
        assert current_revision(store.engine) == "0006"
        assert store.logged_row_ids(["r1:0", "r1:2", "r1:9", "other"]) == {"r1:0", "r1:2"}
        assert store.training_rows().empty
        assert store.add_training_rows("up-1", []) == (0, None)
        written, last = store.add_training_rows("up-1", [(0, {"a": 1.5, "b": "x", "y": 1}),
                                                         (2, {"a": float("nan"), "b": pd.Timestamp("2026-01-02"), "y": 0})])
        written2, last2 = store.add_training_rows("up-2", [(0, {"a": 3, "b": "z", "y": 1})])
        assert (written, written2) == (2, 1) and last2 > last
        rows = store.training_rows()
        assert rows.index.name == "upload_row" and rows.index.is_monotonic_increasing
        assert rows["b"].tolist() == ["x", "2026-01-02T00:00:00", "z"] and rows["y"].tolist() == [1, 0, 1]
        assert rows["a"].iloc[[0, 2]].tolist() == [1.5, 3] and pd.isna(rows["a"].iloc[1])
        assert len(store.training_rows(through_id=last)) == 2
        assert store.add_training_rows("up-1", [(0, {"a": 9})]) == (0, last)   # a retried upload adds nothing
        assert len(store.training_rows()) == 3
        assert len(store.predictions()) == 3    # the upgrade kept the logged rows


def test_store_down_is_503_and_nothing_is_half_written(project, make_app, env, monkeypatch):
    from pg_server import free_port

    store = _store(project)
    try:
        before = len(store.training_rows())
    finally:
        store.close()
    monkeypatch.setenv("TABPIPE_HISTORY_URL", f"postgresql+psycopg://u:Secret-9@127.0.0.1:{free_port()}/gone")
    client = make_app(project).test_client()
    resp = client.post("/data", json={"records": _labelled_records(_rows(2, 11, "DOWN"))}, headers=AUTH)
    assert resp.status_code == 503 and "history store" in resp.get_json()["error"]
    assert "Secret-9" not in resp.get_data(as_text=True)
    monkeypatch.delenv("TABPIPE_HISTORY_URL")
    store = _store(project)
    try:
        assert len(store.training_rows()) == before
    finally:
        store.close()

"""The whole monitoring loop as one scenario, with the real parts a user runs:

train v0001 (`tabpipe train`) -> serve it (gunicorn, prediction logging on) -> POST shifted rows to
``/predict`` and ``/predict/csv`` -> the background writers flush them to the history store ->
`tabpipe outcomes` joins their labels -> `tabpipe monitor --since` decides ``retrain`` (PSI of the
shifted features; realised ROC-AUC next to the label-free estimate) -> `tabpipe monitor --retrain
--append-labelled` runs the evaluation gate -> the new version is production, the running service
picks it up on its next poll and scores with it; the store links runs, metrics, drift and alerts,
and `tabpipe lineage` follows them.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service_helpers import (
    LOGREG,
    REPO_SCHEMA,
    TABPIPE_BIN,
    TARGET,
    health_version,
    http_request,
    json_records,
    post_json,
    registry_of,
    running_server,
    wait_until,
    write_pipeline,
)
from tabpipe.drift.profile import read_profile
from tabpipe.drift.psi import frame_psi
from tabpipe.history.store import HistoryStore
from tabpipe.sources.sample import generate
from tabpipe.schema import Schema, coerce_frame

ROWS_JSON, ROWS_CSV = 300, 300          # shifted rows sent to /predict (3 requests) and /predict/csv (1 upload)
SHIFT = 1.0
# features `generate(..., shift=1)` moves directly (sample_data.generate's docstring: more PRB utilisation, lower
# SINR, hotter sites, more 5G); most other KPIs follow through them. The region mix does not move at all.
MOVED = {"prb_utilization_pct", "sinr_db", "temperature_c", "technology"}
UNMOVED = "region"


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TABPIPE_ALERT_WEBHOOK_URL"}
    return subprocess.run([str(TABPIPE_BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def ok(done: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert done.returncode == code, f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done


def multipart_csv(payload: bytes, boundary: str = "tabpipeloop") -> tuple[bytes, dict]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture
def project(tmp_path) -> Path:
    """v0001: a logistic regression trained by `tabpipe train` on 1,500 unshifted rows; logging on."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(yaml.safe_dump(REPO_SCHEMA, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG, sort_keys=False))
    generate(1500, seed=0).to_csv(root / "data.csv", index=False)
    # the gate: a retrained model is accepted unless it is more than 0.05 ROC-AUC worse than production on the
    # same test split (the shift here is in the inputs only, so v0001 stays good and a retrain ties with it)
    config = write_pipeline(root, "pipeline.yaml", evaluation={"min_improvement": -0.05})
    doc = yaml.safe_load(config.read_text())
    doc["monitoring"] = {"log_predictions": True, "flush_interval_s": 0.1}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    ok(cli("train", "--config", config))
    return config


def test_serve_log_outcomes_monitor_retrain_promote(project, tmp_path):
    root = project.parent
    schema = Schema.model_validate(REPO_SCHEMA)
    batch = generate(ROWS_JSON + ROWS_CSV, seed=5, shift=SHIFT)
    # one id per scored row (schema.yaml's first id column, as generated): what outcomes join on; cells repeat
    assert batch["measurement_id"].is_unique and batch["cell_id"].nunique() < len(batch)
    records = json_records(batch, ["measurement_id", "cell_id", *schema.features])
    store = HistoryStore.open(f"sqlite:///{root / 'registry' / 'history.sqlite'}")
    try:
        with running_server(project, tmp_path / "server.log", workers=2) as server:
            assert server.wait_healthy() == "v0001"

            # 1. serve: JSON batches and one CSV upload, every row scored and logged in the background
            served = {}
            for start in range(0, ROWS_JSON, 100):
                status, answer = post_json(server.port, "/predict", {"records": records[start:start + 100]})
                assert status == 200 and answer["model_version"] == "v0001", answer
                for i, item in enumerate(answer["predictions"]):
                    served[records[start + i]["measurement_id"]] = item["probability"]
            body, headers = multipart_csv(batch.iloc[ROWS_JSON:].drop(columns=[TARGET]).to_csv(index=False).encode())
            status, _, csv_answer = http_request(server.port, "POST", "/predict/csv", body, headers)
            assert status == 200, csv_answer[:500]
            scored_csv = pd.read_csv(io.BytesIO(csv_answer))
            served.update(zip(batch["measurement_id"].iloc[ROWS_JSON:], scored_csv["probability"]))
            assert len(served) == len(batch)
            wait_until(lambda: store.count_predictions() == len(batch), 60, interval=0.1,
                       what=f"the background writers to log {len(batch)} rows")
            logged = store.predictions()
            assert sorted(logged["row_id"]) == sorted(batch["measurement_id"])
            assert set(logged["model_version"]) == {"v0001"} and logged["outcome"].isna().all()
            np.testing.assert_allclose(logged["probability"].to_numpy(),
                                       [served[i] for i in logged["row_id"]], rtol=1e-9)

            # 2. outcomes arrive: labels.csv with an ID column
            batch[["measurement_id", TARGET]].rename(columns={"measurement_id": "ID"}).to_csv(root / "labels.csv", index=False)
            joined = json.loads(ok(cli("outcomes", "--config", project, "--input", root / "labels.csv",
                                       "--id-column", "ID", "--json")).stdout)
            assert (joined["labels"], joined["matched"], joined["unmatched_ids"]) == (len(batch), len(batch), 0)

            # 3. monitor the last hour of the log: drift on the shifted features -> retrain (exit code 3)
            result = json.loads(ok(cli("monitor", "--config", project, "--since", "1h", "--json"), code=3).stdout)
            assert result["model_version"] == "v0001" and result["decision"] == "retrain"
            window = result["window"]
            assert (window["rows"], window["scored_rows"], window["labelled_rows"]) == (len(batch),) * 3
            # the PSI of the logged window equals the PSI of the generated rows themselves (the log kept the inputs)
            profile = read_profile(registry_of(project).fetch("v0001", "profile.json"))
            direct = frame_psi(profile["features"], coerce_frame(batch, schema, with_target=False)[0])
            assert {k: r["psi"] for k, r in result["psi"].items()} == pytest.approx({k: r.value for k, r in direct.items()})
            fired = {r["feature"]: r for r in result["reasons"] if r["rule"] == "psi_retrain"}
            assert set(fired) == {k for k, r in result["psi"].items() if r["psi"] >= 0.2}
            assert MOVED <= set(fired) and result["psi"][UNMOVED]["psi"] < 0.1, result["psi"]
            for reason in fired.values():
                assert reason["observed"] >= reason["threshold"] == 0.2 and reason["rows"] == len(batch)
                assert reason["observed"] == pytest.approx(result["psi"][reason["feature"]]["psi"])
            realised, estimated = result["metrics"]["realised"], result["metrics"]["estimated"]
            y = batch.set_index("measurement_id").loc[logged["row_id"], TARGET].to_numpy()
            from sklearn.metrics import roc_auc_score

            assert realised["rows"] == len(batch)
            assert realised["roc_auc"] == pytest.approx(roc_auc_score(y, logged["probability"]))
            assert 0.5 < estimated["roc_auc"] < 1.0
            assert result["alert"]["delivery"]["status"] == "not_configured"

            # the store: the monitoring run, its drift rows, quality, the alert, and both metrics side by side
            run = store.run(result["run_id"])
            assert (run["kind"], run["status"], run["model_version"], run["rows"]) == ("monitor", "succeeded", "v0001",
                                                                                     len(batch))
            assert run["stage_seconds"] == result["stage_seconds"]          # where the run's time went
            assert {"read", "schema_check_and_score", "psi", "performance", "store", "dashboard", "alert", "report"} <= set(
                run["stage_seconds"]) and all(v >= 0 for v in run["stage_seconds"].values())
            drift = store.drift(run_id=result["run_id"])
            features = drift[drift["feature"] != "__score__"]
            assert set(features.loc[features["verdict"] == "drift", "feature"]) == set(fired)
            assert set(features["feature"]) == set(result["psi"]) and set(drift["model_version"]) == {"v0001"}
            assert drift.loc[drift["feature"] == "__score__", "psi"].iloc[0] == pytest.approx(result["score_psi"]["psi"])
            alerts = store.alerts(run_id=result["run_id"])
            assert len(alerts) == 1 and alerts["model_version"].iloc[0] == "v0001"
            assert alerts["status"].iloc[0] == "logged" and alerts["rows"].iloc[0] == len(batch)
            assert alerts["observed"].iloc[0] == pytest.approx(result["reasons"][0]["observed"])
            start = pd.Timestamp(window["start"])
            trend = store.metric_trend("v0001", "roc_auc")
            same = trend[trend["window_start"] == start]
            assert len(same) == 1, trend
            assert same["realised"].iloc[0] == pytest.approx(realised["roc_auc"])
            assert same["estimated"].iloc[0] == pytest.approx(estimated["roc_auc"])
            assert same["realised_rows"].iloc[0] == same["estimated_rows"].iloc[0] == len(batch)
            assert not store.quality(result["run_id"]).empty

            # 4. retrain on the configured source + the window's labelled rows; the gate decides
            done = json.loads(ok(cli("monitor", "--config", project, "--since", "1h", "--retrain",
                                     "--append-labelled", "--json", timeout=600)).stdout)
            retrain = done["retrain"]
            assert retrain["status"] == "succeeded", retrain
            assert retrain["data"] == f"the configured source (1500 rows) + {len(batch)} labelled rows of the window"
            blessing = json.loads((Path(retrain["run_folder"]) / "05_evaluation" / "blessing.json").read_text())
            assert blessing["production_version"] == "v0001" and blessing["production"] is not None
            assert blessing["accepted"] is True, blessing["reason"]
            assert blessing["new"]["roc_auc"] - blessing["production"]["roc_auc"] > -0.05
            assert retrain["accepted"] is True and retrain["model_version"] == "v0002"
            assert registry_of(project).production_version() == "v0002"

            # 5. the running service swaps to v0002 on its next poll and scores with it
            wait_until(lambda: health_version(server.port) == "v0002", 30, what="the service to load v0002")
            probe = records[:5]

            def every_worker_switched() -> bool:  # each worker polls on its own: ten v0002 answers in a row
                return all(post_json(server.port, "/predict", {"records": probe})[1].get("model_version") == "v0002"
                           for _ in range(10))

            wait_until(every_worker_switched, 30, what="every worker to load v0002")
            new_model, _ = registry_of(project).load_model("v0002")
            for _ in range(4):
                status, answer = post_json(server.port, "/predict", {"records": probe})
                assert status == 200 and answer["model_version"] == "v0002", answer
            expected = new_model.predict_proba(pd.DataFrame.from_records(probe))
            np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], expected, rtol=1e-6)
            wait_until(lambda: store.count_predictions(version="v0002") >= 5, 60, interval=0.1,
                       what="the v0002 predictions to be logged")
    finally:
        store.close()

    # 6. the history: runs, links, lineage both ways
    with HistoryStore.open(f"sqlite:///{root / 'registry' / 'history.sqlite'}") as store:
        trains = store.runs(kind="train")
        assert sorted(trains["model_version"]) == ["v0001", "v0002"] and set(trains["status"]) == {"succeeded"}
        retrain_run = store.run(Path(retrain["run_folder"]).name)
        assert retrain_run["source"] == f"file {retrain['data_file']}"
        assert retrain_run["rows"] == 1500 + len(batch) and retrain_run["trigger_run_id"] == done["run_id"]
        monitors = store.runs(kind="monitor")
        assert set(monitors["run_id"]) == {result["run_id"], done["run_id"]} and set(monitors["status"]) == {"succeeded"}
        assert len(store.runs(kind="outcomes")) == 1
        assert sorted(store.alerts(version="v0001")["run_id"]) == sorted([result["run_id"], done["run_id"]])
        assert store.drift(version="v0002").empty and store.alerts(version="v0002").empty

    old = json.loads(ok(cli("lineage", "v0001", "--config", project, "--json")).stdout)
    assert old["is_production"] is False
    assert {r["run_id"] for r in old["monitor_runs"]} == {result["run_id"], done["run_id"]}
    named = [w for w in old["windows"] if w["window_start"] and pd.Timestamp(w["window_start"]) == start]
    assert [(w["metric"], w["realised"], w["estimated"]) for w in named if w["metric"] == "roc_auc"] == [
        ("roc_auc", pytest.approx(realised["roc_auc"]), pytest.approx(estimated["roc_auc"]))]
    first = [d for d in old["drift"] if d["run_id"] == result["run_id"]]     # the score's PSI is not a feature
    assert [(d["features"], d["drifted"]) for d in first] == [(len(result["psi"]), len(fired))]
    assert first[0]["max_psi"] == pytest.approx(max(r["psi"] for r in result["psi"].values()))
    assert first[0]["score_psi"] == pytest.approx(result["score_psi"]["psi"])
    assert pd.Timestamp(first[0]["window_start"]) == start
    assert sorted(a["run_id"] for a in old["alerts"]) == sorted([result["run_id"], done["run_id"]])
    assert {a["rule"] for a in old["alerts"]} == {result["alert"]["key"].split("|", 1)[1]}
    assert old["predictions"]["logged"] == len(batch) and old["predictions"]["labelled"] == len(batch)
    new = json.loads(ok(cli("lineage", "v0002", "--config", project, "--json")).stdout)
    assert new["is_production"] is True
    assert new["training"]["run_id"] == Path(retrain["run_folder"]).name
    assert new["training"]["source"] == f"file {retrain['data_file']}"
    assert new["predictions"]["logged"] >= 5
    trigger = new["training"]["triggered_by"]                   # back from v0002 to the window and alert behind it
    assert (trigger["run_id"], trigger["model_version"], trigger["rows"]) == (done["run_id"], "v0001", len(batch))
    assert trigger["window"] == done["window"]["description"]
    assert pd.Timestamp(trigger["window_start"]) == pd.Timestamp(done["window"]["start"])
    assert [a["rule"] for a in trigger["alerts"]] == [done["alert"]["key"].split("|", 1)[1]]
    assert old["training"]["triggered_by"] is None
    text = ok(cli("lineage", "v0002", "--config", project)).stdout
    assert f"retrained after monitoring run {done['run_id']} of v0001" in " ".join(text.split())

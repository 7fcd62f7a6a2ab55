"""`tabpipe monitor` end to end on generated data: train -> monitor a shifted file with labels -> retrain
decision -> alert (failed, delivered, suppressed) -> `--retrain` runs the gate; the prediction-log window;
usage errors. Real subprocesses of the installed CLI, a real local webhook, the real SQLite history store."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from service_helpers import REPO_SCHEMA, TABPIPE_BIN, json_records
from tabpipe.monitoring.monitor import parse_since
from tabpipe.history.store import HistoryStore
from tabpipe.sources.sample import generate
from webhook_server import Hook

HOOK_ENV = "TABPIPE_ALERT_WEBHOOK_URL"
LOGREG = {"candidates": [{"name": "logreg", "class": "sklearn.linear_model.LogisticRegression",
                          "params": {"max_iter": 1000}}]}


def monitor_cli(config: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != HOOK_ENV}
    return subprocess.run([str(TABPIPE_BIN), "monitor", "--config", str(config), *args], capture_output=True, text=True,
                          timeout=timeout, env={**full_env, **(env or {})})


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained project (v0001, logistic regression on 3,000 rows) with evidently drift on (sampled at 500 rows)."""
    root = tmp_path_factory.mktemp("monitor") / "p"
    root.mkdir()
    (root / "schema.yaml").write_text(yaml.safe_dump(REPO_SCHEMA, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG))
    generate(3000, seed=0).to_csv(root / "data.csv", index=False)
    config = root / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"type": "file", "path": "data.csv"}, "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0},
        "validation": {"drift": {"enabled": True, "max_rows": 500, "reference_rows": 1000}},
        "transformation": {"resampling": "smote"},
        "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 60, "n_jobs": 1},
        "evaluation": {"min_score": 0.55, "min_improvement": -1.0},   # the retrain is accepted: the gate runs either way
        "registry": {"backend": "local", "path": "registry"},
        "monitoring": {"alerts": {"timeout_s": 1, "retries": 1, "backoff_s": 0.05, "total_s": 3, "cooldown_s": 3600}},
    }, sort_keys=False))
    done = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(config.read_text())   # the same project without evidently (slow), for most tests
    doc["validation"]["drift"]["enabled"] = False
    (root / "fast.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    generate(2000, seed=11, shift=1.0).to_csv(root / "shifted.csv", index=False)
    generate(2000, seed=12).to_csv(root / "same.csv", index=False)
    return config


def fast(config: Path) -> Path:
    """The project's config with evidently off (PSI, estimate, governance, store and alerts unchanged)."""
    return config.parent / "fast.yaml"


def store_of(config: Path) -> HistoryStore:
    return HistoryStore.open(f"sqlite:///{config.parent / 'registry' / 'history.sqlite'}")


def test_training_run_publishes_a_profile_and_writes_its_dashboard(project):
    registry = project.parent / "registry" / "versions" / "v0001"
    meta = json.loads((registry / "metadata.json").read_text())
    assert "profile.json" in meta["files"] and len(meta["files"]["profile.json"]["sha256"]) == 64
    profile = json.loads((registry / "profile.json").read_text())
    assert profile["calibration"]["method"] in ("isotonic", "platt")
    assert "timestamp" in profile["skipped"] and "latency_ms" in profile["features"]
    pusher = next((project.parent / "artifacts").glob("*/06_pusher"))
    assert (pusher / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (pusher / "report.html").read_text()
    assert "data:image/png;base64," in report
    assert str(project.parent) not in report and "../02_validation/" in report   # served at /dashboard: no server paths


def test_shifted_file_is_flagged_reported_stored_and_alerted(project):
    hooks = [Hook(["500"]), Hook(["ok"])]
    try:
        # 1. the webhook answers 500: the run still completes, and the failed delivery is recorded
        first = monitor_cli(project, "--input", str(project.parent / "shifted.csv"), "--labels", "fault_flag", "--json",
                            env={HOOK_ENV: hooks[0].url})
        assert first.returncode == 3, first.stderr
        result = json.loads(first.stdout)                       # ONE JSON document on stdout
        assert result["decision"] == "retrain"
        rules = {r["rule"] for r in result["reasons"]}
        assert "psi_retrain" in rules
        for reason in result["reasons"]:
            assert reason["window"] == "file shifted.csv" and reason["rows"] == 2000
            assert {"observed", "threshold", "message"} <= set(reason)
        assert max(r["psi"] for r in result["psi"].values()) >= 0.2
        realised, estimated = result["metrics"]["realised"], result["metrics"]["estimated"]
        assert realised["rows"] == 2000 and set(realised["confusion"]) == {"tn", "fp", "fn", "tp"}
        assert 0.5 < estimated["roc_auc"] < 1 and estimated["assumptions"]
        assert result["alert"]["delivery"]["status"] == "failed" and len(hooks[0].bodies) == 2   # 1 + 1 retry
        assert hooks[0].bodies[0]["text"].startswith("tabpipe monitor: RETRAIN for model v0001")
        reports = result["reports"]
        assert Path(reports["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "decision: retrain" in Path(reports["html"]).read_text()
        assert str(project.parent) not in Path(reports["html"]).read_text()
        assert Path(reports["evidently_html"]).is_file() and Path(reports["evidently_json"]).is_file()
        assert "sample of 500 of the window's 2000 rows" in result["drift"]["sample_note"]
        assert result["quality"]["rows"] == 2000
        # 2. a working webhook: delivered (the failed one does not count for the cool-down)
        second = json.loads(monitor_cli(fast(project), "--input", str(project.parent / "shifted.csv"), "--json",
                                        env={HOOK_ENV: hooks[1].url}).stdout)
        assert second["alert"]["delivery"]["status"] == "sent" and len(hooks[1].bodies) == 1
        assert second["metrics"]["realised"] is None and second["metrics"]["estimated"] is not None   # no --labels
        # 3. the same alert again within the cool-down: suppressed, not sent
        third = json.loads(monitor_cli(fast(project), "--input", str(project.parent / "shifted.csv"), "--json",
                                       env={HOOK_ENV: hooks[1].url}).stdout)
        assert third["alert"]["delivery"]["status"] == "suppressed" and len(hooks[1].bodies) == 1
    finally:
        for hook in hooks:
            hook.close()
    with store_of(project) as store:
        runs = store.runs(kind="monitor")
        assert set(runs["run_id"]) >= {result["run_id"], second["run_id"], third["run_id"]}
        assert set(runs["status"]) == {"succeeded"}
        alerts = store.alerts(version="v0001")
        assert sorted(alerts["status"]) == ["delivered", "failed", "suppressed"]
        trend = store.metric_trend("v0001", "roc_auc")
        first_window = trend.dropna(subset=["realised"]).iloc[0]
        assert first_window["realised"] == pytest.approx(realised["roc_auc"])
        assert first_window["estimated"] == pytest.approx(estimated["roc_auc"])    # side by side, same window
        drift = store.drift(run_id=result["run_id"])
        assert "__score__" in set(drift["feature"]) and "drift" in set(drift["verdict"])


def test_unshifted_file_is_not_a_retrain(project):
    done = monitor_cli(fast(project), "--input", str(project.parent / "same.csv"), "--labels", "fault_flag", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["decision"] in ("ok", "watch")
    assert not [r for r in result["reasons"] if r["level"] == "retrain"]
    assert result["metrics"]["realised"]["roc_auc"] > 0.7


def test_retrain_runs_the_gate_on_source_plus_labelled_rows(project):
    done = monitor_cli(fast(project), "--input", str(project.parent / "shifted.csv"), "--labels", "fault_flag",
                       "--retrain", "--append-labelled", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    retrain = json.loads(done.stdout)["retrain"]
    assert retrain["status"] == "succeeded"
    assert retrain["data"] == "the configured source (3000 rows) + 2000 labelled rows of the window"
    assert len(pd.read_csv(retrain["data_file"])) == 5000
    blessing = json.loads((Path(retrain["run_folder"]) / "05_evaluation" / "blessing.json").read_text())
    assert blessing["production_version"] == "v0001" and blessing["production"] is not None   # the gate compared
    assert retrain["accepted"] == blessing["accepted"] and retrain["decision"] == blessing["reason"]
    if retrain["accepted"]:
        assert retrain["model_version"] == "v0002"
    with store_of(project) as store:                       # the retraining run is in the history like any other
        recorded = store.run(Path(retrain["run_folder"]).name)
        assert recorded["kind"] == "train" and recorded["status"] == "succeeded"
        assert recorded["source"] == f"file {retrain['data_file']}"


def test_prediction_log_window(project, tmp_path):
    """--since: logged inputs, probabilities and outcomes from the store (rows written as the service would)."""
    from helpers import registry_of

    from tabpipe.config import load_settings

    settings = load_settings(project)
    model, meta = registry_of(project).load_model()
    rows = generate(800, seed=21, shift=1.0)
    records = json_records(rows, settings.schema_.features)
    proba = model.predict_proba(pd.DataFrame.from_records(records))
    with store_of(project) as store:
        store.log_predictions([{"request_id": "req", "row_index": i, "model_version": meta["version"], "inputs": rec,
                                "probability": float(p), "prediction": None} for i, (rec, p) in enumerate(zip(records, proba))])
        store.attach_outcomes({f"req:{i}": int(y) for i, y in enumerate(rows["fault_flag"])})
    done = monitor_cli(fast(project), "--since", "1d", "--json")
    assert done.returncode in (0, 3), done.stderr
    result = json.loads(done.stdout)
    assert result["model_version"] == meta["version"] and result["window"]["rows"] == 800
    assert result["window"]["labelled_rows"] == 800 and result["window"]["description"].startswith("log ")
    assert result["metrics"]["realised"]["rows"] == 800
    assert all(r["status"] == "ok" for r in result["psi"].values())
    strict = monitor_cli(fast(project), "--since", "2020-01-01", "--until", "2020-01-02", "--json").stdout
    empty = json.loads(strict, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))   # NaN -> null
    assert empty["window"]["rows"] == 0 and empty["decision"] == "ok"
    assert any(n.startswith("psi: no feature has enough rows") for n in empty["not_checked"])


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "exactly one of --since"),
    (["--since", "7d", "--input", "x.csv"], 2, "exactly one of --since"),
    (["--since", "7d", "--labels", "y"], 2, "--labels names a column of --input"),
    (["--since", "soon"], 2, "expected a duration such as 7d"),
    (["--input", "shifted.csv", "--append-labelled"], 2, "--append-labelled only applies with --retrain"),
    (["--input", "shifted.csv", "--labels", "nope"], 1, "no column 'nope' for --labels"),
    (["--input", "missing.csv"], 1, "data file not found"),
])
def test_usage_and_data_errors(project, args, code, message):
    """In process (typer's runner): the checks happen before anything is written."""
    from typer.testing import CliRunner

    from tabpipe.cli import app

    args = [str(project.parent / a) if a.endswith(".csv") else a for a in args]
    done = CliRunner().invoke(app, ["monitor", "--config", str(fast(project)), *args], env={"COLUMNS": "200"})
    assert done.exit_code == code, done.output
    assert message in " ".join(done.output.split())


def test_parse_since():
    from datetime import datetime, timezone

    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert parse_since("7d", now) == datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90m", now) == datetime(2026, 11, 30, 10, 30, tzinfo=timezone.utc)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="expected a duration"):
        parse_since("last week", now)

"""The Airflow DAGs, for real: Airflow 3 in its own virtualenv (.venv-airflow, built by `make test`), SQLite
metadata in a temporary AIRFLOW_HOME, each DAG run end to end with `airflow dags test` on the bundled data.

The tasks run the project's own tabpipe executable, so Airflow's pins never touch tabpipe's environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TABPIPE_BIN

from tabpipe.orchestration.spec import RUN_NAME, dag_specs
from tabpipe.sources.sample import generate
from tabpipe.stages import STAGES

AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
pytestmark = pytest.mark.skipif(not AIRFLOW.exists() and not os.environ.get("CI"),
                                reason="Airflow's virtualenv .venv-airflow is built by `make test`")

# Fails the FIRST attempt of the trainer task by killing tabpipe while the trainer stage runs (a crash, not a
# clean error), then behaves as tabpipe: Airflow's retry must redo the trainer alone, reusing the stages before.
CRASH_ONCE = """#!{python}
import json, os, signal, subprocess, sys, time
from pathlib import Path
args = sys.argv[1:]
marker = Path({marker!r})
if "--until" in args and args[args.index("--until") + 1] == "trainer" and not marker.exists():
    marker.write_text("crashed once")
    proc = subprocess.Popen([{tabpipe!r}, *args])
    run_json = Path({artifacts!r}) / args[args.index("--run-name") + 1] / "run.json"
    for _ in range(6000):
        try:
            if json.loads(run_json.read_text())["stages"].get("trainer", {{}}).get("status") == "running":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    time.sleep(0.5)                      # well inside the stage: it has logged its start and is fitting
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sys.exit(1)
os.execv({tabpipe!r}, [{tabpipe!r}, *args])
"""


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "data" / "network_kpis.csv", root / "network_kpis.csv")
    shutil.copy(REPO / "schema.yaml", root / "schema.yaml")
    (root / "model.yaml").write_text(yaml.safe_dump({"candidates": [
        {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}]}))
    shifted = generate(3000, seed=5, shift=1.0)
    shifted.drop(columns=["fault_flag"]).to_csv(root / "new_rows.csv", index=False)
    wrapper = root / "tabpipe_crash_once"
    wrapper.write_text(CRASH_ONCE.format(python=sys.executable, marker=str(root / "crashed"), tabpipe=str(TABPIPE_BIN),
                                         artifacts=str(root / "artifacts")))
    wrapper.chmod(0o755)
    config = {
        "source": {"type": "file", "path": "network_kpis.csv"}, "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0}, "transformation": {"resampling": "smote"},
        "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 30, "n_jobs": 1},
        "registry": {"backend": "local", "path": "registry"},
        "monitoring": {"log_predictions": True},      # the inference DAG's rows are what monitoring reads
        "orchestration": {
            "tabpipe_bin": str(wrapper),
            "training": {"retries": 1, "retry_delay_s": 0},
            "inference": {"enabled": True, "input": "new_rows.csv", "output": "predictions/scored_{run_ts}.csv",
                          "retries": 0},
            "monitoring": {"since": "1d", "retries": 0},
        },
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root / "pipeline.yaml"


def _airflow(env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _states(env: dict, dag_id: str) -> tuple[str, dict[str, str], str]:
    runs = json.loads(_airflow(env, "dags", "list-runs", dag_id, "-o", "json").stdout.strip().splitlines()[-1])
    assert len(runs) == 1, runs
    tasks = json.loads(_airflow(env, "tasks", "states-for-dag-run", dag_id, runs[0]["run_id"], "-o", "json")
                       .stdout.strip().splitlines()[-1])
    return runs[0]["state"], {t["task_id"]: t["state"] for t in tasks}, runs[0]["run_id"]


def test_specs_follow_the_pipeline_stage_list(tmp_path):
    specs = dag_specs(_project(tmp_path))
    training = specs["tabpipe_training"]
    assert [t.task_id for t in training.tasks] == list(STAGES)
    assert list(training.edges) == list(zip(STAGES, STAGES[1:]))
    assert all(RUN_NAME in t.argv and t.argv[-1] == t.task_id for t in training.tasks)
    assert {"tabpipe_inference", "tabpipe_monitoring"} <= set(specs)
    monitoring = specs["tabpipe_monitoring"]
    assert [t.task_id for t in monitoring.tasks][:2] == ["compact_log", "monitor"]
    assert ("compact_log", "monitor") in monitoring.edges
    assert monitoring.command("compact_log").split()[1:3] == ["log", "compact"]


def test_the_three_dags_run_end_to_end_in_airflow(tmp_path):
    config = _project(tmp_path / "project")
    home = tmp_path / "airflow"
    dag_file = tmp_path / "dags" / "tabpipe_dags.py"
    dag_file.parent.mkdir()
    shutil.copy(REPO / "dags" / "tabpipe_dags.py", dag_file)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_VAR_TABPIPE_CONFIG": str(config),
           "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    assert _airflow(env, "db", "migrate").returncode == 0
    parsed = _airflow(env, "dags", "reserialize")
    assert parsed.returncode == 0, parsed.stderr[-3000:]

    # training: one task per stage; the trainer's first attempt is killed mid-stage and retried alone
    proc = _airflow(env, "dags", "test", "tabpipe_training")
    state, tasks, run_id = _states(env, "tabpipe_training")
    assert state == "success", proc.stdout[-5000:] + proc.stderr[-5000:]
    assert tasks == {stage: "success" for stage in STAGES}
    assert (config.parent / "crashed").exists()                      # the crash did happen
    run_dirs = [p for p in (config.parent / "artifacts").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1                                        # every task and the retry shared one folder
    record = json.loads((run_dirs[0] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["accepted"] is True and record["model_version"] == "v0001"
    log = (run_dirs[0] / "run.log").read_text()
    assert log.count("stage trainer started") == 2                   # the crashed attempt and the retry
    assert log.count("stage ingestion started") == 1                 # ...which did not redo the earlier stages
    assert "stage ingestion already succeeded in this run folder: reused" in log

    # batch inference: scores the (shifted) new rows with the production model, output per run
    proc = _airflow(env, "dags", "test", "tabpipe_inference")
    state, tasks, _ = _states(env, "tabpipe_inference")
    assert state == "success", proc.stdout[-5000:] + proc.stderr[-5000:]
    outputs = list((config.parent / "predictions").glob("scored_*.csv"))
    assert len(outputs) == 1
    import pandas as pd

    scored = pd.read_csv(outputs[0])
    assert len(scored) == 3000 and scored["probability"].notna().all()

    # monitoring: the logged predictions of the shifted batch drift -> decision retrain -> the retrain branch
    proc = _airflow(env, "dags", "test", "tabpipe_monitoring")
    state, tasks, _ = _states(env, "tabpipe_monitoring")
    assert state == "success", proc.stdout[-5000:] + proc.stderr[-5000:]
    assert tasks["compact_log"] == "success" and tasks["monitor"] == "success" and tasks["decide"] == "success"
    assert tasks["retrain"] == "success" and tasks["keep_model"] == "skipped"
    runs = sorted(p.parent for p in (config.parent / "artifacts").glob("*/run.json"))   # training runs only
    assert len(runs) == 2                                            # the retraining run
    assert json.loads((runs[-1] / "run.json").read_text())["status"] == "succeeded"

"""`tabpipe monitor --since` over the columnar (Parquet) prediction log gives the same verdicts and statistics
as over the SQL log holding the same rows; evidently's HTML is written on demand (``--report``) only.
Real subprocesses of the installed CLI, two real SQLite history stores (one per log format)."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service_helpers import REPO_SCHEMA, TABPIPE_BIN, json_records
from tabpipe.sources.sample import generate

URL_ENV = "TABPIPE_HISTORY_URL"
LOGREG = {"candidates": [{"name": "logreg", "class": "sklearn.linear_model.LogisticRegression",
                          "params": {"max_iter": 1000}}]}
ROWS = 1500


def monitor_cli(config: Path, url: str, *args: str) -> dict:
    env = {**{k: v for k, v in os.environ.items() if k != "TABPIPE_ALERT_WEBHOOK_URL"}, URL_ENV: url}
    done = subprocess.run([str(TABPIPE_BIN), "monitor", "--config", str(config), *args, "--json"], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode in (0, 3), done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A trained project (evidently's rules on, sampled at 500 rows) and two configs of it: the SQL log and the
    Parquet log, each with its own store holding the same logged rows (over 5 hours; 40 % with outcomes)."""
    root = tmp_path_factory.mktemp("columnar") / "p"
    root.mkdir()
    (root / "schema.yaml").write_text(yaml.safe_dump(REPO_SCHEMA, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG))
    generate(3000, seed=0).to_csv(root / "data.csv", index=False)
    doc = {"source": {"type": "file", "path": "data.csv"}, "schema": "schema.yaml",
           "run": {"artifacts_dir": "artifacts", "seed": 0},
           "validation": {"drift": {"enabled": True, "max_rows": 500, "reference_rows": 1000}},
           "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 60, "n_jobs": 1},
           "evaluation": {"min_score": 0.55}, "registry": {"backend": "local", "path": "registry"},
           "monitoring": {"log_predictions": True, "alerts": {"timeout_s": 1, "retries": 0}}}
    configs = {}
    for kind in ("sql", "parquet"):
        configs[kind] = root / f"{kind}.yaml"
        configs[kind].write_text(yaml.safe_dump({**doc, "monitoring": {**doc["monitoring"], "log": {"format": kind}}},
                                                sort_keys=False))
    done = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(configs["sql"])], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    urls = {kind: f"sqlite:///{root / kind / 'history.sqlite'}" for kind in configs}
    _log_rows(configs, urls)
    return configs, urls


def _log_rows(configs: dict, urls: dict, writes: int = 1) -> None:
    """The same rows written to both stores the way the service writes them (``open_history``, ``RowFormat``):
    each request of 300 rows in ``writes`` writes (a file each)."""
    from helpers import registry_of

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history, row_format

    rows = generate(ROWS, seed=21, shift=0.6)
    now = datetime.now(timezone.utc)
    for kind, config in configs.items():
        settings = load_settings(config)
        model, meta = registry_of(config).load_model()
        records = json_records(rows, ["measurement_id", *settings.schema_.features])
        proba = model.predict_proba(pd.DataFrame.from_records(records))
        fmt = row_format(settings, {})
        with open_history(settings, {URL_ENV: urls[kind]}) as store:
            assert store.log_format == kind
            for start in range(0, ROWS, 300):         # five requests, one per hour
                logged = fmt.rows(f"req-{start}", meta["version"], records[start:start + 300], proba[start:start + 300],
                                  [int(p >= model.threshold) for p in proba[start:start + 300]],
                                  logged_at=now - timedelta(hours=5 - start // 300))
                for part in np.array_split(np.arange(len(logged)), writes):
                    assert store.log_predictions([logged[i] for i in part]) == len(part)
            labelled = np.random.default_rng(3).random(ROWS) < 0.4
            logged = store.predictions(with_inputs=False)      # each row's id as the log keeps it
            place = {(r, i): int(r.removeprefix("req-")) + i for r, i in zip(logged["request_id"], logged["row_index"])}
            ids = {place[(r, i)]: row_id for r, i, row_id in zip(logged["request_id"], logged["row_index"], logged["row_id"])}
            assert store.attach_outcomes({ids[i]: int(y) for i, (y, keep) in enumerate(zip(rows["fault_flag"], labelled))
                                          if keep}) == labelled.sum()


def comparable(result: dict) -> dict:
    """What must not depend on the log's format: the decision and everything it was made from (not the window's
    description: each run names its own clock time)."""
    keep = ("decision", "reasons", "not_checked", "metrics", "psi", "score_psi", "multivariate", "concept", "quality")
    out = {k: result[k] for k in keep}
    out["window"] = {k: result["window"][k] for k in ("rows", "scored_rows", "labelled_rows")}
    out["drift"] = {k: result["drift"].get(k) for k in ("status", "drift_share", "drifted_columns", "current_rows",
                                                        "window_rows")}
    text = json.dumps(out).replace(result["run_id"], "RUN").replace(result["window"]["description"], "WINDOW")
    return json.loads(text)


def test_parquet_and_sql_logs_give_the_same_verdicts(project):
    configs, urls = project
    sql = monitor_cli(configs["sql"], urls["sql"], "--since", "1d")
    col = monitor_cli(configs["parquet"], urls["parquet"], "--since", "1d")
    assert sql["window"]["rows"] == ROWS and sql["window"]["labelled_rows"] > 0.3 * ROWS
    assert sql["metrics"]["realised"] is not None and sql["psi"]
    assert sql["drift"]["drift_share"] is not None            # evidently's rules, computed natively
    assert comparable(col) == comparable(sql)
    assert list(Path(urls["parquet"].removeprefix("sqlite:///")).parent.glob("prediction_log/hour=*/*.parquet"))
    assert not list(Path(urls["sql"].removeprefix("sqlite:///")).parent.glob("prediction_log/**/*.parquet"))
    # a window of the last 2 hours only: again the same, and smaller
    part = [monitor_cli(configs[k], urls[k], "--since", "2h") for k in ("sql", "parquet")]
    assert comparable(part[0]) == comparable(part[1]) and 0 < part[0]["window"]["rows"] < ROWS


def test_evidently_html_only_on_demand(project):
    configs, urls = project
    plain = monitor_cli(configs["parquet"], urls["parquet"], "--since", "1d")
    assert plain["reports"]["evidently_html"] is None and "--report" in plain["drift"]["report_note"]
    assert not (Path(plain["reports"]["html"]).parent / "drift_report.html").exists()
    asked = monitor_cli(configs["parquet"], urls["parquet"], "--since", "1d", "--report")
    page = Path(asked["reports"]["evidently_html"]).read_text()
    assert "sample of 500 of the window" in page
    assert comparable(asked) == comparable(plain)             # the report changes no verdict


def test_compacting_the_log_changes_no_monitoring_result(project, tmp_path):
    """``tabpipe log compact`` merges each closed hour's small files (here six per hour) into one; a monitoring
    run over the window gives exactly what it gave before, and the replaced files wait for their grace period."""
    configs, _ = project
    url = f"sqlite:///{tmp_path / 'many' / 'history.sqlite'}"
    (tmp_path / "many").mkdir()
    _log_rows({"parquet": configs["parquet"]}, {"parquet": url}, writes=6)
    files = list((tmp_path / "many").glob("prediction_log/hour=*/*.parquet"))
    assert len(files) == 30
    before = monitor_cli(configs["parquet"], url, "--since", "1d")
    env = {**os.environ, URL_ENV: url}
    done = subprocess.run([str(TABPIPE_BIN), "log", "compact", "--config", str(configs["parquet"]), "--older-than",
                           "1min", "--json"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files_before"] >= 24 and report["files_after"] == report["groups"] >= 4 and report["skipped"] == []
    assert all(f.exists() for f in files)                      # replaced files kept for --grace (1h)
    after = monitor_cli(configs["parquet"], url, "--since", "1d")
    assert after["window"]["rows"] == ROWS and comparable(after) == comparable(before)
    bad = subprocess.run([str(TABPIPE_BIN), "log", "compact", "--config", str(configs["parquet"]), "--grace", "soon"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode == 2 and "--grace" in bad.stderr and "bad duration 'soon'" in bad.stderr

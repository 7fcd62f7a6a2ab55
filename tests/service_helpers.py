"""Shared builders and fixtures for the prediction-service tests (test_service*.py, test_form_browser.py).

The expensive part, trained projects with a filled registry, is built ONCE per test process
(``build_project`` memoises on a module global, so the session fixtures of several test modules
share one build). Tests that move the production pointer work on a copy (``copy_project``).

Projects (each a folder: data.csv, schema.yaml, model.yaml, pipeline.yaml, registry/, artifacts/;
every path in pipeline.yaml is relative, so a copied folder is an independent project):

- ``main``: the repo's schema.yaml; v0001 = RandomForest (data seed 0), v0002 = LogisticRegression
  (data seed 1, accepted with ``evaluation.min_improvement: -1``); production ends on v0002.
- ``ext``: the repo schema plus a nullable bool column, nulls injected into the datetime and other
  nullable columns; v0001 = HistGradientBoosting (generic estimator path), v0002 = LogisticRegression.
"""
from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import tabpipe  # noqa: F401
from helpers import registry_of
from tabpipe.sources.sample import generate

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
TABPIPE_BIN = VENV_BIN / "tabpipe"
TARGET = "fault_flag"
REPO_SCHEMA: dict = yaml.safe_load((REPO / "schema.yaml").read_text())
POLL_S = 0.2

RANDOM_FOREST = {"candidates": [{"name": "random_forest", "class": "sklearn.ensemble.RandomForestClassifier",
                                 "params": {"n_estimators": 30, "n_jobs": 1}}]}
LOGREG = {"candidates": [{"name": "logreg", "class": "sklearn.linear_model.LogisticRegression",
                          "params": {"max_iter": 1000}}]}
HGB = {"candidates": [{"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                       "params": {"max_iter": 40, "early_stopping": False}}]}

BOOL_COLUMN = "maintenance_mode"


def ext_schema() -> dict:
    """The repo schema plus a nullable bool feature."""
    doc = copy.deepcopy(REPO_SCHEMA)
    doc["columns"][BOOL_COLUMN] = {"type": "bool", "description": "cell in a maintenance window"}
    return doc


def ext_data(rows: int, seed: int) -> pd.DataFrame:
    """Generated rows + the bool column (related to the target), with nulls in nullable columns."""
    df = generate(rows, seed=seed)
    rng = np.random.default_rng(seed + 100)
    flag = (df[TARGET].to_numpy() == 1) & (rng.random(rows) < 0.5) | (rng.random(rows) < 0.1)
    col = pd.Series(flag, dtype=object)
    col[rng.random(rows) < 0.1] = None
    df[BOOL_COLUMN] = col
    df.loc[rng.random(rows) < 0.05, "timestamp"] = None
    df.loc[rng.random(rows) < 0.05, "sinr_db"] = None
    df.loc[rng.random(rows) < 0.05, "vendor"] = None
    return df


# --------------------------------------------------------------------------- projects


def write_pipeline(root: Path, name: str = "pipeline.yaml", *, data: str = "data.csv", models: str = "model.yaml",
                   seed: int = 0, serve: dict | None = None, evaluation: dict | None = None,
                   registry: str = "registry") -> Path:
    """A pipeline.yaml in ``root`` (relative paths), cheap training settings, fast model polling."""
    doc = {
        "source": {"type": "file", "path": data},
        "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": seed},
        "split": {"test_size": 0.2},
        "validation": {"on_invalid_rows": "fail", "drift": {"enabled": False}},  # drift reports are slow, not under test
        "transformation": {"resampling": "smote"},
        "training": {"models": models, "cv_folds": 3, "metric": "roc_auc", "time_budget_s": 60, "n_jobs": 1,
                     "min_cv_score": 0.0},
        # max_chance_p off: a few positives in these test splits cannot show a model better than chance
        "evaluation": {"metric": "roc_auc", "min_score": 0.55, "min_improvement": 0.0, "max_chance_p": None,
                       **(evaluation or {})},
        "registry": {"backend": "local", "path": registry},
        "serve": {"poll_interval_s": POLL_S, **(serve or {})},
    }
    path = Path(root) / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_variant(config: Path, name: str, **serve) -> Path:
    """Copy of ``config`` (same folder, same registry) with the ``serve:`` section updated."""
    doc = yaml.safe_load(Path(config).read_text())
    doc["serve"] = {**doc.get("serve", {}), **serve}
    path = Path(config).parent / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def train(config: Path):
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline

    return TrainingPipeline(load_settings(config), environ=os.environ).run()


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path          # pipeline.yaml (registry ./registry)
    versions: tuple       # ("v0001", "v0002")
    candidates: tuple     # candidate name per version

    def registry(self):
        return registry_of(self.config)


def _build_project(root: Path, schema: dict, frames: list[pd.DataFrame], models: list[dict]) -> Project:
    root.mkdir(parents=True)
    (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    versions, names = [], []
    for i, (df, cand) in enumerate(zip(frames, models)):
        data, model_file = f"data{i + 1}.csv", f"model{i + 1}.yaml"
        df.to_csv(root / data, index=False)
        (root / model_file).write_text(yaml.safe_dump(cand, sort_keys=False))
        cfg = write_pipeline(root, f"train{i + 1}.yaml", data=data, models=model_file, seed=i,
                             evaluation={"min_improvement": -1.0} if i else None)
        run = train(cfg)
        assert run.record["accepted"], run.record["decision"]
        versions.append(run.record["model_version"])
        names.append(cand["candidates"][0]["name"])
    assert versions == [f"v{i + 1:04d}" for i in range(len(frames))], versions
    # the serving config: first data/model files, relative registry
    config = write_pipeline(root, "pipeline.yaml", data="data1.csv", models="model1.yaml")
    return Project(root, config, tuple(versions), tuple(names))


_BUILT: dict[str, Project] = {}
_BUILD_LOCK = threading.Lock()


def build_project(tmp_path_factory, key: str) -> Project:
    """The trained project ``key`` ("main" or "ext"), built once per test process.

    Test modules wrap it in their own session fixture (``return build_project(tmp_path_factory, "main")``);
    the memo makes every module share the same folder, so the training cost is paid once.
    """
    with _BUILD_LOCK:
        if key not in _BUILT:
            base = tmp_path_factory.mktemp(f"service-{key}")
            if key == "main":
                _BUILT[key] = _build_project(base / "project", REPO_SCHEMA,
                                             [generate(2000, seed=0), generate(2000, seed=1)], [RANDOM_FOREST, LOGREG])
            elif key == "ext":
                _BUILT[key] = _build_project(base / "project", ext_schema(), [ext_data(2000, 2), ext_data(2000, 3)],
                                             [HGB, LOGREG])
            else:
                raise KeyError(key)
        return _BUILT[key]


def copy_project(project: Project, dest: Path, production: str | None = None) -> Path:
    """Independent copy of a project folder (registry included); returns its pipeline.yaml."""
    shutil.copytree(project.root, dest, ignore=shutil.ignore_patterns("artifacts"))
    config = Path(dest) / project.config.name
    if production is not None:
        registry_of(config).promote(production)
    return config


# --------------------------------------------------------------------------- records


def json_records(df: pd.DataFrame, features: list[str]) -> list[dict]:
    """Rows as JSON-ready dicts of the feature columns: NaN -> None, timestamps as ISO strings."""
    out = []
    for row in df[features].to_dict(orient="records"):
        rec = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                rec[k] = None
            elif isinstance(v, (np.integer,)):
                rec[k] = int(v)
            elif isinstance(v, (np.floating,)):
                rec[k] = float(v)
            elif isinstance(v, (np.bool_,)):
                rec[k] = bool(v)
            elif isinstance(v, pd.Timestamp):
                rec[k] = v.isoformat()
            else:
                rec[k] = v
        out.append(rec)
    return out


def sample_records(project: Project, n: int, *, seed: int = 0, data: str = "data1.csv") -> list[dict]:
    from tabpipe.schema import Schema

    schema = Schema.model_validate(yaml.safe_load((project.root / "schema.yaml").read_text()))
    df = pd.read_csv(project.root / data)
    return json_records(df.sample(n=n, random_state=seed), schema.features)


# --------------------------------------------------------------------------- real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 30.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(port: int, path: str, payload, timeout: float = 30.0) -> tuple[int, dict]:
    status, _, body = http_request(port, "POST", path, json.dumps(payload).encode(),
                                   {"Content-Type": "application/json"}, timeout)
    return status, json.loads(body)


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - e.g. connection refused while starting
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def health_version(port: int) -> str | None:
    status, _, body = http_request(port, "GET", "/health", timeout=5)
    return json.loads(body).get("model_version") if status == 200 else None


class ServerProcess:
    """``tabpipe serve`` (gunicorn, shipped settings) as a subprocess, with its output in a log file."""

    def __init__(self, config: Path, log_path: Path, workers: int = 2, env: dict | None = None):
        self.config = Path(config)
        self.log_path = Path(log_path)
        self.env = {**os.environ, "GUNICORN_WORKERS": str(workers), "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(self.log_path, "wb")
        self.port_retries = 3
        self._start()

    def _start(self) -> None:
        self.port, self._log_from = free_port(), self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [str(TABPIPE_BIN), "serve", "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.config.parent),
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> str:
        def ready():
            if self.proc.poll() is not None:
                if b"Connection in use" in self.log_path.read_bytes()[self._log_from:] and self.port_retries > 0:
                    # another process took the free port between free_port() and gunicorn's bind: pick again
                    self.port_retries -= 1
                    self._start()
                    return None
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return health_version(self.port)

        try:
            return wait_until(ready, timeout, interval=0.2, what=f"/health on port {self.port}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nserver log:\n{self.log()[-4000:]}") from None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def running_server(config: Path, log_path: Path, **kwargs):
    server = ServerProcess(config, log_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(TABPIPE_BIN), *args], capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- chromium


def ensure_chromium() -> str:
    """Path of a chromium binary; installs the Debian package when missing and running as root.

    Fails (never skips) when it cannot be found or installed: CI must run the browser test.
    """
    found = (os.environ.get("TABPIPE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
             or shutil.which("google-chrome"))
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("chromium is not installed and the tests are not running as root to apt-get install it; "
                    "install the Debian package 'chromium'", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not install chromium ({' '.join(cmd)}): {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(f"could not install chromium: {' '.join(cmd)} exited {done.returncode}:\n"
                        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}", pytrace=False)
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get install chromium succeeded but no 'chromium' binary is on PATH", pytrace=False)
    return found


if __name__ == "__main__":  # ``python tests/service_helpers.py chromium``: pre-install the browser
    if sys.argv[1:] == ["chromium"]:
        print(ensure_chromium())

"""SIGKILL at random points of `tabpipe train`, `tabpipe models promote` and the pusher (pytest -m faults).

After every kill: the production model still loads (and is one that was production before or the one being
promoted), every listed version verifies and loads, run.json is valid JSON; at the end a rerun succeeds.
The kill points are drawn from a seeded generator, so a failure can be replayed.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import TABPIPE_BIN, make_project, registry_of

from faults_figures import record

pytestmark = pytest.mark.faults
POINTS = 20


def _run_json_stage(run_root: Path) -> str | None:
    """The stage a run is in right now (the newest run folder's run.json), or None."""
    runs = sorted(p for p in run_root.iterdir() if p.is_dir()) if run_root.exists() else []
    for folder in reversed(runs):
        try:
            stages = json.loads((folder / "run.json").read_text())["stages"]
        except (OSError, ValueError, KeyError):
            return None
        running = [name for name, entry in stages.items() if entry.get("status") == "running"]
        return running[0] if running else None
    return None


def _check_registry(config: Path, allowed_production: set[str]) -> dict:
    """Every invariant a kill must not break; returns what it saw."""
    registry = registry_of(config)
    production = registry.production_version()
    assert production in allowed_production, f"production {production!r} not in {allowed_production}"
    model, meta = registry.load_model()
    assert meta["version"] == production and model is not None
    versions = [v.version for v in registry.list_versions()]
    for version in versions:
        registry.load_model(version)            # checksums (and signatures) verify, the pickle loads
    for run_json in (config.parent / "artifacts").glob("*/run.json"):
        json.loads(run_json.read_text())        # never a torn run.json
    history = config.parent / "registry" / "history.sqlite"
    if history.exists():                        # the history store (train runs are recorded there)
        import sqlite3

        with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {"production": production, "versions": versions}


@pytest.mark.serial   # timing: run alone, after the parallel phase (make test)
def test_sigkill_at_random_points_never_breaks_production(tmp_path):
    config = make_project(tmp_path, rows=1500, pipeline={"evaluation": {"min_improvement": -1.0}})
    started = time.monotonic()
    first = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    train_seconds = 0.9 * (time.monotonic() - started)   # kill points fall inside a run's length
    rng = random.Random(7)
    kinds = ["train"] * 8 + ["promote"] * 6 + ["pusher"] * 6
    rng.shuffle(kinds)
    seen = []
    for point, kind in enumerate(kinds):
        registry = registry_of(config)
        before = registry.production_version()
        versions = [v.version for v in registry.list_versions()]
        if kind == "promote":
            target = rng.choice(versions)
            proc = subprocess.Popen([str(TABPIPE_BIN), "models", "promote", target, "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            delay = rng.uniform(0.0, 2.5)
            time.sleep(delay)
            allowed = {before, target}
        else:
            target = None
            proc = subprocess.Popen([str(TABPIPE_BIN), "train", "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kind == "pusher":
                deadline = time.monotonic() + 300
                while _run_json_stage(config.parent / "artifacts") != "pusher" and proc.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.005)
                delay = rng.uniform(0.0, 0.3)
            else:
                delay = rng.uniform(0.2, train_seconds)
            time.sleep(delay)
            allowed = None     # a finished run may legitimately have published and promoted a new version
        finished_before_kill = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        after = registry_of(config)
        if allowed is None:
            allowed = {before} | {v.version for v in after.list_versions()}
        state = _check_registry(config, allowed)
        seen.append({"point": point, "kind": kind, "delay_s": round(delay, 3), "finished_before_kill":
                     finished_before_kill, "production": state["production"], "versions": len(state["versions"])})
    rerun = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                           timeout=600)
    record("sigkill", points=len(seen), kinds={k: kinds.count(k) for k in set(kinds)},
           killed_mid_run=sum(not s["finished_before_kill"] for s in seen), rerun_exit=rerun.returncode,
           final_versions=len(registry_of(config).list_versions()))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sum(not s["finished_before_kill"] for s in seen) >= 15, seen   # the kills really hit running processes
    _check_registry(config, {v.version for v in registry_of(config).list_versions()})

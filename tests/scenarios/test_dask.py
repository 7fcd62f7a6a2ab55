"""The search on a Dask cluster (``training.executor.type: dask``): a ``distributed.LocalCluster`` of separate
worker processes gives the same results as the local executor for the same seed, also when a worker is
killed in the middle of the search; the executor's own contract (files scattered once, deadlines)."""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from helpers import make_project, read_run_json, run_dirs, run_pipeline
from tabpipe.config import ExecutorSection
from tabpipe.errors import ConfigError, TabpipeError
from tabpipe.executors.local import Task
from tabpipe.executors.dask import DaskPool, local_cluster
from tabpipe.sources.sample import generate

MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
     "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 2},
    {"name": "weighted_logreg", "class": "sklearn.linear_model.LogisticRegression", "resampling": "none",
     "params": {"max_iter": 300, "class_weight": "balanced"}},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
     "params": {"max_iter": 40, "early_stopping": False}, "search": {"learning_rate": [0.05, 0.2]}, "n_iter": 2},
]}
ROWS = 4000


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as local:
        yield local


def project(root: Path, executor: dict) -> Path:
    return make_project(root, data=generate(ROWS, seed=7), models=MODELS,
                        pipeline={"validation": {"drift": {"enabled": False}},
                                  "training": {"time_budget_s": 600, "n_jobs": 2, "executor": executor}})


def results(config: Path) -> dict:
    """What must not depend on where the tasks ran: every configuration's scores, the choice, the test metrics."""
    import json

    (run_dir,) = run_dirs(config)
    record = read_run_json(run_dir)
    assert record["status"] == "succeeded", record
    trainer = record["stages"]["trainer"]
    cv = json.loads(Path(trainer["artifact"]["cv_results_path"]).read_text())
    return {
        "configs": [(e["candidate"], e["params"], e["resampling"], e["rows"], e["stopped"]) for e in cv],
        "scores": np.array([e["score"] for e in cv] + [s for e in cv for s in e["fold_scores"]], dtype=float),
        "best": (trainer["artifact"]["best_candidate"], trainer["artifact"]["best_params"],
                 trainer["artifact"]["best_resampling"]),
        "cv_score": trainer["artifact"]["cv_score"],
        "threshold": trainer["artifact"]["threshold"],
        "test": record["stages"]["evaluation"]["artifact"]["metrics"],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["configs"] == b["configs"]
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-12)
    assert a["best"] == b["best"]
    assert a["cv_score"] == pytest.approx(b["cv_score"], abs=1e-12)
    assert a["threshold"] == pytest.approx(b["threshold"], abs=1e-12)
    assert a["test"].keys() == b["test"].keys()
    for name, value in a["test"].items():
        assert value == pytest.approx(b["test"][name], abs=1e-12), name


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    config = project(tmp_path_factory.mktemp("local"), {"type": "local"})
    run_pipeline(config)
    return results(config)


def test_dask_search_gives_the_local_results(cluster, local_results, tmp_path):
    config = project(tmp_path, {"type": "dask", "address": cluster.scheduler_address})
    run_pipeline(config)
    dask = results(config)
    assert len(dask["configs"]) == 5 and all(c[4] == "finished" for c in dask["configs"])
    assert_same(dask, local_results)


def test_a_worker_killed_mid_search_does_not_fail_the_run(cluster, local_results, tmp_path):
    """SIGKILL one worker process while it runs a search task: its nanny starts a new one, the scheduler
    reruns the lost task elsewhere, the files it held were broadcast to every worker. The rerun is the same
    deterministic fit on the same bytes, so the results equal the local ones exactly."""
    config = project(tmp_path, {"type": "dask", "address": cluster.scheduler_address})
    run = threading.Thread(target=run_pipeline, args=(config,))
    killed: list[tuple[str, int]] = []
    with Client(cluster.scheduler_address) as watcher:
        run.start()
        deadline = time.monotonic() + 300
        while not killed and run.is_alive() and time.monotonic() < deadline:
            busy = [(worker, keys) for worker, keys in watcher.processing().items()
                    if any(str(k).startswith("tabpipe-") for k in keys)]
            for worker, _ in busy[:1]:
                pid = watcher.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed.append((worker, pid))
            time.sleep(0.02)
        run.join(timeout=600)
        assert not run.is_alive()
        assert killed, "no search task was seen running on a worker"
        watcher.wait_for_workers(2, timeout=60)
        assert killed[0][1] not in watcher.run(os.getpid).values()   # the killed process was replaced
    assert_same(results(config), local_results)


# --------------------------------------------------------------------------- the executor's contract


def _read_sum(path: Path) -> float:
    return float(np.load(path, mmap_mode="r").sum())


def _write_array(out: Path, value: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "a.npy", np.full(1000, value))
    return out / "a.npy"


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_files_are_scattered_once_and_written_files_come_back(cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    np.save(work / "x.npy", np.arange(10.0))
    with DaskPool(cluster.scheduler_address, n_workers=0, files_under=work) as pool:
        outs = list(pool.run([Task(i, _read_sum, (work / "x.npy",), math.inf, math.inf) for i in range(6)]))
        assert [o.status for o in outs] == ["done"] * 6 and {o.value for o in outs} == {45.0}
        assert len(pool._scattered) == 1   # one scatter for six tasks
        (made,) = list(pool.run([Task("w", _write_array, (work / "out", 2.0), math.inf, math.inf)]))
        assert made.status == "done" and made.value == work / "out" / "a.npy"
        assert not made.value.exists()   # the bytes are held here, not written to this machine's folder
        reads = list(pool.run([Task(i, _read_sum, (made.value,), math.inf, math.inf) for i in range(4)]))
        assert {o.value for o in reads} == {2000.0}
        assert list(pool._written) == [made.value] and len(pool._scattered) == 1   # scattered once, on arrival


def test_a_task_past_its_deadline_is_abandoned_as_timeout(cluster, tmp_path):
    with DaskPool(cluster.scheduler_address, n_workers=0, files_under=tmp_path) as pool:
        t0 = time.monotonic()
        outs = {o.key: o for o in pool.run([Task("slow", _sleep, (8,), timeout_s=1.0, deadline=math.inf),
                                            Task("fast", _sleep, (0.1,), timeout_s=math.inf, deadline=math.inf)])}
        assert time.monotonic() - t0 < 6
        assert outs["slow"].status == "timeout" and outs["fast"].status == "done"
        failed = list(pool.run([Task("bad", _sleep, ("x",), math.inf, math.inf)]))
        assert failed[0].status == "failed" and "TypeError" in failed[0].value


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:   # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TabpipeError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        DaskPool(f"tcp://127.0.0.1:{port}", n_workers=1, files_under=tmp_path)


def test_executor_config_is_checked(tmp_path):
    assert ExecutorSection().type == "local"
    from tabpipe.config import load_settings

    for bad, words in [({"type": "dask", "address": "localhost:8786"}, "tcp://"),
                       ({"type": "local", "address": "tcp://h:1"}, "dask only"),
                       ({"type": "spark"}, "type")]:
        config = project(tmp_path / str(len(words)) / bad["type"], bad)
        with pytest.raises(ConfigError, match="training.executor") as info:
            load_settings(config)
        assert words in str(info.value)

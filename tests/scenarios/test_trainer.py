"""The trainer's search as a user runs it: the budget holds on a large table, every configuration says why it
stopped, progress is shown, and stopping `tabpipe train` in any way leaves no process behind."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from rich.console import Console

from helpers import TABPIPE_BIN, make_project, read_run_json, run_dirs, run_pipeline, stage_dir
from tabpipe.cli.train import SearchBar
from tabpipe.sources.sample import generate
from test_executors import assert_all_gone

STOP_REASONS = {"finished", "pruned", "out_of_budget", "failed"}
MIXED_MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
     "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 3},
    {"name": "weighted_logreg", "class": "sklearn.linear_model.LogisticRegression", "resampling": "none",
     "params": {"max_iter": 300, "class_weight": "balanced"}, "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 2},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
     "params": {"max_iter": 60, "early_stopping": False},
     "search": {"learning_rate": [0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31]}, "n_iter": 3},
    {"name": "forest", "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 40, "n_jobs": 1},
     "search": {"max_depth": [6, 10], "min_samples_leaf": [1, 20]}, "n_iter": 2},
]}


def wide_table(rows: int, categoricals: int, seed: int, max_levels: int = 12) -> pd.DataFrame:
    """The sample data plus random categorical columns of 3 to ``max_levels`` levels."""
    df = generate(rows, seed=seed)
    rng = np.random.default_rng(seed)
    for j in range(categoricals):
        levels = int(rng.integers(3, max_levels + 1))
        df[f"cat_{j:02d}"] = pd.Series(rng.integers(0, levels, size=rows)).map(lambda c: f"L{c}")
    return df


# cheap to refit on 240k rows (the refit is not what the budget test is about); one candidate needs SMOTE folds
BUDGET_MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 100},
     "resampling": "smote", "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 2},
    {"name": "weighted_logreg", "class": "sklearn.linear_model.LogisticRegression",
     "params": {"max_iter": 100, "class_weight": "balanced"}, "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 3},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
     "params": {"max_iter": 40, "early_stopping": False},
     "search": {"learning_rate": [0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31]}, "n_iter": 3},
    {"name": "forest", "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20, "n_jobs": 1},
     "search": {"max_depth": [6, 10], "min_samples_leaf": [5, 20]}, "n_iter": 2},
]}


def cv_results(run_dir: Path) -> list[dict]:
    return json.loads((stage_dir(run_dir, "trainer") / "cv_results.json").read_text())


# --------------------------------------------------------------------------- stop reasons, halving, progress lines

@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    """A real `tabpipe train` process (not a terminal) on 12k rows: 10 configurations, 3 rungs."""
    root = tmp_path_factory.mktemp("halving")
    config = make_project(root, data=generate(12_000, seed=4), models=MIXED_MODELS,
                          pipeline={"validation": {"drift": {"enabled": False}},
                                    "training": {"time_budget_s": 600, "n_jobs": 2}})   # not binding
    proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "COLUMNS": "300"}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(config)
    return proc, read_run_json(run_dir), cv_results(run_dir), config


def test_same_seed_same_halving_and_choice(halving_run):
    """The budget is not binding here: a second run repeats every rung's scores and the choice."""
    _, rec, results, config = halving_run
    again = read_run_json(run_pipeline(config).dir)
    again_results = cv_results(Path(again["stages"]["trainer"]["folder"]).parent)
    key = ("candidate", "params", "resampling", "score", "rows", "stopped")
    assert [[r[k] for k in key] for r in again_results] == [[r[k] for k in key] for r in results]
    for field in ("best_candidate", "best_params", "best_resampling", "cv_score", "threshold"):
        assert again["stages"]["trainer"]["artifact"][field] == rec["stages"]["trainer"]["artifact"][field]


def test_every_configuration_says_why_it_stopped(halving_run):
    _, rec, results, _ = halving_run
    trainer = rec["stages"]["trainer"]["artifact"]
    assert len(results) == trainer["configs_total"] == 10
    assert {r["stopped"] for r in results} <= STOP_REASONS and "pruned" in {r["stopped"] for r in results}
    for r in results:
        assert r["seconds"] >= 0 and isinstance(r["note"], str)
        if r["score"] is not None:
            assert r["rungs"] and r["rungs"][-1]["rung"] == r["rung"] + 1
            assert r["rows"] == r["rungs"][-1]["rows"] and r["score"] == r["rungs"][-1]["score"]
    assert {r["resampling"] for r in results} == {"smote", "none"}
    # halving: everyone ran the smallest rung on fewer rows; the rows grow from rung to rung
    assert all(r["rungs"][0]["rung"] == 1 for r in results if r["score"] is not None)
    firsts = {r["rungs"][0]["rows"] for r in results if r["resampling"] == "smote" and r["rungs"]}
    finished = [r for r in results if r["stopped"] == "finished"]
    assert finished and all(r["rows"] > max(firsts) for r in finished)
    assert all(r["stopped"] == "pruned" and len(r["rungs"]) == r["rung"] + 1 for r in results
               if r["stopped"] == "pruned")
    best = [r for r in finished if r["candidate"] == trainer["best_candidate"] and r["params"] == trainer["best_params"]]
    assert best and best[0]["score"] == max(r["score"] for r in finished) == trainer["cv_score"]
    assert trainer["configs_tried"] == sum(r["score"] is not None for r in results)
    assert sum(trainer["stopped"].values()) == 10
    assert trainer["search_seconds"] <= 600 * 1.1 and trainer["refit_seconds"] >= 0


def test_progress_is_plain_log_lines_when_not_a_terminal(halving_run):
    proc, rec, results, _ = halving_run
    lines = [line for line in proc.stderr.splitlines() if "[rung " in line]
    evaluated = sum(len(r["rungs"]) for r in results)
    assert len(lines) >= evaluated                          # one line per evaluation (and per stopped one)
    assert any("best " in line and "/600s" in line for line in lines)
    assert "\x1b[" not in proc.stderr and "━" not in proc.stderr   # no progress bar, no terminal codes


def test_search_bar_on_a_terminal():
    buffer = io.StringIO()
    bar = SearchBar(Console(file=buffer, force_terminal=True, width=200))
    bar.begin(configs=10, evaluations=14, budget_s=60)
    bar.update(done=5, planned=14, settled=2, configs=10, best=0.91234, elapsed_s=12.0, budget_s=60)
    bar.end()
    text = buffer.getvalue()
    assert "5/14 evaluations" in text and "8 of 10 configurations left" in text
    assert "best CV score 0.9123" in text and "12 of 60s" in text


# --------------------------------------------------------------------------- rounds and the ensemble (init's defaults)

ROUND_MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
     "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 2},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier", "resampling": "none",
     "params": {"max_iter": 40, "early_stopping": False},
     "search": {"learning_rate": {"log_uniform": [0.05, 0.2]}, "max_leaf_nodes": [7, 15, 31]}, "n_iter": 2},
]}


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory):
    """Three rounds of four configurations on 3,000 rows (the budget is not binding), ensemble of up to 10 picks."""
    config = make_project(tmp_path_factory.mktemp("rounds"), rows=3_000, seed=3, models=ROUND_MODELS,
                          pipeline={"validation": {"drift": {"enabled": False}},
                                    "training": {"time_budget_s": 600, "n_jobs": 2, "search_rounds": 3,
                                                 "ensemble_size": 10}})
    run = run_pipeline(config)
    return config, read_run_json(run.dir), cv_results(run.dir)


def test_rounds_sample_new_configurations_while_the_budget_allows(rounds_run):
    _, rec, results = rounds_run
    trainer = rec["stages"]["trainer"]["artifact"]
    assert [r["round"] for r in results] == [1] * 4 + [2] * 4 + [3] * 4
    assert trainer["configs_total"] == trainer["configs_tried"] == 12
    assert len({json.dumps(r["params"], sort_keys=True) for r in results}) == 12      # no configuration twice
    assert all(r["stopped"] == "finished" for r in results)


def test_the_ensemble_is_chosen_on_out_of_fold_scores(rounds_run):
    config, rec, results = rounds_run
    trainer = rec["stages"]["trainer"]["artifact"]
    assert trainer["best_candidate"] == "ensemble"
    members = trainer["best_params"]["members"]
    assert len(members) >= 2 and sum(m["weight"] for m in members) == pytest.approx(1.0, abs=1e-3)
    finished = {(r["candidate"], json.dumps(r["params"], sort_keys=True)): r["score"] for r in results}
    for m in members:   # every member is a configuration of the search, with its own CV score
        assert finished[(m["candidate"], json.dumps(m["params"], sort_keys=True))] == m["score"]
    assert trainer["cv_score"] > max(finished.values())        # picks are added only when they raise the CV score
    assert trainer["best_resampling"] == "+".join(sorted({m["resampling"] for m in members}))
    import dill

    from tabpipe.model.estimators import WeightedMean

    model = dill.loads(Path(trainer["model_path"]).read_bytes())
    assert isinstance(model.estimator, WeightedMean) and len(model.estimator.estimators_) == len(members)
    np.testing.assert_allclose(model.estimator.weights_, [m["weight"] for m in members], atol=1e-4)


def test_same_seed_same_rounds_same_ensemble_same_model(rounds_run):
    import dill

    config, rec, results = rounds_run
    again = read_run_json(run_pipeline(config).dir)
    again_results = cv_results(Path(again["stages"]["trainer"]["folder"]).parent)
    key = ("candidate", "params", "round", "score", "stopped")
    assert [[r[k] for k in key] for r in again_results] == [[r[k] for k in key] for r in results]
    first, second = rec["stages"]["trainer"]["artifact"], again["stages"]["trainer"]["artifact"]
    for field in ("best_candidate", "best_params", "best_resampling", "cv_score", "threshold"):
        assert second[field] == first[field]
    rows = generate(300, seed=9).drop(columns=["fault_flag"])
    models = [dill.loads(Path(a["model_path"]).read_bytes()) for a in (first, second)]
    np.testing.assert_array_equal(models[0].predict_proba(rows), models[1].predict_proba(rows))


# --------------------------------------------------------------------------- growing the best configuration

GROW_MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
     "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 2},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier", "resampling": "none",
     "params": {"max_iter": 8, "learning_rate": 0.03, "early_stopping": False},   # far too few trees
     "search": {"max_leaf_nodes": [7, 15]}, "n_iter": 2, "grow": {"param": "max_iter", "times": 2}},
]}


def test_the_best_configuration_grows_while_cv_improves(tmp_path):
    config = make_project(tmp_path, rows=3_000, seed=3, models=GROW_MODELS,
                          pipeline={"validation": {"drift": {"enabled": False}},
                                    "training": {"time_budget_s": 600, "n_jobs": 2, "ensemble_size": 1}})
    run = run_pipeline(config)
    results, trainer = cv_results(run.dir), read_run_json(run.dir)["stages"]["trainer"]["artifact"]
    searched = [r for r in results if not r["note"].startswith("grown")]
    grown = [r for r in results if r["note"].startswith("grown")]
    assert len(searched) == 4 and 1 <= len(grown) <= 2 and trainer["configs_total"] == 6
    base = max((r for r in searched if r["candidate"] == "hgb"), key=lambda r: r["score"])
    for r in grown:            # each from the one before, twice the trees, on whole folds like the rounds' last rung
        assert r["candidate"] == "hgb" and r["stopped"] == "finished" and r["rows"] == base["rows"]
        assert r["params"] == {**base["params"], "max_iter": 2 * base["params"]["max_iter"]}
        assert r["note"].startswith(f"grown from configuration {results.index(base) + 1}: max_iter x2")
        assert r["grown_from"] == results.index(base) + 1 and r["round"] == base["round"]
        if r["score"] <= base["score"]:
            assert r is grown[-1] and r["note"].endswith("growing stops")
        base = r
    assert all(r["grown_from"] is None for r in searched)
    assert grown[0]["score"] > max(r["score"] for r in searched if r["candidate"] == "hgb")   # 8 trees were too few
    best = max(results, key=lambda r: r["score"])
    assert (trainer["best_candidate"], trainer["best_params"], trainer["cv_score"]) == \
        ("hgb", best["params"], best["score"])
    assert best["params"]["max_iter"] > 8


# --------------------------------------------------------------------------- the budget on a large table

def test_budget_holds_on_300k_rows_with_many_categoricals(tmp_path):
    budget = 30
    config = make_project(tmp_path, data=wide_table(300_000, 20, seed=2), data_format="parquet", schema="infer",
                          models=BUDGET_MODELS,
                          pipeline={"validation": {"drift": {"enabled": False}}, "transformation": {"resampling": "none"},
                                    "training": {"time_budget_s": budget, "n_jobs": 2, "cv_folds": 5,
                                                 "search_rounds": 4, "ensemble_size": 10}})   # init's
    rec = read_run_json(run_pipeline(config).dir)
    assert rec["status"] == "succeeded"
    trainer = rec["stages"]["trainer"]["artifact"]
    # budget + 10 %, plus slack for a loaded CI machine: the parts that cannot be stopped midway (reading the
    # split, the probe, the last retry of fold preparation on 5,000 rows) slow down with the machine
    assert trainer["search_seconds"] <= budget * 1.1 + 10
    assert trainer["search_rows"] < 240_000                   # searched on a sample, sized by the probe ...
    assert trainer["refit_seconds"] > 0                        # ... refitted on all training rows (reported apart)
    results = cv_results(Path(rec["stages"]["trainer"]["folder"]).parent)
    assert trainer["configs_tried"] >= 1 and {r["stopped"] for r in results} <= STOP_REASONS


def test_search_sample_is_bounded_by_the_preprocessed_width(tmp_path, monkeypatch):
    """On wide one-hot data the search sample holds at most MAX_SEARCH_CELLS values (bounded memory per
    worker); the final refit still uses every training row."""
    from tabpipe.training.search import folds as folds_mod

    monkeypatch.setattr(folds_mod, "MAX_SEARCH_CELLS", 1_500_000)
    config = make_project(tmp_path, data=wide_table(30_000, 12, seed=3), data_format="parquet", schema="infer",
                          models={"candidates": [MIXED_MODELS["candidates"][1]]},
                          pipeline={"validation": {"drift": {"enabled": False}}, "transformation": {"resampling": "none"},
                                    "training": {"time_budget_s": 120, "n_jobs": 1, "cv_folds": 3}})
    rec = read_run_json(run_pipeline(config).dir)
    assert rec["status"] == "succeeded"
    width = len(rec["stages"]["transformation"]["artifact"]["feature_names"])
    trainer = rec["stages"]["trainer"]["artifact"]
    assert width > 100                                         # wide enough for the cap to bind below 24,000 rows
    assert folds_mod.MIN_SEARCH_ROWS <= trainer["search_rows"] <= max(folds_mod.MIN_SEARCH_ROWS, 1_500_000 // width)
    train_rows = len(np.load(rec["stages"]["transformation"]["artifact"]["y_train_path"]))   # what the refit uses
    assert train_rows == 24_000 > trainer["search_rows"]


# --------------------------------------------------------------------------- stopping a run leaves nothing behind

def start_training(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    config = make_project(tmp_path, data=generate(30_000, seed=5), models=MIXED_MODELS,
                          pipeline={"validation": {"drift": {"enabled": False}},
                                    "training": {"time_budget_s": 300, "n_jobs": 2}})
    proc = subprocess.Popen([str(TABPIPE_BIN), "train", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=_default_sigint)
    return proc, config


def _default_sigint() -> None:
    """SIGINT as a terminal's Ctrl-C delivers it. A shell starts background jobs (``make test &``, nohup) with
    SIGINT ignored, the child inherits that, and Python then never raises KeyboardInterrupt: the run would
    simply finish (exit 0), which is what a user who backgrounded it asked for, not what this test is about."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_workers(proc: subprocess.Popen, timeout: float = 120) -> list[psutil.Process]:
    """Descendants of ``proc`` once a worker (a grandchild, forked by the fork server) is computing."""
    parent, end = psutil.Process(proc.pid), time.monotonic() + timeout
    while time.monotonic() < end:
        kids = parent.children(recursive=True)
        if any(k.ppid() != proc.pid for k in kids if k.is_running()):
            return kids
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    raise AssertionError("no worker process appeared")


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopping_train_leaves_no_process(tmp_path, sig, code):
    proc, config = start_training(tmp_path)
    try:
        kids = wait_for_workers(proc)
        time.sleep(1.0)
        kids = psutil.Process(proc.pid).children(recursive=True)   # every process of the run at this moment
        assert len(kids) >= 2
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
        assert_all_gone(kids, within=20)   # workers go at once; the idle fork server exits in seconds
    finally:
        proc.kill()
    if sig != signal.SIGKILL:   # handled: the run is recorded as stopped
        (run_dir,) = run_dirs(config)
        rec = read_run_json(run_dir)
        assert rec["status"] == "failed" and "Interrupt" in rec["error"]
        assert not (stage_dir(run_dir, "trainer") / "folds").exists()   # prepared folds cleaned up


# --------------------------------------------------------------------------- a library beyond scikit-learn

def test_a_lightgbm_candidate_trains_and_is_served_compiled(tmp_path):
    """A user adds LightGBM to model.yaml with a key outside its signature (``verbosity``): the search and the refit
    run, and /predict's scorer compiles the published model, equal to the model's own probabilities."""
    from helpers import registry_of
    from service_helpers import json_records
    from tabpipe.scoring.compiled import RecordScorer

    models = {"candidates": [{"name": "lgbm", "class": "lightgbm.LGBMClassifier", "resampling": "none",
                              "params": {"n_jobs": 1, "verbosity": -1},
                              "search": {"num_leaves": [4, 8], "n_estimators": [30, 60]}, "n_iter": 2}]}
    config = make_project(tmp_path, rows=2000, seed=3, models=models,
                          pipeline={"validation": {"drift": {"enabled": False}},
                                    "training": {"time_budget_s": 300, "n_jobs": 2, "ensemble_size": 1}})
    rec = read_run_json(run_pipeline(config).dir)
    assert rec["status"] == "succeeded"
    trainer = rec["stages"]["trainer"]["artifact"]
    assert trainer["best_candidate"] == "lgbm" and trainer["best_params"]["verbosity"] == -1
    model, _ = registry_of(config).load_model()   # as the service loads it: checksum and signature verified
    scorer = RecordScorer(model)
    assert scorer.compiled   # LightGBM compiled, not left to its own predict_proba
    frame = generate(200, seed=9)
    records = json_records(frame, model.schema.features)
    got = scorer.proba([scorer.check(r)[0] for r in records])
    np.testing.assert_allclose(got, model.predict_proba(frame[model.schema.features]), rtol=0, atol=1e-9)

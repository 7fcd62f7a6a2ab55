"""End-to-end runs of TrainingPipeline on small generated projects (see tests/helpers.py).

Module-scoped fixtures share the expensive runs: ``first`` is a first run on an empty registry,
``second`` a second run of the very same project (same data, config and seed) against it.
Other tests copy the first run's registry so that its production pointer is never disturbed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import dill
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tabpipe  # noqa: F401
import tabpipe.training.components.trainer as trainer_mod
import tabpipe.training.search.folds as folds_mod
import tabpipe.training.resampling as resampling_mod
import tabpipe.training.run as run_mod
from helpers import (
    TABPIPE_BIN, TARGET, make_project, read_run_json, registry_of, run_dirs, run_pipeline, stage_dir,
)
from tabpipe.cli import app
from tabpipe.training.components.ingestion import fingerprint
from tabpipe.errors import DataError
from tabpipe.model import TabularModel
from tabpipe.training.run import Run, package_versions
from tabpipe.schema import positive_mask

STAGES = ["ingestion", "validation", "transformation", "trainer", "evaluation", "pusher"]
METRICS = ["roc_auc", "pr_auc", "f1", "precision", "recall"]
NO_DRIFT = {"validation": {"drift": {"enabled": False}}}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """No terminal line wrapping in captured CLI output (rich reads COLUMNS on every print)."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def base_data() -> pd.DataFrame:
    from tabpipe.sources.sample import generate

    return generate(2000, seed=1)


@pytest.fixture(scope="module")
def first(tmp_path_factory, base_data):
    root = tmp_path_factory.mktemp("first")
    config = make_project(root, data=base_data)
    run = run_pipeline(config)
    # a snapshot of the registry as the first run left it (``second`` publishes into the live one)
    shutil.copytree(root / "registry", root / "registry_after_first_run")
    return SimpleNamespace(config=config, run=run, dir=run.dir, record=read_run_json(run.dir),
                           registry=root / "registry_after_first_run", root=root)


@pytest.fixture(scope="module")
def second(first):
    """The same project run again: same data, config and seed; the registry now has v0001 in production."""
    run = run_pipeline(first.config)
    return SimpleNamespace(run=run, dir=run.dir, record=read_run_json(run.dir))


def stage_artifact(record: dict, stage: str) -> dict:
    return record["stages"][stage]["artifact"]


def cv_results(run_dir: Path) -> list[dict]:
    return json.loads((stage_dir(run_dir, "trainer") / "cv_results.json").read_text())


def versions(config: Path) -> list[str]:
    return [v.version for v in registry_of(config).list_versions()]


# --------------------------------------------------------------------------- 3. end to end

def test_first_run_record_is_complete(first):
    rec = first.record
    assert rec["status"] == "succeeded" and "error" not in rec
    assert rec["run_id"] == first.dir.name
    assert first.dir.parent == first.root / "artifacts"
    datetime.strptime(rec["run_id"][:15], "%Y%m%dT%H%M%S")  # a UTC timestamp
    assert list(rec["stages"]) == STAGES
    for name in STAGES:
        stage = rec["stages"][name]
        assert stage["status"] == "succeeded", name
        assert isinstance(stage["seconds"], (int, float)) and stage["seconds"] >= 0
        assert isinstance(stage["artifact"], dict)
        assert Path(stage["folder"]).is_dir()
    for key in METRICS:
        assert 0.0 <= rec["metrics"][key] <= 1.0, key
    assert rec["metrics"]["roc_auc"] > 0.7
    assert rec["accepted"] is True and rec["model_version"] == "v0001"
    assert rec["config"]["pipeline"]["training"]["cv_folds"] == 3
    assert rec["config"]["schema"]["target"]["name"] == TARGET
    assert rec["config"]["models"]["candidates"][0]["name"] == "logreg"
    assert rec["packages"]["scikit-learn"] not in ("", "not installed")
    assert {"python", "tabpipe", "pandas", "numpy", "scikit-learn", "imbalanced-learn", "evidently"} <= set(rec["packages"])
    assert rec["packages"] == package_versions()
    assert (first.dir / "run.log").is_file()


def test_stage_folders_and_files(first):
    rec = first.record
    expected = {
        "ingestion": ["raw.parquet", "train.parquet", "test.parquet"],
        "validation": ["validation_report.json", "train.parquet", "test.parquet"],
        "transformation": ["preprocessor.pkl", "x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"],
        "trainer": ["cv_results.json", "model.pkl"],
        "evaluation": ["blessing.json"],
        "pusher": ["push.json", "reference.parquet"],
    }
    for i, (name, files) in enumerate(expected.items(), 1):
        folder = stage_dir(first.dir, name)
        assert folder.name == f"{i:02d}_{name}"
        assert Path(rec["stages"][name]["folder"]) == folder
        for f in files:
            assert (folder / f).is_file() and (folder / f).stat().st_size > 0, f"{name}/{f}"
    # artifact paths recorded in run.json point at those files
    for stage, key in [("ingestion", "raw_path"), ("validation", "report_path"), ("transformation", "preprocessor_path"),
                       ("trainer", "model_path"), ("evaluation", "blessing_path")]:
        assert Path(stage_artifact(rec, stage)[key]).is_file()
    with open(stage_dir(first.dir, "transformation") / "preprocessor.pkl", "rb") as fh:
        pre = dill.load(fh)
    x_train = np.load(stage_dir(first.dir, "transformation") / "x_train.npy")
    assert x_train.shape[1] == len(pre.get_feature_names_out()) == len(stage_artifact(rec, "transformation")["feature_names"])


def test_ingestion_snapshot_and_stratified_split(first, base_data):
    art = stage_artifact(first.record, "ingestion")
    raw = pd.read_parquet(art["raw_path"])
    train, test = pd.read_parquet(art["train_path"]), pd.read_parquet(art["test_path"])
    assert art["n_rows"] == len(raw) == len(base_data) == 2000
    assert (art["n_train"], art["n_test"]) == (len(train), len(test)) == (1600, 400)
    assert list(raw.columns) == list(base_data.columns)
    assert len(art["fingerprint"]) == 64 and art["fingerprint"] == fingerprint(raw)
    # stratified: both splits keep the positive rate
    rate = base_data[TARGET].mean()
    assert abs(train[TARGET].mean() - rate) < 0.005 and abs(test[TARGET].mean() - rate) < 0.01
    # disjoint and complete: every raw row lands in exactly one split
    both = pd.concat([train["measurement_id"], test["measurement_id"]])
    assert not both.duplicated().any() and sorted(both) == sorted(raw["measurement_id"])


def test_validation_report_first_run_says_no_reference(first):
    art = stage_artifact(first.record, "validation")
    assert art["drift_status"] == "no_reference" and art["drift_html"] is None and art["rows_dropped"] == 0
    report = json.loads(Path(art["report_path"]).read_text())
    assert report["drift"]["status"] == "no_reference"
    assert "no reference" in report["drift"]["message"]
    for split, n in (("train", 1600), ("test", 400)):
        assert report["schema_checks"][split] == {"rows_checked": n, "rows_with_errors": 0, "errors": {},
                                                  "rows_with_warnings": 0, "warnings": {}}
    assert art["rows_with_warnings"] == 0 and art["warning_counts"] == {}
    assert not list(stage_dir(first.dir, "validation").glob("drift_report.*"))


def test_saved_model_is_one_tabular_model(first, base_data):
    trainer = stage_artifact(first.record, "trainer")
    with open(trainer["model_path"], "rb") as fh:
        model = dill.load(fh)
    assert isinstance(model, TabularModel)
    assert model.candidate == trainer["best_candidate"] in ("logreg", "hgb")
    assert model.threshold == pytest.approx(trainer["threshold"]) and 0 < model.threshold < 1
    assert model.labels == (0, 1)
    rows = base_data.drop(columns=[TARGET]).head(50)
    proba = model.predict_proba(rows)
    labels = model.predict(rows)
    assert proba.shape == (50,) and ((proba >= 0) & (proba <= 1)).all()
    assert set(labels.tolist()) <= {0, 1}
    assert (labels == np.where(proba >= model.threshold, 1, 0)).all()
    assert model.predict_proba(rows.to_dict("records")) == pytest.approx(proba)  # list of dicts works too


def test_cv_results_and_threshold(first):
    results = cv_results(first.dir)
    trainer = stage_artifact(first.record, "trainer")
    assert {r["candidate"] for r in results} == {"logreg", "hgb"}
    assert trainer["configs_tried"] == len(results) == 2
    for r in results:
        assert len(r["fold_scores"]) == 3 and r["score"] == pytest.approx(np.mean(r["fold_scores"]))
    best = max(results, key=lambda r: r["score"])
    assert trainer["best_candidate"] == best["candidate"] and trainer["cv_score"] == pytest.approx(best["score"])
    assert first.record["metrics"]["threshold"] == pytest.approx(trainer["threshold"])


def test_evaluation_uses_the_untouched_test_split(first):
    blessing = json.loads((stage_dir(first.dir, "evaluation") / "blessing.json").read_text())
    test = pd.read_parquet(stage_artifact(first.record, "ingestion")["test_path"])
    assert blessing["accepted"] is True and blessing["production_version"] is None and blessing["production"] is None
    assert "first model" in blessing["reason"]
    assert blessing["new"]["rows"] == len(test) == 400
    assert blessing["new"]["positives"] == int(test[TARGET].sum())
    assert blessing["new"] == first.record["metrics"]


def test_production_model_from_registry(first, base_data):
    reg = registry_of(first.config)
    assert reg.production_version() == "v0001"
    model, meta = reg.load_model()
    assert meta["version"] == "v0001" and meta["run_id"] == first.record["run_id"]
    # raw rows as strings, exactly as they come out of a CSV
    csv = first.root / "data.csv"
    as_text = pd.read_csv(csv, dtype=str).drop(columns=[TARGET]).head(200)
    assert as_text["latency_ms"].map(type).eq(str).all()
    proba = model.predict_proba(as_text)
    assert proba.shape == (200,) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    typed = pd.read_csv(csv).drop(columns=[TARGET]).head(200)
    assert model.predict_proba(typed) == pytest.approx(proba)
    assert model.predict_proba(base_data.drop(columns=[TARGET]).head(200)) == pytest.approx(proba)


def test_registry_metadata(first):
    meta = registry_of(first.config).metadata("v0001")
    model_file = meta["files"]["model.pkl"]
    assert len(model_file["sha256"]) == 64 and model_file["bytes"] > 0
    assert "reference.parquet" in meta["files"]
    assert meta["data_fingerprint"] == stage_artifact(first.record, "ingestion")["fingerprint"]
    assert meta["rows"] == 2000
    assert meta["package_versions"]["scikit-learn"] == package_versions()["scikit-learn"]
    assert meta["metrics"]["roc_auc"] == pytest.approx(first.record["metrics"]["roc_auc"])
    assert meta["candidate"] == stage_artifact(first.record, "trainer")["best_candidate"]
    assert meta["schema"]["target"]["name"] == TARGET
    ref = pd.read_parquet(registry_of(first.config).fetch("v0001", "reference.parquet"))
    assert len(ref) == 1600 and TARGET in ref.columns


# --------------------------------------------------------------------------- 4. second run and drift

def test_second_run_drift_against_reference(first, second):
    rec = second.record
    assert rec["status"] == "succeeded"
    art = stage_artifact(rec, "validation")
    assert art["drift_status"] == "no_drift" and art["drift_share"] < 0.5
    html, js = Path(art["drift_html"]), Path(art["drift_json"])
    assert html.is_file() and js.is_file() and html.parent == stage_dir(second.dir, "validation")
    assert "<html" in html.read_text()[:2000].lower()
    assert json.loads(js.read_text())["metrics"]
    drift = json.loads(Path(art["report_path"]).read_text())["drift"]
    assert drift["reference_version"] == "v0001"
    assert drift["reference_rows"] == 1600 and drift["current_rows"] == 2000
    assert "latency_ms" in drift["columns"] and TARGET not in drift["columns"]
    assert "timestamp" not in drift["columns"]
    # the new and the production model scored the same test rows
    blessing = json.loads((stage_dir(second.dir, "evaluation") / "blessing.json").read_text())
    assert blessing["production_version"] == "v0001"
    assert blessing["production"]["rows"] == blessing["new"]["rows"] == 400
    assert blessing["production"]["roc_auc"] == pytest.approx(blessing["new"]["roc_auc"])  # same model, same rows
    # a tie with production is not an improvement: nothing is published
    assert rec["accepted"] is False and rec["model_version"] is None
    assert "is not > min_improvement=0.0" in rec["decision"]
    assert registry_of(first.config).production_version() == "v0001"


def test_shifted_data_drift_detected_but_only_warns(first, tmp_path):
    config = make_project(tmp_path, rows=2000, seed=2, shift=1.0, copy_registry_from=first.registry)
    run = run_pipeline(config)
    rec = read_run_json(run.dir)
    assert rec["status"] == "succeeded"
    art = stage_artifact(rec, "validation")
    assert art["drift_status"] == "drift" and art["drift_share"] >= 0.5
    drift = json.loads(Path(art["report_path"]).read_text())["drift"]
    assert drift["reference_version"] == "v0001"
    assert {"prb_utilization_pct", "rsrp_dbm", "temperature_c"} <= set(drift["drifted_columns"])
    assert "data drift" in (run.dir / "run.log").read_text()


def test_fail_on_drift_fails_the_run_and_keeps_production(first, tmp_path):
    config = make_project(tmp_path, rows=2000, seed=2, shift=1.0, copy_registry_from=first.registry,
                          pipeline={"validation": {"drift": {"fail_on_drift": True}}})
    before = registry_of(config).production_version()
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "training failed" in result.output and "fail_on_drift" in result.output
    assert "Traceback" not in result.output
    assert registry_of(config).production_version() == before == "v0001"
    assert versions(config) == ["v0001"]
    (run_dir,) = run_dirs(config)
    rec = read_run_json(run_dir)
    assert rec["status"] == "failed" and "fail_on_drift" in rec["error"]
    assert rec["stages"]["validation"]["status"] == "failed"
    assert "trainer" not in rec["stages"] and rec["accepted"] is None and rec["model_version"] is None
    folder = stage_dir(run_dir, "validation")
    assert (folder / "drift_report.html").is_file() and (folder / "drift_report.json").is_file()
    report = json.loads((folder / "validation_report.json").read_text())
    assert report["drift"]["status"] == "drift"


# --------------------------------------------------------------------------- 5. the gate

def test_min_improvement_rejects_second_model(first, tmp_path, base_data):
    config = make_project(tmp_path, data=base_data.head(1000), copy_registry_from=first.registry,
                          pipeline={**NO_DRIFT, "evaluation": {"min_improvement": 0.5}})
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "not accepted" in result.output
    (run_dir,) = run_dirs(config)
    rec = read_run_json(run_dir)
    assert rec["status"] == "succeeded"
    assert rec["accepted"] is False and rec["model_version"] is None
    assert "min_improvement" in rec["decision"]
    assert registry_of(config).production_version() == "v0001" and versions(config) == ["v0001"]
    blessing = json.loads((stage_dir(run_dir, "evaluation") / "blessing.json").read_text())
    assert blessing["accepted"] is False and blessing["production_version"] == "v0001"
    push = json.loads((stage_dir(run_dir, "pusher") / "push.json").read_text())
    assert push == {"pushed": False, "version": None, "promoted": False, "reason": push["reason"]} and "not blessed" in push["reason"]
    assert rec["stages"]["pusher"]["artifact"]["pushed"] is False


def test_min_score_rejects_first_model(tmp_path, base_data):
    config = make_project(tmp_path, data=base_data.head(1000), pipeline={"evaluation": {"min_score": 0.99}})
    run = run_pipeline(config)
    rec = read_run_json(run.dir)
    assert rec["status"] == "succeeded" and rec["accepted"] is False and rec["model_version"] is None
    assert "below evaluation.min_score=0.99" in rec["decision"]
    assert rec["metrics"]["roc_auc"] < 0.99
    reg = registry_of(config)
    assert reg.production_version() is None and reg.list_versions() == []


def test_min_cv_score_fails_trainer_real_process(tmp_path, base_data):
    config = make_project(tmp_path, data=base_data.head(800), pipeline={"training": {"min_cv_score": 0.99}})
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr      # the traceback goes to run.log only
    (run_dir,) = run_dirs(config)
    results = cv_results(run_dir)
    best = max(results, key=lambda r: r["score"])
    message = proc.stderr.replace("\n", "")
    assert f"best candidate {best['candidate']} scored roc_auc={best['score']:.4f}" in message
    assert "training.min_cv_score=0.99" in message
    rec = read_run_json(run_dir)
    assert rec["status"] == "failed" and "min_cv_score" in rec["error"] and best["candidate"] in rec["error"]
    assert rec["stages"]["trainer"]["status"] == "failed" and "evaluation" not in rec["stages"]
    assert not (stage_dir(run_dir, "trainer") / "model.pkl").exists()
    assert registry_of(config).production_version() is None


# --------------------------------------------------------------------------- 6. leakage guard

@pytest.mark.parametrize("permute", [True, False], ids=["permuted-labels", "true-labels"])
def test_leakage_guard(tmp_path, permute):
    from tabpipe.sources.sample import generate

    df = generate(3000, seed=11)
    if permute:
        df[TARGET] = np.random.default_rng(0).permutation(df[TARGET].to_numpy())
    config = make_project(tmp_path, data=df, pipeline={"split": {"test_size": 0.5}})
    run = run_pipeline(config)
    rec = read_run_json(run.dir)
    assert rec["status"] == "succeeded"
    test_auc, cv = rec["metrics"]["roc_auc"], stage_artifact(rec, "trainer")["cv_score"]
    assert rec["metrics"]["positives"] >= 70  # enough positives in the test split for a meaningful band
    if permute:
        assert abs(test_auc - 0.5) <= 0.08, test_auc
        assert abs(cv - 0.5) <= 0.08, cv
        assert rec["accepted"] is False
    else:
        assert test_auc > 0.7 and cv > 0.7


# --------------------------------------------------------------------------- 7. resampling honesty

def test_resampling_sees_training_rows_only(tmp_path, monkeypatch):
    config = make_project(tmp_path, rows=1000, seed=3)
    fits, samples = [], []
    real_fit_transform, real_resample = folds_mod.fit_transform, folds_mod.resample

    def spy_fit_transform(pre, train, *others):
        fits.append((train.copy(), [o.copy() for o in others]))
        return real_fit_transform(pre, train, *others)

    def spy_resample(X, y, kind, seed):
        out = real_resample(X, y, kind, seed)
        samples.append({"X": X.copy(), "y": y.copy(), "kind": kind, "out_rows": len(out[1])})
        return out

    monkeypatch.setattr(folds_mod, "fit_transform", spy_fit_transform)   # each fold's preprocessing ...
    monkeypatch.setattr(folds_mod, "resample", spy_resample)             # ... and resampling (the search)
    monkeypatch.setattr(trainer_mod, "resample", spy_resample)           # the final refit
    monkeypatch.setattr(resampling_mod, "resample", spy_resample)        # any other caller
    run = run_pipeline(config)
    rec = read_run_json(run.dir)
    ing, val = stage_artifact(rec, "ingestion"), stage_artifact(rec, "validation")
    n_train, n_test = ing["n_train"], ing["n_test"]
    assert (n_train, n_test) == (800, 200) and val["n_train"] == n_train

    schema_features = [c for c, spec in rec["config"]["schema"]["columns"].items() if spec.get("role") != "id"]
    train = pd.read_parquet(val["train_path"])
    test = pd.read_parquet(val["test_path"])

    def row_keys(frame: pd.DataFrame) -> set:
        return set(pd.util.hash_pandas_object(frame[schema_features], index=False).tolist())

    train_keys, test_keys = row_keys(train), row_keys(test)
    assert len(test_keys) == n_test and not (train_keys & test_keys)

    k = 3
    assert len(samples) == k + 1 and len(fits) == k         # one per fold + the final fit
    assert all(s["kind"] == "smote" for s in samples)
    fold_sizes = []
    for (fold_train, (fold_val,)), s in zip(fits, samples[:k]):
        n = len(fold_train)
        fold_sizes.append(n)
        assert len(s["X"]) == len(s["y"]) == n                  # resampled exactly the fold's training rows
        assert n <= -(-n_train * (k - 1) // k)                  # never more than a fold's training part
        assert s["out_rows"] > n                                # SMOTE did add rows
        keys = row_keys(fold_train)
        assert keys <= train_keys and not (keys & test_keys)   # the test split never reaches resampling
        assert not (keys & row_keys(fold_val))                  # nor the fold's own validation rows
        assert n + len(fold_val) == n_train
        np.testing.assert_array_equal(s["y"], positive_mask(fold_train.join(train[[TARGET]])[TARGET], 1))
    assert sum(n_train - n for n in fold_sizes) == n_train      # validation parts partition the training split
    final = samples[-1]
    x_train = np.load(stage_artifact(rec, "transformation")["x_train_path"])
    assert len(final["X"]) == n_train
    np.testing.assert_array_equal(final["X"], x_train)          # the final fit resamples the training split only

    x_test = np.load(stage_artifact(rec, "transformation")["x_test_path"])
    y_test = np.load(stage_artifact(rec, "transformation")["y_test_path"])
    assert x_test.shape[0] == y_test.shape[0] == n_test        # the test split is never resampled
    assert x_train.shape[0] == n_train
    assert int(y_test.sum()) == int(test[TARGET].sum())


# --------------------------------------------------------------------------- 8. reproducibility

def test_same_config_data_seed_reproduces(first, second):
    assert second.record["metrics"] == first.record["metrics"]
    a, b = cv_results(first.dir), cv_results(second.dir)
    assert [(r["candidate"], r["params"], r["score"], r["fold_scores"]) for r in a] == \
           [(r["candidate"], r["params"], r["score"], r["fold_scores"]) for r in b]
    ia, ib = stage_artifact(first.record, "ingestion"), stage_artifact(second.record, "ingestion")
    assert ia["fingerprint"] == ib["fingerprint"]
    assert fingerprint(pd.read_parquet(ia["train_path"])) == fingerprint(pd.read_parquet(ib["train_path"]))
    assert stage_artifact(first.record, "trainer")["threshold"] == stage_artifact(second.record, "trainer")["threshold"]


def test_different_seed_changes_split_and_metrics(first, tmp_path, base_data):
    config = make_project(tmp_path, data=base_data, pipeline={**NO_DRIFT, "run": {"seed": 7}})
    rec = read_run_json(run_pipeline(config).dir)
    ia, ib = stage_artifact(first.record, "ingestion"), stage_artifact(rec, "ingestion")
    assert ia["fingerprint"] == ib["fingerprint"]                   # same data content
    assert fingerprint(pd.read_parquet(ia["train_path"])) != fingerprint(pd.read_parquet(ib["train_path"]))
    assert rec["metrics"]["roc_auc"] != first.record["metrics"]["roc_auc"]
    assert [r["fold_scores"] for r in cv_results(run_dirs(config)[0])] != [r["fold_scores"] for r in cv_results(first.dir)]


# --------------------------------------------------------------------------- 9. run folders

def test_run_folders_unique_within_the_same_instant(tmp_path, monkeypatch):
    frozen = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(run_mod, "datetime", FrozenDatetime)
    runs = [Run(tmp_path / "artifacts", {"k": i}) for i in range(3)]
    try:
        dirs = [r.dir for r in runs]
        assert len(set(dirs)) == 3 and all(d.is_dir() for d in dirs)
        assert all(d.name.startswith("20240506T070809") for d in dirs)
        assert len({r.id for r in runs}) == 3
        for r, i in zip(runs, range(3)):
            assert json.loads((r.dir / "run.json").read_text())["config"] == {"k": i}
    finally:
        for r in runs:
            r.finish()


def test_run_objects_created_back_to_back_differ(tmp_path):
    a, b = Run(tmp_path, {}), Run(tmp_path, {})
    a.finish()
    b.finish()
    assert a.dir != b.dir and a.dir.parent == b.dir.parent == tmp_path


def test_run_log_records_stages_without_cli_logging_setup(tmp_path):
    import logging

    logger = logging.getLogger("tabpipe")
    saved = logger.level
    logger.setLevel(logging.NOTSET)  # as in a fresh process that did not go through the CLI
    try:
        run = Run(tmp_path, {})
        with run.logging_to_folder():
            run.stage("ingestion", lambda out: None)
            run.finish()
        assert logger.level == logging.NOTSET   # as it was before the run
    finally:
        logger.setLevel(saved)
    log = (run.dir / "run.log").read_text()
    assert "stage ingestion started" in log and "stage ingestion done" in log


def test_a_run_leaves_global_logging_as_it_was(tmp_path):
    """Creating a Run touches no logger; its log file is attached only inside logging_to_folder()."""
    import logging
    import warnings

    logger, warnings_logger = logging.getLogger("tabpipe"), logging.getLogger("py.warnings")
    before = (list(logger.handlers), logger.level, list(warnings_logger.handlers), warnings_logger.propagate,
              warnings.showwarning)
    run = Run(tmp_path, {})
    assert (list(logger.handlers), logger.level, list(warnings_logger.handlers), warnings_logger.propagate,
            warnings.showwarning) == before
    with run.logging_to_folder():
        assert len(logger.handlers) == len(before[0]) + 1 and warnings_logger.propagate is False
        warnings.warn("captured while the run logs", UserWarning, stacklevel=1)
    run.finish()
    assert (list(logger.handlers), logger.level, list(warnings_logger.handlers), warnings_logger.propagate,
            warnings.showwarning) == before
    assert "captured while the run logs" in (run.dir / "run.log").read_text()


def test_run_records_failed_stage(tmp_path):
    run = Run(tmp_path, {"x": 1})
    with run.logging_to_folder():
        assert run.stage("one", lambda out: {"path": out / "f"}) == {"path": run.dir / "01_one" / "f"}
        with pytest.raises(DataError) as info:
            run.stage("two", lambda out: (_ for _ in ()).throw(DataError("boom")))
        rec = json.loads((run.dir / "run.json").read_text())
        assert rec["status"] == "running"  # rewritten after every stage, before the run finishes
        assert rec["stages"]["one"]["status"] == "succeeded" and rec["stages"]["two"]["status"] == "failed"
        assert rec["stages"]["two"]["error"] == "DataError: boom"
        run.finish(error=info.value)
    rec = json.loads((run.dir / "run.json").read_text())
    assert rec["status"] == "failed" and rec["error"] == "DataError: boom" and rec["finished_at"]
    assert "Traceback" in (run.dir / "run.log").read_text()


# --------------------------------------------------------------------------- 11. invalid rows

def corrupt(df: pd.DataFrame) -> tuple[pd.DataFrame, set[int]]:
    """Break a few rows (by position) in ways the hand-written schema forbids (hard rules) or does not
    expect (rows 5 and 31: kept with a warning; see ``EXPECTED_ONLY``); returns the hard rows."""
    df = df.copy()
    for name in ("latency_ms", "active_users"):
        df[name] = df[name].astype(object)
    df.loc[5, "latency_ms"] = -10.0                 # below min: an expectation, kept with a warning
    df.loc[17, "latency_ms"] = "fast"               # not a number
    df.loc[23, "technology"] = "6G"                 # unknown category, hard: [category]
    df.loc[31, "rsrp_dbm"] = np.nan                 # null in a non-nullable column: an expectation
    df.loc[47, "active_users"] = 3.5                # not a whole number
    df.loc[47, "prb_utilization_pct"] = 250.0       # same row, two problems (hard: [range])
    return df, {17, 23, 47}


EXPECTED_ONLY = {5: ("latency_ms", "range"), 31: ("rsrp_dbm", "null")}


def test_invalid_rows_fail_by_default(tmp_path, base_data):
    data, bad = corrupt(base_data.head(600))
    config = make_project(tmp_path, data=data)
    with pytest.raises(DataError) as info:
        run_pipeline(config)
    message = str(info.value)
    assert "violates the schema" in message and "validation_report.json" in message
    (run_dir,) = run_dirs(config)
    rec = read_run_json(run_dir)
    assert rec["status"] == "failed" and rec["stages"]["validation"]["status"] == "failed"
    assert "violates the schema" in rec["error"]
    # the corrupted rows that landed in the training split are all reported, by column and rule
    keys = ["measurement_id"]
    train = pd.read_parquet(stage_artifact(rec, "ingestion")["train_path"])
    bad_keys = set(map(tuple, data.loc[sorted(bad), keys].astype(str).to_numpy()))
    in_train = sum(tuple(r) in bad_keys for r in train[keys].astype(str).to_numpy())
    assert in_train > 0
    report = json.loads((stage_dir(run_dir, "validation") / "validation_report.json").read_text())
    assert report["schema_checks"]["train"]["rows_with_errors"] == in_train
    for column in report["schema_checks"]["train"]["errors"]:
        assert f"  {column}: " in message


def test_validation_row_numbers_point_at_the_source_rows(tmp_path, base_data):
    from tabpipe.training.components.ingestion import DataIngestion
    from tabpipe.training.components.validation import DataValidation
    from tabpipe.config import load_settings
    from tabpipe.training.rowfiles import RowFiles
    from tabpipe.training.specs import IngestionConfig, ValidationConfig

    data, bad = corrupt(base_data.head(600))
    s = load_settings(make_project(tmp_path, data=data, pipeline={"validation": {"on_invalid_rows": "drop"}}))
    p = s.pipeline
    rows = RowFiles()
    ingestion = DataIngestion(IngestionConfig(source=p.source, base_dir=s.base_dir, environ={}, target=TARGET,
                                              test_size=0.2, seed=0, out_dir=tmp_path / "ing", uploaded_rows=None,
                                              rows=rows)).run()
    validation = DataValidation(ValidationConfig(schema=s.schema_, on_invalid_rows="drop",
                                                 integrity=p.validation.integrity,
                                                 drift=p.validation.drift.model_copy(update={"enabled": False}),
                                                 seed=0, out_dir=tmp_path / "val", rows=rows),
                                ingestion, registry_of(s.config_path)).run()
    assert validation.rows_dropped == len(bad)
    report = json.loads(validation.report_path.read_text())
    reported = {row for split in report["schema_checks"].values() for problems in split["errors"].values()
                for p in problems for row in p["example_rows"]}
    assert reported == bad
    warned = {row: (column, p["rule"]) for split in report["schema_checks"].values()
              for column, problems in split["warnings"].items() for p in problems for row in p["example_rows"]}
    assert warned == EXPECTED_ONLY
    assert validation.rows_with_warnings == 2
    assert validation.warning_counts == {"latency_ms": {"range": 1}, "rsrp_dbm": {"null": 1}}


def test_invalid_rows_dropped_and_counted(tmp_path, base_data):
    data, bad = corrupt(base_data.head(800))
    config = make_project(tmp_path, data=data, pipeline={"validation": {"on_invalid_rows": "drop"}})
    run = run_pipeline(config)
    rec = read_run_json(run.dir)
    assert rec["status"] == "succeeded"
    val = stage_artifact(rec, "validation")
    assert val["rows_dropped"] == len(bad) == 3
    assert val["n_train"] + val["n_test"] == 800 - 3
    assert val["warning_counts"] == {"latency_ms": {"range": 1}, "rsrp_dbm": {"null": 1}}   # in run.json
    assert stage_artifact(rec, "ingestion")["n_rows"] == 800
    report = json.loads(Path(val["report_path"]).read_text())
    checks = report["schema_checks"]
    assert checks["train"]["rows_with_errors"] + checks["test"]["rows_with_errors"] == 3
    assert checks["train"]["rows_with_warnings"] + checks["test"]["rows_with_warnings"] == 2
    rules = {(col, p["rule"]) for split in checks.values() for col, ps in split["errors"].items() for p in ps}
    assert {("latency_ms", "type"), ("technology", "category"), ("active_users", "type"),
            ("prb_utilization_pct", "range")} == rules
    kept = pd.concat([pd.read_parquet(val["train_path"]), pd.read_parquet(val["test_path"])])
    assert len(kept) == 797 and set(kept["technology"]) <= {"3G", "4G", "5G"}
    assert (kept["latency_ms"] == -10.0).sum() == 1 and kept["rsrp_dbm"].isna().sum() == 1   # expectations: kept
    x_train = np.load(stage_artifact(rec, "transformation")["x_train_path"])
    assert x_train.shape[0] == val["n_train"]


# --------------------------------------------------------------------------- time budget

def test_time_budget_stops_the_search(tmp_path, base_data):
    models = {"candidates": [
        {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
         "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 5},
    ]}
    # also: a Parquet source and a schema from infer_schema
    config = make_project(tmp_path, data=base_data.head(800), models=models, schema="infer", data_format="parquet",
                          pipeline={"training": {"time_budget_s": 0.001}, "transformation": {"resampling": "none"}})
    rec = read_run_json(run_pipeline(config).dir)
    assert rec["status"] == "succeeded"
    assert rec["config"]["schema"]["columns"]["cell_id"]["role"] == "id"
    assert next(iter(rec["config"]["schema"]["columns"])) == "measurement_id"   # inferred id, first: the join key
    assert rec["config"]["schema"]["columns"]["measurement_id"]["role"] == "id"
    trainer = stage_artifact(rec, "trainer")
    assert trainer["configs_tried"] == 1   # fold preparation alone used the budget: one configuration, evaluated anyway
    results = cv_results(Path(rec["stages"]["trainer"]["folder"]).parent)
    assert len(results) == trainer["configs_total"] == 5   # every configuration is listed, with why it stopped
    assert results[0]["stopped"] == "finished" and "after the budget ran out" in results[0]["note"]
    assert all(r["stopped"] == "out_of_budget" and r["score"] is None for r in results[1:])
    assert trainer["stopped"] == {"finished": 1, "out_of_budget": 4}


def test_numbers_in_a_category_column_train_with_warnings(tmp_path, base_data):
    """A category column read as floats, one of them 1e300 (a TypeError before): the run succeeds, the
    unlisted values are counted as warnings, the rows are kept."""
    data = base_data.head(600).copy()
    data["vendor"] = np.where(np.arange(600) % 2 == 0, 1.0, 2.0)
    data.loc[7, "vendor"] = 1e300
    run = run_pipeline(make_project(tmp_path, data=data))
    rec = read_run_json(run.dir)
    assert rec["status"] == "succeeded"
    val = stage_artifact(rec, "validation")
    assert val["rows_dropped"] == 0 and val["warning_counts"] == {"vendor": {"category": 600}}
    assert val["rows_with_warnings"] == 600


# --------------------------------------------------------------------------- per-candidate resampling

def test_per_candidate_resampling_prepares_each_kind_once_on_training_rows(tmp_path, monkeypatch):
    models = {"candidates": [
        {"name": "weighted", "class": "sklearn.linear_model.LogisticRegression", "resampling": "none",
         "params": {"max_iter": 300, "class_weight": "balanced"}, "search": {"C": [0.1, 1.0]}, "n_iter": 2},
        {"name": "smoted", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
         "search": {"C": [0.1, 1.0]}, "n_iter": 2},  # inherits the pipeline's smote
    ]}
    config = make_project(tmp_path, rows=1000, seed=3, models=models, pipeline=NO_DRIFT)
    fits, samples = [], []
    real_fit_transform, real_resample = folds_mod.fit_transform, folds_mod.resample

    def spy_fit_transform(pre, train, *others):
        fits.append(train.index.copy())
        return real_fit_transform(pre, train, *others)

    def spy_resample(X, y, kind, seed):
        out = real_resample(X, y, kind, seed)
        samples.append({"rows": len(X), "kind": kind, "out_rows": len(out[1])})
        return out

    monkeypatch.setattr(folds_mod, "fit_transform", spy_fit_transform)   # each fold's preprocessing ...
    monkeypatch.setattr(folds_mod, "resample", spy_resample)             # ... and resampling (the search)
    monkeypatch.setattr(trainer_mod, "resample", spy_resample)           # the final refit
    rec = read_run_json(run_pipeline(config).dir)
    assert rec["status"] == "succeeded"
    k, n_train = 3, stage_artifact(rec, "ingestion")["n_train"]
    assert len(fits) == k                                   # preprocessing fitted once per fold, shared by both kinds
    search = samples[:-1]
    assert sorted(s["kind"] for s in search) == ["none"] * k + ["smote"] * k   # each kind prepared once per fold
    assert all(s["rows"] < n_train for s in search)         # fold training rows only
    assert all(s["out_rows"] == s["rows"] for s in search if s["kind"] == "none")
    assert all(s["out_rows"] > s["rows"] for s in search if s["kind"] == "smote")
    results = cv_results(Path(rec["stages"]["trainer"]["folder"]).parent)
    assert {(r["candidate"], r["resampling"]) for r in results} == {("weighted", "none"), ("smoted", "smote")}
    best = max(results, key=lambda r: r["score"])
    trainer = stage_artifact(rec, "trainer")
    assert trainer["best_resampling"] == best["resampling"]
    assert samples[-1]["kind"] == best["resampling"] and samples[-1]["rows"] == n_train   # the refit uses it
    with open(trainer["model_path"], "rb") as fh:
        assert dill.load(fh).resampling == best["resampling"]
    assert registry_of(config).list_versions()[0].metadata["resampling"] == best["resampling"]

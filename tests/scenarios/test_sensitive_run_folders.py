"""``sensitive: true`` columns never reach a run folder, the registry or the history store in clear.

A project marks an id, a categorical feature and a numeric feature sensitive, with values no other
text can contain ("SECRET-..." strings, numbers ending in .321). After `tabpipe train` (twice: the
second run has a production model, so drift and evidently reports are written), `predict` and
`monitor`, every file under the artifacts folder and the registry folder (history store included)
is read as bytes, and parquet / npy files are also decoded, looking for any of those values.
The model must still learn from the sensitive features.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import dill
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import SCHEMA, TABPIPE_BIN, TARGET, make_project, read_run_json, registry_of

from tabpipe.config import load_settings
from tabpipe.training.pipeline import TrainingPipeline
from tabpipe.training.run import RunFolderError
from tabpipe.sources.sample import generate

KEY_ENV = "TABPIPE_TEST_HASH_KEY"
KEY = "test-key-not-a-secret"
SENSITIVE = ("cell_id", "vendor", "throughput_mbps")
TEXT = re.compile(rb"SECRET-|987\d{4}\.321")   # the clear values as any text format would print them


def _schema() -> dict:
    doc = copy.deepcopy(SCHEMA)
    for name in SENSITIVE:
        doc["columns"][name]["sensitive"] = True
    del doc["columns"]["vendor"]["categories"]   # a list in schema.yaml is configuration, copied as such
    return doc


def _data(rows: int, seed: int) -> pd.DataFrame:
    """Generated rows whose sensitive columns hold marked values; vendor and throughput predict the label."""
    df = generate(rows, seed=seed)
    rng = np.random.default_rng(seed)
    fault = df[TARGET].to_numpy() == 1
    df["cell_id"] = [f"SECRET-ID-{seed}-{i:05d}" for i in range(rows)]
    df["vendor"] = np.where(fault & (rng.random(rows) < 0.8), "SECRET-VENDOR-X",
                            rng.choice(["SECRET-VENDOR-A", "SECRET-VENDOR-B", "SECRET-VENDOR-C"], rows))
    df["throughput_mbps"] = 9876000 + np.round(df["throughput_mbps"]) + 0.321
    return df


def _numbers(*frames: pd.DataFrame) -> np.ndarray:
    values = pd.concat([f["throughput_mbps"] for f in frames]).dropna().unique()
    assert all(TEXT.search(repr(float(v)).encode()) for v in values[:50])   # the pattern matches how they print
    return values


def _binary(values: np.ndarray) -> re.Pattern:
    """The 8-byte float64 forms (both byte orders) of ``values``: how pickles, npy and SQLite REALs hold them."""
    forms = {np.float64(v).astype("<f8").tobytes() for v in values} | {np.float64(v).astype(">f8").tobytes()
                                                                         for v in values}
    return re.compile(b"|".join(re.escape(f) for f in forms))


def _leaks(roots: list[Path], numbers: np.ndarray, medians: set[float]) -> list[str]:
    """Every place under ``roots`` where a clear sensitive value is found (empty: none).

    A fitted model holds statistics of its features: for a numeric one the median it imputes with
    and centres on (documented in docs/monitoring.md). Pickles may hold ``medians``, no other value."""
    binary, found, files = _binary(numbers), [], 0
    in_models = _binary(np.array([v for v in numbers if v not in medians]))
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            files += 1
            blob = path.read_bytes()
            if TEXT.search(blob):
                found.append(f"{path}: text {TEXT.search(blob).group()!r}")
            if (in_models if path.suffix == ".pkl" else binary).search(blob):
                found.append(f"{path}: a float64 sensitive value")
            if path.suffix == ".parquet":
                df = pd.read_parquet(path)
                for column in df.columns:
                    values = df[column]
                    if values.astype(str).str.contains("SECRET-", regex=False).any():
                        found.append(f"{path}: column {column} holds SECRET- strings")
                    if pd.api.types.is_numeric_dtype(values) and np.isin(values.to_numpy(), numbers).any():
                        found.append(f"{path}: column {column} holds sensitive numbers")
            if path.suffix == ".npy":
                array = np.load(path, allow_pickle=False)
                if array.dtype.kind == "f" and np.isin(array, numbers).any():
                    found.append(f"{path}: sensitive numbers in the array")
    assert files > 20, f"only {files} files found under {roots}: the scan would prove nothing"
    return found


def _cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(TABPIPE_BIN), *map(str, args)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, KEY_ENV: KEY, **(env or {})})
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr   # 3: monitor says "retrain"
    return proc


def _environ(hash_key: str | None = None) -> dict[str, str]:
    """This process's environment (the registry's signing key) with the hash key ``hash_key``, or without one."""
    environ = {name: value for name, value in os.environ.items() if name != KEY_ENV}
    return environ if hash_key is None else {**environ, KEY_ENV: hash_key}


def _project(root: Path, *, mode: str = "hash", rows: int = 1500) -> Path:
    return make_project(root, data=_data(rows, seed=0), schema=_schema(), rows=rows, pipeline={
        "monitoring": {"log_predictions": True, "sensitive": mode, "hash_key_env": KEY_ENV,
                       "rules": {"retrain_roc_auc_below": 1.0}},   # monitor always decides "retrain"
        "training": {"time_budget_s": 30},
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A project trained twice with `tabpipe train`, then `predict` and `monitor --input` on new rows, and
    `monitor --retrain --append-labelled` (a third training run, on the source + the new labelled rows)."""
    root = tmp_path_factory.mktemp("sensitive")
    config = _project(root)
    new = _data(800, seed=7)
    new_path = root / "incoming" / "new.csv"
    new_path.parent.mkdir()
    new.to_csv(new_path, index=False)
    _cli("train", "--config", config)
    _cli("train", "--config", config)          # production exists now: drift against its reference
    _cli("predict", "--config", config, "--input", new_path, "--output", root / "incoming" / "scored.csv")
    checked = json.loads(_cli("monitor", "--config", config, "--input", new_path, "--labels", TARGET, "--json").stdout)
    assert {"vendor", "throughput_mbps"} <= set(checked["psi_skipped"]) and not {"vendor", "throughput_mbps"} & set(checked["psi"])
    assert all("sensitive" in checked["psi_skipped"][name] for name in ("vendor", "throughput_mbps"))
    assert "sensitive" in checked["drift"]["skipped_columns"]["vendor"]
    done = _cli("monitor", "--config", config, "--input", new_path, "--labels", TARGET, "--retrain",
                "--append-labelled", "--json")
    retrain = json.loads(done.stdout)["retrain"]
    assert retrain["status"] == "succeeded" and retrain["data_file"] is None, retrain
    assert "800 labelled rows" in retrain["data"]
    return config, _numbers(_data(1500, seed=0), new)


def test_no_clear_sensitive_value_in_run_folders_registry_or_store(trained):
    config, numbers = trained
    root = config.parent
    runs = sorted((root / "artifacts").iterdir())
    assert any((p / "run.json").is_file() for p in runs) and (root / "artifacts" / "monitoring").is_dir()
    assert (root / "registry" / "history.sqlite").is_file()
    second = read_run_json(sorted(p for p in runs if (p / "run.json").is_file())[-1])
    assert second["stages"]["validation"]["artifact"]["drift_html"]   # the evidently report was written
    drift = json.loads(Path(second["stages"]["validation"]["artifact"]["report_path"]).read_text())["drift"]
    assert all("sensitive" in drift["skipped_columns"][name] for name in ("vendor", "throughput_mbps"))
    assert {"latency_ms", "region"} <= set(drift["columns"])           # the other columns are still checked
    assert _leaks([root / "artifacts", root / "registry"], numbers, _medians(config)) == []


def _medians(config: Path) -> set[float]:
    """The medians of throughput_mbps the project's trained models impute with and centre on (one per
    training data: each run's model.pkl, loaded as the test's own files)."""
    medians = set()
    for path in (config.parent / "artifacts").rglob("model.pkl"):
        with open(path, "rb") as fh:
            preprocessor = dill.load(fh).preprocessor  # nosec B301 -- written by this test's own runs
        numeric = preprocessor.named_transformers_["num"]
        columns = next(cols for name, _, cols in preprocessor.transformers_ if name == "num")
        median = float(numeric[0].statistics_[list(columns).index("throughput_mbps")])
        assert median == numeric[-1].center_[list(columns).index("throughput_mbps")]
        medians.add(median)
    assert medians
    return medians


def test_model_still_learns_from_the_sensitive_features(trained):
    config, _ = trained
    model, _ = registry_of(config).load_model(None)
    assert {"vendor", "throughput_mbps"} <= set(model.features)
    rows = _data(400, seed=11)
    base = model.predict_proba(rows)
    other_vendor = model.predict_proba(rows.assign(vendor=np.where(rows["vendor"] == "SECRET-VENDOR-X",
                                                                     "SECRET-VENDOR-A", "SECRET-VENDOR-X")))
    assert np.abs(base - other_vendor).mean() > 0.01
    other_throughput = model.predict_proba(rows.assign(throughput_mbps=rows["throughput_mbps"][::-1].to_numpy()))
    assert np.abs(base - other_throughput).max() > 1e-4


def test_drop_mode_and_resume_keep_clear_values_out(tmp_path, monkeypatch):
    """In-process, ``drop`` without a key; a run stopped after the trainer is resumed: the data stages run
    again (their clear rows were in the first process's memory only), the trainer's model is reused."""
    import tabpipe.training.search.folds as folds_module

    samples, prepare = [], folds_module.prepare_fold   # the search's work files: outside the run folder
    monkeypatch.setattr(folds_module, "prepare_fold", lambda path, *a: samples.append(path) or prepare(path, *a))
    config = _project(tmp_path, mode="drop", rows=1200)
    settings = load_settings(config)
    TrainingPipeline(settings, environ=_environ()).run(run_name="nightly", until="trainer")
    assert samples and not any(p.is_relative_to(tmp_path) or p.exists() for p in samples)
    first = read_run_json(tmp_path / "artifacts" / "nightly")
    run = TrainingPipeline(settings, environ=_environ()).run(run_name="nightly")
    record = read_run_json(run.dir)
    assert record["status"] == "succeeded" and record["model_version"] == "v0001"
    assert record["stages"]["trainer"] == first["stages"]["trainer"]                    # reused
    assert record["stages"]["ingestion"]["artifact"]["fingerprint"] == first["data_fingerprint"]
    log = (run.dir / "run.log").read_text()
    assert log.count("stage ingestion started") == 2 and log.count("stage trainer started") == 1
    numbers = _numbers(_data(1200, seed=0))
    assert _leaks([tmp_path / "artifacts", tmp_path / "registry"], numbers, _medians(config)) == []
    reference = pd.read_parquet(registry_of(config).fetch("v0001", "reference.parquet"))
    assert not set(SENSITIVE) & set(reference.columns)


def test_resume_refuses_a_changed_source(tmp_path):
    config = _project(tmp_path, rows=1200)
    settings = load_settings(config)
    TrainingPipeline(settings, environ=_environ(KEY)).run(run_name="nightly", until="transformation")
    _data(1200, seed=1).to_csv(tmp_path / "data.csv", index=False)
    for _ in range(2):   # and again: the failed attempt did not make the new data the folder's data
        with pytest.raises(RunFolderError, match="changed since"):
            TrainingPipeline(settings, environ=_environ(KEY)).run(run_name="nightly")
    assert yaml.safe_load(config.read_text())["source"]["path"] == "data.csv"


def test_compiled_scorer_pseudonymises_like_the_model(trained):
    """The service's compiled one-record path (``RecordScorer``) gives the model's probabilities for a
    sensitive categorical feature too: known, unseen and missing categories."""
    from service_helpers import json_records

    from tabpipe.scoring.compiled import RecordScorer

    config, _ = trained
    model, _ = registry_of(config).load_model(None)
    scorer = RecordScorer(model)
    assert scorer.blocks is not None and any(type(b).__name__ == "_PseudonymBlock" for b in scorer.blocks)
    rows = _data(60, seed=5)
    rows.loc[:9, "vendor"] = "SECRET-VENDOR-NEW"
    rows.loc[10:14, "vendor"] = None
    records = json_records(rows, model.features)
    got = scorer.proba([scorer.check(r)[0] for r in records])
    np.testing.assert_allclose(got, model.predict_proba(pd.DataFrame(records)), rtol=0, atol=1e-6)
    assert np.ptp(got[:20]) > 0   # the rows differ: not all scored alike

"""Integrity before training, end to end: a leaked column stops `tabpipe train` (exit 1, the column named,
nothing published); feature rows repeated across the split end on one side and are counted."""
from __future__ import annotations

import copy
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from helpers import SCHEMA, TABPIPE_BIN, TARGET, make_project, read_run_json, registry_of, run_dirs, run_pipeline, stage_dir
from tabpipe.sources.sample import generate
from tabpipe.training.holdout import row_hashes

WIDE = {**os.environ, "COLUMNS": "400"}
FEATURES = [name for name, spec in SCHEMA["columns"].items() if spec.get("role", "feature") == "feature"]


def train_cli(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config), *args], capture_output=True, text=True,
                          cwd=config.parent, env=WIDE, timeout=400)


@pytest.fixture(scope="module")
def leaked(tmp_path_factory):
    """A project whose data holds the target again as a category column, ``ticket_status``."""
    data = generate(600, seed=3)
    data["ticket_status"] = np.where(data[TARGET] == 1, "open", "closed")
    schema = copy.deepcopy(SCHEMA)
    schema["columns"]["ticket_status"] = {"type": "category"}
    return make_project(tmp_path_factory.mktemp("leak"), data=data, schema=schema)


def test_a_leaked_column_stops_the_run_naming_it_and_nothing_is_published(leaked):
    proc = train_cli(leaked)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "training failed: target leakage" in message
    assert "'ticket_status' (AUC 1.0000)" in message and "validation.integrity.leakage.allow" in message
    registry = registry_of(leaked)
    assert registry.list_versions() == [] and registry.production_version() is None
    run_dir, = run_dirs(leaked)
    record = read_run_json(run_dir)
    assert record["status"] == "failed" and record["stages"]["validation"]["status"] == "failed"
    assert "transformation" not in record["stages"] and "pusher" not in record["stages"]
    report = json.loads((stage_dir(run_dir, "validation") / "validation_report.json").read_text())
    assert report["integrity"]["leakage"]["stopped_by"] == ["ticket_status"]
    assert report["integrity"]["leakage"]["auc"]["ticket_status"] == 1.0
    assert max(auc for c, auc in report["integrity"]["leakage"]["auc"].items() if c != "ticket_status") < 0.9


def test_an_allowed_column_passes_validation(leaked):
    import yaml

    doc = yaml.safe_load(leaked.read_text())
    doc["validation"]["integrity"] = {"leakage": {"allow": ["ticket_status"]}}
    allowed = leaked.parent / "allowed.yaml"
    allowed.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = train_cli(allowed, "--until", "validation")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = run_dirs(leaked)[-1]   # the newest
    report = json.loads((stage_dir(run_dir, "validation") / "validation_report.json").read_text())
    assert report["integrity"]["leakage"]["allowed"] == ["ticket_status"]
    assert report["integrity"]["leakage"]["stopped_by"] == []


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """800 distinct rows, then copies under new measurement ids: rows 0-39 once more, rows 40-49 twice more
    (60 exact duplicates), and rows 50-52 once more with the opposite label (3 conflicting feature rows)."""
    base = generate(800, seed=4)
    assert not base[FEATURES].duplicated().any()
    copies = pd.concat([base.iloc[:40], base.iloc[40:50], base.iloc[40:50],
                        base.iloc[50:53].assign(**{TARGET: 1 - base[TARGET].iloc[50:53]})], ignore_index=True)
    copies["measurement_id"] = [f"copy-{i}" for i in range(len(copies))]
    data = pd.concat([base, copies], ignore_index=True)
    config = make_project(tmp_path_factory.mktemp("repeated"), data=data)
    run = run_pipeline(config)
    return config, run.dir, data


def test_repeats_across_the_split_are_counted_and_kept_on_one_side(repeated):
    config, run_dir, data = repeated
    record = read_run_json(run_dir)
    assert record["status"] == "succeeded"
    ingestion = stage_dir(run_dir, "ingestion")
    split = {name: pd.read_parquet(ingestion / f"{name}.parquet") for name in ("train", "test")}
    straddling = np.intersect1d(row_hashes(split["train"], FEATURES), row_hashes(split["test"], FEATURES))
    assert len(straddling) > 0   # the seeded split did put copies on both sides: the case this test is about

    report = json.loads((stage_dir(run_dir, "validation") / "validation_report.json").read_text())["integrity"]
    assert report["duplicate_rows"] == {"rows": 60}
    assert report["conflicting_labels"] == {"rows": 6, "feature_rows": 3}
    across = report["across_split"]
    assert across["policy"] == "keep_one_side" and across["feature_rows"] == len(straddling)
    assert across["moved_to_train"] + across["moved_to_test"] > 0
    artifact = record["stages"]["validation"]["artifact"]
    assert artifact["integrity_counts"] == {
        "duplicate_rows": 60, "conflicting_label_rows": 6, "across_split_train_rows": across["train_rows"],
        "across_split_test_rows": across["test_rows"], "moved_to_train": across["moved_to_train"],
        "moved_to_test": across["moved_to_test"]}

    kept = {name: pd.read_parquet(artifact[f"{name}_path"]) for name in ("train", "test")}
    assert len(kept["train"]) + len(kept["test"]) == len(data)
    assert artifact["n_test"] == len(kept["test"]) == len(split["test"]) + across["moved_to_test"] - across["moved_to_train"]
    assert not np.isin(row_hashes(kept["test"], FEATURES), row_hashes(kept["train"], FEATURES)).any()
    # the rows the model was evaluated on are the validation stage's test split
    assert len(np.load(stage_dir(run_dir, "transformation") / "y_test.npy")) == len(kept["test"])

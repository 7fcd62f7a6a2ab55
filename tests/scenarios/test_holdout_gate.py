"""The gate on grown data, end to end: production is never scored on rows it was trained on."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import TARGET, make_project, read_run_json, registry_of, run_pipeline, stage_dir
from tabpipe.schema import positive_mask
from tabpipe.sources.sample import generate
from tabpipe.training.holdout import TRAIN_ROWS_FILE, row_hashes

NO_DRIFT = {"validation": {"drift": {"enabled": False}}}


def artifact(record: dict, stage: str) -> dict:
    return record["stages"][stage]["artifact"]


def test_grown_data_gate_leaves_out_the_rows_production_was_trained_on(tmp_path):
    base = generate(2000, seed=1)
    config = make_project(tmp_path, data=base, pipeline=NO_DRIFT)
    first = read_run_json(run_pipeline(config).dir)
    assert first["model_version"] == "v0001"
    meta = registry_of(config).metadata("v0001")
    assert meta["train_rows"]["rows"] == 1600 and TRAIN_ROWS_FILE in meta["files"]

    # the source grows: the new split's test part now holds rows v0001 was trained on
    pd.concat([base, generate(1000, seed=2)], ignore_index=True).to_csv(config.parent / "data.csv", index=False)
    run = run_pipeline(config)
    second = read_run_json(run.dir)
    blessing = json.loads((stage_dir(run.dir, "evaluation") / "blessing.json").read_text())

    columns = meta["train_rows"]["columns"]
    v1_train = pd.read_parquet(artifact(first, "validation")["train_path"])
    test = pd.read_parquet(artifact(second, "validation")["test_path"])
    seen = np.isin(row_hashes(test, columns), row_hashes(v1_train, columns))
    assert 0 < seen.sum() < len(test)                  # the situation the gate must handle
    assert blessing["production_version"] == "v0001"
    assert blessing["new"]["rows"] == len(test) == 600  # the new model's own metrics: the whole split
    assert blessing["production"]["rows"] == blessing["new_on_compared_rows"]["rows"] == int((~seen).sum())
    assert f"{int(seen.sum())} of {len(test)} test rows were v0001's training rows" in blessing["compared_rows"]

    # production's score is its score on the rows it never saw
    model, _ = registry_of(config).load_model("v0001")
    unseen = test[~seen]
    y = positive_mask(unseen[TARGET], 1).astype(int)
    expected = roc_auc_score(y, model.predict_proba(unseen.drop(columns=[TARGET])))
    assert blessing["production"]["roc_auc"] == pytest.approx(expected)
    assert f"on the {int((~seen).sum())} test rows production was not trained on" in blessing["reason"]

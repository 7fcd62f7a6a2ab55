"""The gate never scores production on rows it was trained on (tabpipe.training.holdout)."""
from __future__ import annotations


from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.training.components.evaluation import gate
from tabpipe.training.holdout import TRAIN_ROWS_FILE, hash_columns, row_hashes, unseen_by_production
from tabpipe.schema import Schema

NO_DRIFT = {"validation": {"drift": {"enabled": False}}}


def artifact(record: dict, stage: str) -> dict:
    return record["stages"][stage]["artifact"]


def test_row_hashes_follow_the_values_not_the_index():
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan, 1.0], "b": ["x", "y", "z", "x"]}, index=[10, 11, 12, 13])
    h = row_hashes(df, ["a", "b"])
    assert h.dtype == np.uint64 and len(h) == 4
    assert h[0] == h[3] and len(set(h[:3].tolist())) == 3
    assert (row_hashes(df.reset_index(drop=True), ["a", "b"]) == h).all()
    assert not (row_hashes(df, ["b", "a"]) == h).all()   # the recorded column order is part of the identity


def test_hash_columns_leave_out_sensitive_and_non_features():
    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
        "id": {"type": "string", "role": "id"}, "a": {"type": "float"},
        "secret": {"type": "float", "sensitive": True}, "b": {"type": "category"}}})
    assert hash_columns(schema) == ["a", "b", "y"]


class _Registry:
    def __init__(self, meta, rows: Path | None = None):
        self.meta, self.rows = meta, rows

    def metadata(self, version):
        return self.meta

    def fetch(self, version, name):
        assert name == TRAIN_ROWS_FILE
        return self.rows


def test_a_version_without_training_rows_is_compared_on_the_whole_split():
    mask, note = unseen_by_production(pd.DataFrame({"a": [1]}), _Registry({"files": {"model.pkl": {}}}), "v0003")
    assert mask is None and "v0003 does not record its training rows" in note
    meta = {"files": {TRAIN_ROWS_FILE: {}}, "train_rows": {"columns": ["a", "gone"]}}
    mask, note = unseen_by_production(pd.DataFrame({"a": [1]}), _Registry(meta), "v0004")
    assert mask is None and "gone" in note


def test_gate_compares_on_the_shared_rows_and_checks_the_minimum_on_all():
    new, on_shared, prod = {"roc_auc": 0.80, "rows": 100}, {"roc_auc": 0.78, "rows": 60}, {"roc_auc": 0.79}
    accepted, reason = gate("roc_auc", new, prod, 0.6, 0.0, "", on_shared)
    assert accepted is False and "0.7800 vs production 0.7900 on the 60 test rows" in reason
    accepted, _ = gate("roc_auc", new, prod, 0.6, 0.0)
    assert accepted is True
    accepted, reason = gate("roc_auc", {"roc_auc": 0.55, "rows": 100}, prod, 0.6, 0.0, "", on_shared)
    assert accepted is False and "min_score" in reason




def test_rows_production_saw_are_left_out_unless_chance_explains_the_repeat(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000     # coarse columns: 4 x 3 x 2 profiles (labels included) shared by many people
    test = pd.DataFrame({"a": rng.integers(0, 4, n).astype(float), "b": rng.choice(["x", "y", "z"], n).astype(object),
                         "y": rng.integers(0, 2, n)})
    test.loc[0, "a"] = 123.25    # one row with a value no other test row has: a copy, when production saw it
    columns = ["a", "b", "y"]
    np.save(tmp_path / "rows.npy", np.unique(row_hashes(test.iloc[:500], columns)))   # production saw rows 0-499
    registry = _Registry({"files": {TRAIN_ROWS_FILE: {}}, "train_rows": {"columns": columns}}, tmp_path / "rows.npy")
    mask, note = unseen_by_production(test, registry, "v0002")
    assert not mask[0]                       # its copy was a training row: left out
    assert mask[1:].all()                    # common profiles: production saw others like them, not these rows
    assert note.startswith(f"1 of {n} test rows were v0002's training rows and are left out; ")
    assert "999 more match its training rows but are common enough to repeat by chance" in note

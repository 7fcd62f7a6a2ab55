"""The gate never scores production on rows it was trained on (tabpipe.training.holdout)."""
from __future__ import annotations


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
    def __init__(self, meta):
        self.meta = meta

    def metadata(self, version):
        return self.meta


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



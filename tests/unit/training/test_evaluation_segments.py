"""The gate with segments: a challenger better on average is refused when it is clearly worse on a big
segment, and accepted when the segment it is worse on is below ``segments.min_rows``."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import tabpipe.training.components.evaluation as evaluation
from tabpipe.config import SegmentsSection
from tabpipe.schema import Schema
from tabpipe.training.rowfiles import RowFiles
from tabpipe.training.specs import EvaluationConfig

SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1},
                                "columns": {"region": {"type": "category"}, "x": {"type": "float"}}})


class ScoreColumn:
    """A 'model' whose probability is a column of the rows (the rows carry both models' scores)."""

    def __init__(self, column: str):
        self.column, self.schema, self.threshold = column, SCHEMA, 0.5

    def predict_proba_typed(self, X):
        return self._scores[X.index].to_numpy()

    def predict_proba(self, frame):
        return self._scores[frame.index].to_numpy()


def _rows(n_a: int, n_b: int, seed: int = 0) -> pd.DataFrame:
    """Segment A: the challenger sharp, production weak; segment B: the other way round."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_a + n_b)
    a = np.arange(len(y)) < n_a

    def scores(quality):
        return 1 / (1 + np.exp(-(quality * (2 * y - 1) + rng.normal(size=len(y)))))
    return pd.DataFrame({"region": np.where(a, "A", "B"), "x": rng.random(len(y)), "y": y,
                         "new": np.where(a, scores(3.0), scores(0.2)), "prod": np.where(a, scores(1.0), scores(2.0))})


def _gate(tmp_path: Path, monkeypatch, rows: pd.DataFrame, min_rows: int) -> dict:
    new, prod = ScoreColumn("new"), ScoreColumn("prod")
    new._scores, prod._scores = rows["new"], rows["prod"]
    test = tmp_path / "test.parquet"
    rows.to_parquet(test)
    model_path = tmp_path / "model.pkl"
    model_path.write_bytes(b"not read: dill.load is replaced")
    monkeypatch.setattr(evaluation, "dill", SimpleNamespace(load=lambda fh: new))
    registry = SimpleNamespace(production_version=lambda: "v0001", load_model=lambda v: (prod, {}),
                               metadata=lambda v: {"files": {}})          # no train_rows: every test row compared
    cfg = EvaluationConfig(metric="roc_auc", min_score=0.5, min_improvement=0.0, out_dir=tmp_path / "ev",
                           rows=RowFiles(), seed=0,
                           segments=SegmentsSection(columns=["region"], min_rows=min_rows, resamplings=300,
                                                    worst_slices=3, slice_min_rows=50))
    validation = SimpleNamespace(test_path=test, train_path=test)
    trainer = SimpleNamespace(model_path=model_path)
    artifact = evaluation.ModelEvaluation(cfg, validation, trainer, registry).run()
    blessing = json.loads(artifact.blessing_path.read_text())
    assert blessing["accepted"] == artifact.accepted
    return blessing


def test_better_on_average_but_worse_on_a_big_segment_is_refused(tmp_path, monkeypatch):
    blessing = _gate(tmp_path, monkeypatch, _rows(2000, 600), min_rows=200)
    assert blessing["new"]["roc_auc"] > blessing["production"]["roc_auc"]   # the average alone would pass
    assert not blessing["accepted"]
    assert "but worse on segment region=B (600 rows)" in blessing["reason"]
    assert blessing["segments"]["refused"] == ["region=B"]
    assert blessing["worst_slices"]["slices"][0]["slice"] == "B"


def test_worse_on_a_segment_below_min_rows_is_accepted(tmp_path, monkeypatch):
    blessing = _gate(tmp_path, monkeypatch, _rows(2000, 150), min_rows=200)
    assert blessing["accepted"], blessing["reason"]
    b = next(s for s in blessing["segments"]["segments"] if s["segment"] == "B")
    assert b["status"] == "too_small" and b["difference"]["value"] < -0.2
    overall = blessing["intervals"]["compared"]["difference"]
    assert overall["value"] == pytest.approx(blessing["new"]["roc_auc"] - blessing["production"]["roc_auc"])
    assert overall["ci"][0] < overall["value"] < overall["ci"][1]

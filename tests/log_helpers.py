"""Logged rows of a small schema, the counting spec of a monitoring window over them, and the field-for-field
comparison of two windows' statistics: shared by the tests of the columnar log's readers (counting in several
processes, compaction)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from tabpipe.drift.profile import build_profile
from tabpipe.model import TabularModel
from tabpipe.monitoring.window_stats import ChunkSpec
from tabpipe.schema import Schema, coerce_frame

T0 = datetime(2026, 3, 1, 9, 40, tzinfo=timezone.utc)
SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "x": {"type": "float", "min": -3, "max": 3}, "n": {"type": "int"},
    "c": {"type": "category", "categories": ["a", "b"]}, "id": {"type": "string", "role": "id"}}})


def logged(n: int, seed: int, *, first: int = 0, total: int | None = None, hours: float = 8) -> list[dict]:
    """Rows ``first`` .. ``first + n`` of ``total`` (default ``n``) logged evenly over ``hours`` from ``T0``, some
    values off the schema's expectations."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, n)
    return [{"request_id": f"r{first + i}", "row_index": 0, "row_id": f"id{first + i}", "model_version": "v1",
             "logged_at": T0 + timedelta(seconds=int((first + i) * hours * 3600 / (total or n))),
             "inputs": {"x": None if i % 17 == 0 else float(x[i]), "n": int(rng.integers(0, 9)),
                        "c": "abz"[i % 3], "id": f"id{first + i}"},
             "probability": float(rng.random()), "prediction": 0, "warnings": []} for i in range(n)]


def counting(train_seed: int) -> tuple[ChunkSpec, dict]:
    """(the spec counting a window of ``logged`` rows — logged probabilities, a 250-row sample —, its profile),
    the profile built from 500 ``logged`` rows of ``train_seed``."""
    train = pd.DataFrame([r["inputs"] for r in logged(500, seed=train_seed)])
    typed, _ = coerce_frame(train, SCHEMA, with_target=False)
    profile = build_profile(typed, SCHEMA, np.random.default_rng(0).random(200), np.zeros(200, int), 0.5)
    model = TabularModel(schema=SCHEMA, preprocessor=None, estimator=None, threshold=0.5, labels=(0, 1))
    return ChunkSpec(model=model, profile_features=profile["features"], seed=3, categorical=True, keep=250), profile


def same(a, b) -> None:
    """Two ``WindowStats`` equal field for field."""
    assert (a.rows, a.nulls, a.rules, a.column_rows, a.rows_with_problems) == \
        (b.rows, b.nulls, b.rules, b.column_rows, b.rows_with_problems)
    assert a.buckets.keys() == b.buckets.keys() and all((a.buckets[k] == b.buckets[k]).all() for k in a.buckets)
    for name in ("proba", "labelled", "y", "sample_keys", "sample_place"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    pd.testing.assert_frame_equal(a.sample, b.sample)

"""A small generated table for the scoring unit tests: its schema (numeric with missing values and a
zero-inflated column, categorical with rare and unseen levels, a sensitive categorical, a datetime), the
preprocessing fitted on it as the trainer fits it, and probe records that reach every branch of the
preprocessing (nulls, unseen and rare levels, values beyond the training range, time-zone offsets)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tabpipe.model import TabularModel
from tabpipe.model.calibration import Calibration
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.schema import Schema, coerce_frame

ROWS = 400

SCHEMA = {
    "target": {"name": "alarm", "positive": "yes"},
    "columns": {
        "reading_id": {"type": "string", "role": "id"},
        "load": {"type": "float", "min": 0, "max": 200},               # some missing
        "bursts": {"type": "float", "min": 0},                          # 70 % zeros: repeated spline knots; some missing
        "users": {"type": "int", "min": 0},
        "backup": {"type": "bool"},                                     # some missing
        "region": {"type": "category", "categories": ["north", "south", "east", "west"]},  # rare levels, missing
        "band": {"type": "category"},                                   # no rare level: an unseen one is ignored
        "customer": {"type": "category", "sensitive": True},           # pseudonymised before one-hot; rare levels
        "seen_at": {"type": "datetime"},                                # some missing
    },
}


def _with_missing(rng: np.random.Generator, values: list, share: float) -> list:
    return [None if rng.random() < share else v for v in values]


def generate_records(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """``n`` JSON-like records of ``SCHEMA`` and their labels (0/1, nonlinear in load, bursts, region and hour)."""
    rng = np.random.default_rng(seed)
    load = rng.normal(60, 20, n).clip(0, 200).round(2)
    bursts = np.where(rng.random(n) < 0.7, 0.0, rng.exponential(3.0, n)).round(3)
    users = rng.poisson(20, n)
    backup = rng.random(n) < 0.3
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    region[:3], region[3:5] = "isle", "fjord"                       # rare: pooled as infrequent
    band = rng.choice(["low", "mid", "high"], n).astype(object)
    customer = rng.choice([f"cust-{i}" for i in range(6)], n).astype(object)
    customer[5:7] = "cust-rare"
    start = datetime(2024, 1, 1)
    minutes = rng.integers(0, 60 * 24 * 30, n)
    seen_at = [(start + timedelta(minutes=int(m))).isoformat() for m in minutes]
    hour = np.array([(start + timedelta(minutes=int(m))).hour for m in minutes])
    score = (((load - 60) / 20) ** 2 + 0.8 * (bursts > 0) + 0.6 * (region == "west") - 0.5 * backup
             + 0.7 * (hour >= 18) + 0.3 * (customer == "cust-1") + rng.normal(0, 0.7, n))
    labels = (score > np.median(score)).astype(int)
    records = [
        {"reading_id": f"r{i}", "load": float(load[i]), "bursts": float(bursts[i]), "users": int(users[i]),
         "backup": bool(backup[i]), "region": region[i], "band": band[i], "customer": customer[i], "seen_at": seen_at[i]}
        for i in range(n)
    ]
    for name, share in (("load", 0.08), ("bursts", 0.05), ("backup", 0.05), ("region", 0.05), ("seen_at", 0.05)):
        for record, value in zip(records, _with_missing(rng, [r[name] for r in records], share)):
            record[name] = value
    return records, labels


def edge_records(base: dict) -> list[dict]:
    """Records for every preprocessing branch: nulls, unseen and rare levels, values far beyond the training
    range, time-zone offsets and a date alone, numbers and booleans sent as text."""
    nullable = ("load", "bursts", "users", "backup", "region", "band", "customer", "seen_at")
    return [
        {**base, **{name: None for name in nullable}},
        {**base, "region": "atlantis", "band": "ultra", "customer": "cust-new"},    # unseen levels
        {**base, "region": "isle", "customer": "cust-rare"},                          # rare levels
        {**base, "load": 950.0, "bursts": 5000.0, "users": 100_000},                 # far above the range
        {**base, "load": 0.0, "bursts": 0.0, "users": 0},                            # at / below the range
        {**base, "load": -400.0, "users": -50},                                       # expectations broken: scored as is
        {**base, "seen_at": "2024-03-05T23:30:00+02:00"},                            # offset -> UTC
        {**base, "seen_at": "2024-03-09"},
        {**base, "load": "12.5", "users": "7", "backup": "yes"},
        {**base, "backup": 0, "bursts": 1e-9},
    ]


@dataclass(eq=False)   # hashed by identity: builders may cache what they fit on a table
class Table:
    """The generated table fitted once: ``X`` (float32, as the trainer fits estimators), labels ``y``, probe ``records``."""

    schema: Schema
    preprocessor: object
    X: np.ndarray
    y: np.ndarray
    records: list[dict]

    def model(self, estimator, calibration: Calibration | None = None) -> TabularModel:
        """A TabularModel of the fitted preprocessing and ``estimator`` (fitted on ``X``, ``y``), calibrated or not."""
        return TabularModel(schema=self.schema, preprocessor=self.preprocessor, estimator=estimator,
                            threshold=0.5, labels=("no", "yes"), candidate="unit", calibration=calibration)


@pytest.fixture(scope="session")
def table() -> Table:
    """The session's fitted table (preprocessing fitted on ROWS generated records)."""
    schema = Schema.model_validate(SCHEMA)
    train, y = generate_records(ROWS, seed=0)
    typed, problems = coerce_frame(pd.DataFrame.from_records(train), schema, with_target=False)
    assert not [p for p in problems if p.hard]
    preprocessor = build_preprocessor(schema)
    (X,) = fit_transform(preprocessor, typed)
    probe, _ = generate_records(120, seed=1)
    records = train[:60] + probe + edge_records(train[10]) + edge_records(probe[0])
    return Table(schema=schema, preprocessor=preprocessor, X=X, y=y, records=records)


@pytest.fixture(scope="session")
def make_records():
    """``generate_records``: more rows of the table's schema, for the tests that need many."""
    return generate_records

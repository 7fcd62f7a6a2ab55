"""The reference profile frozen at publish (``profile.json``): everything ``tabpipe monitor`` needs from the training data.

Per feature, quantile bins or top categories with their training shares and null rate; the score
distribution on the test split; the calibration map of the label-free estimate; when asked, the
no-shift distribution of the multivariate domain AUC (``multivariate.calibrate``).
Design notes: docs/monitoring.md#the-reference-profile
"""
from __future__ import annotations

import json
from pathlib import Path

import dill
import numpy as np
import pandas as pd

from tabpipe.drift.psi import categorical_counts, numeric_counts, quantile_edges, shares
from tabpipe.schema import Schema, positive_mask

FORMAT = 1
ISOTONIC_MIN = 100
SENSITIVE = "sensitive (schema.yaml): not profiled, so not monitored for drift"
SCORE_EDGES = tuple(round(0.1 * i, 1) for i in range(1, 10))


def numeric_entry(values: np.ndarray, bins: int) -> dict:
    """A numeric feature's profile: quantile bin ``edges``, the training ``shares`` of its bins + missing, rows, null rate."""
    edges = quantile_edges(values, bins)
    counts = numeric_counts(values, edges)
    return {"kind": "numeric", "edges": edges.tolist(), "shares": shares(counts).tolist(), "rows": int(counts.sum()),
            "null_rate": float(counts[-1] / counts.sum()) if counts.sum() else 0.0}


def categorical_entry(values: pd.Series, max_categories: int) -> dict:
    """A categorical feature's profile: its ``max_categories`` most frequent values, shares (+ other, missing), rows, null rate."""
    counts_by_value = values.dropna().astype(str).value_counts(sort=True)
    top = sorted(counts_by_value.index[:max_categories].tolist())
    counts = categorical_counts(values.astype(object).where(values.notna(), None), top)
    return {"kind": "categorical", "categories": top, "shares": shares(counts).tolist(), "rows": int(counts.sum()),
            "null_rate": float(counts[-1] / counts.sum()) if counts.sum() else 0.0}


def fit_calibration(proba: np.ndarray, y: np.ndarray, *, fitted_on: str) -> dict:
    """Monotone calibration map of ``proba`` to P(y = 1) (see the module docstring for the choice)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    p, y = np.asarray(proba, dtype=float), np.asarray(y, dtype=int)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    base = {"fitted_on": fitted_on, "rows": len(y), "positives": positives}
    if min(positives, negatives) < 2:
        return {"method": "identity", **base, "note": "fewer than 2 rows of a class: probabilities used as they are"}
    if min(positives, negatives) >= ISOTONIC_MIN:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {"method": "isotonic", **base, "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    z = np.log(np.clip(p, 1e-12, 1 - 1e-12) / np.clip(1 - p, 1e-12, 1)).reshape(-1, 1)
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(z, y)
    return {"method": "platt", **base, "a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0])}


def build_profile(train: pd.DataFrame, schema: Schema, test_proba: np.ndarray, test_y: np.ndarray, threshold: float,
                  *, bins: int = 10, max_categories: int = 50, multivariate: dict | None = None) -> dict:
    """The profile of a typed training split plus the model's test-split probabilities (JSON-ready).

    ``multivariate``: keyword arguments of ``multivariate.calibrate`` (``sample_rows``, ``resamplings``,
    ``seed``) to store the domain AUC's no-shift distribution under ``"multivariate"``; None: not stored."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    features, skipped = {}, {}
    for name in schema.features:
        kind = schema.columns[name].type
        if schema.columns[name].sensitive:
            skipped[name] = SENSITIVE
        elif kind in ("int", "float", "bool"):
            features[name] = numeric_entry(train[name].to_numpy(dtype=float), bins)
        elif kind == "category":
            features[name] = categorical_entry(train[name], max_categories)
        else:
            skipped[name] = f"type {kind} is not binned (a timestamp always moves forward)"
    score_counts = numeric_counts(np.asarray(test_proba, dtype=float), np.asarray(SCORE_EDGES))
    profile = {
        "format": FORMAT,
        "bins": bins,
        "training_rows": len(train),
        "features": features,
        "skipped": skipped,
        "scores": {"kind": "numeric", "edges": list(SCORE_EDGES), "shares": shares(score_counts).tolist(),
                   "rows": int(len(test_proba)), "positives": int(np.sum(test_y)), "threshold": float(threshold),
                   "source": "model probabilities on the held-out test split"},
        "calibration": fit_calibration(test_proba, test_y,
                                       fitted_on=f"held-out test split ({len(test_y)} rows, scored by the final model)"),
    }
    if multivariate is not None:
        from tabpipe.drift.multivariate import calibrate

        profile["multivariate"] = calibrate(train, features, **multivariate)
    return profile


def write_profile(path: Path, profile: dict) -> Path:
    """Write ``profile`` as JSON to ``path``; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(profile, indent=1))
    return path


def read_profile(path: Path) -> dict:
    """Parse a profile.json; ValueError naming the file if it is not one this code understands."""
    try:
        profile = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or profile.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tabpipe reference profile of format {FORMAT}")
    return profile


def test_predictions(test: pd.DataFrame, model) -> tuple[np.ndarray, np.ndarray]:
    """(y as 0/1, positive-class probability) of ``model`` on a typed test split (validation stage output)."""
    schema = model.schema
    y = positive_mask(test[schema.target.name], schema.target.positive).astype(np.int64)
    return y, model.predict_proba_typed(test[schema.features])


def write_profile_for_run(validation, model_path: Path, out_path: Path, rows, *, multivariate: dict | None = None) -> Path:
    """Write the profile of a training run (its typed splits, ``validation``: ValidationArtifact, read
    through the run's ``RowFiles`` ``rows``) and model; ``multivariate``: as ``build_profile`` takes it."""
    with open(model_path, "rb") as fh:
        model = dill.load(fh)  # nosec B301 -- the run's own model file, written by its trainer stage
    y, proba = test_predictions(rows.read_frame(validation.test_path), model)
    train = rows.read_frame(validation.train_path)
    return write_profile(out_path, build_profile(train, model.schema, proba, y, model.threshold,
                                               multivariate=multivariate))

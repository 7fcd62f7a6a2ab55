"""The shipped model: ONE fitted object = schema check + preprocessing + estimator + calibration + threshold.

It takes raw rows as described by the schema (a DataFrame, or a list of dicts) and returns the
original label values and the probability of the positive class. The same object is saved by the
trainer, stored in the registry, used by ``tabpipe predict`` and by the web service.

``score`` is the estimator's raw P(positive) (trained on resampled rows, ensembles' weighted means:
ranks well, not calibrated); ``predict_proba`` is ``calibrate(score)``, the calibration map fitted on
out-of-fold scores (``tabpipe.model.calibration``). A model without one (``calibration`` None, as
every model saved before calibration existed) answers its raw score as its probability.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.errors import DataError
from tabpipe.model.calibration import Calibration
from tabpipe.schema import Problem, Schema, coerce_frame, summarize


@dataclass
class TabularModel:
    """The shipped model: schema, fitted preprocessing and classifier, calibration, decision threshold (on the
    calibrated probability) and original labels."""
    schema: Schema
    preprocessor: Any            # fitted sklearn ColumnTransformer
    estimator: Any               # fitted classifier trained on y in {0, 1}
    threshold: float             # P(positive) >= threshold -> positive label
    labels: tuple[Any, Any]      # (negative label, positive label) as in the training data
    candidate: str = ""
    resampling: str = ""         # how the estimator's training rows were resampled (smotetomek | smote | none)
    feature_means: Any = None    # (preprocessed columns,) float64 mean of the training rows: the centre of explanations
    calibration: Calibration | None = None   # raw score -> probability; None: the score is the probability

    @property
    def features(self) -> list[str]:
        """The schema's feature columns, in order."""
        return self.schema.features

    def check(self, rows: pd.DataFrame | list[dict], *, categorical: bool = False) -> tuple[pd.DataFrame, list[Problem]]:
        """Typed feature frame and the schema problems of ``rows`` (the target, if present, is ignored);
        ``categorical``: see ``coerce_frame`` (typed rows to count, not to score)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
        return coerce_frame(frame, self.schema, with_target=False, categorical=categorical)

    def score_typed(self, typed: pd.DataFrame) -> np.ndarray:
        """(n,) raw scores (the estimator's uncalibrated P(positive)) of rows already typed by ``check``."""
        if len(typed) == 0:
            return np.empty(0)
        X = self.preprocessor.transform(typed)
        return self.estimator.predict_proba(X)[:, list(self.estimator.classes_).index(1)]

    def calibrate(self, score: np.ndarray) -> np.ndarray:
        """Calibrated P(positive) of raw scores: the one place every scoring path turns a score into a probability."""
        score = np.asarray(score, dtype=np.float64)
        return score if self.calibration is None else self.calibration(score)

    def predict_proba_typed(self, typed: pd.DataFrame) -> np.ndarray:
        """(n,) calibrated probabilities of the positive class for rows already typed by ``check``."""
        return self.calibrate(self.score_typed(typed))

    def predict_proba(self, rows: pd.DataFrame | list[dict]) -> np.ndarray:
        """(n,) probabilities of the positive class; DataError listing the hard problems if any row
        cannot be scored (broken expectations are not errors: those rows are scored as they are)."""
        typed, problems = self.check(rows)
        hard = [p for p in problems if p.hard]
        if hard:
            raise DataError("rows violate the schema:\n" + summarize(hard))
        return self.predict_proba_typed(typed)

    def use_all_cores(self) -> TabularModel:
        """Let the estimator predict on every core (e.g. a forest's trees in parallel threads).
        Changes speed only: results agree to floating-point summation order (~1e-15)."""
        if "n_jobs" in getattr(self.estimator, "get_params", dict)():
            self.estimator.set_params(n_jobs=-1)
        return self

    def labels_for(self, proba: np.ndarray) -> np.ndarray:
        """Original label values for probabilities: positive where ``proba >= threshold``."""
        return np.where(np.asarray(proba) >= self.threshold, self.labels[1], self.labels[0])

    def predict(self, rows: pd.DataFrame | list[dict]) -> np.ndarray:
        """Original labels of ``rows``: the positive label where P(positive) >= threshold."""
        return self.labels_for(self.predict_proba(rows))

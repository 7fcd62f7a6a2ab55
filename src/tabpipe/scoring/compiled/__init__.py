"""Fast scoring of a few JSON records, without DataFrames or scikit-learn's per-call overhead.

``RecordScorer`` is compiled once from a fitted ``TabularModel``: ``check`` (the schema's rules, as
``Problem``s), ``vector`` (the fitted preprocessing, ``features``), ``scores`` (the estimator compiled into one
formula, ``estimator``, else its own ``predict_proba``), ``proba`` (the scores through the model's calibration);
equal to ``TabularModel.predict_proba`` (tested).
Design notes: docs/serving.md#the-compiled-record-scorer
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import config_context

from tabpipe.model import TabularModel
from tabpipe.schema import Problem, RecordChecker
from tabpipe.scoring.compiled.errors import NotCompilable
from tabpipe.scoring.compiled.estimator import compile_estimator
from tabpipe.scoring.compiled.features import _compile_blocks

__all__ = ["NotCompilable", "RecordScorer", "compile_estimator"]


class RecordScorer:
    """Scores records (dicts) with a fitted TabularModel; see the module docstring."""

    def __init__(self, model: TabularModel):
        self.model = model
        self.features = model.schema.features
        self.checker = RecordChecker(model.schema)
        index = {f: i for i, f in enumerate(self.features)}
        try:
            self.blocks = _compile_blocks(model, index)
        except (NotCompilable, AttributeError):
            self.blocks = None
        self.fast_estimator = compile_estimator(model.estimator) if self.blocks is not None else None

    @property
    def compiled_features(self) -> bool:
        """True if the fitted preprocessing is compiled (``vector``); False: ``proba`` takes the model's own DataFrame path."""
        return self.blocks is not None

    @property
    def compiled(self) -> bool:
        """True if the estimator is compiled too (``proba`` leaves its ``predict_proba`` to rows the compiler refuses)."""
        return self.fast_estimator is not None

    def check(self, record: Any, row: int = 0) -> tuple[list, list[Problem]]:
        """Converted feature values (schema order) and the ``Problem``s found, each naming ``row``.

        A hard problem means the record cannot be scored; the others are warnings about a scorable record."""
        return self.checker(record, row)

    def vector(self, values: list) -> np.ndarray:
        """(n_features_out,) float64: the fitted preprocessing applied to one checked record."""
        out: list[float] = []
        for block in self.blocks:
            block.extend(values, out)
        return np.array(out)

    def matrix(self, rows: list[list]) -> np.ndarray:
        """(n, n_features_out) float64: the fitted preprocessing applied to checked records."""
        if self.blocks is None:
            frame = pd.DataFrame([dict(zip(self.features, v)) for v in rows], columns=self.features)
            return self.model.preprocessor.transform(self.model.check(frame)[0])
        return np.array([self.vector(v) for v in rows])

    def proba(self, rows: list[list]) -> np.ndarray:
        """(n,) calibrated P(positive) for checked records (``TabularModel.calibrate`` of their ``scores``)."""
        return self.model.calibrate(self.scores(rows))

    def scores(self, rows: list[list]) -> np.ndarray:
        """(n,) raw scores (the estimator's uncalibrated P(positive)) for checked records."""
        if self.blocks is None:
            frame = pd.DataFrame([dict(zip(self.features, v)) for v in rows], columns=self.features)
            return self.model.score_typed(self.model.check(frame)[0])
        vectors = [self.vector(v) for v in rows]
        if self.fast_estimator is None:
            return self._own_proba(vectors)
        out = np.empty(len(vectors))
        for i, x in enumerate(vectors):
            try:
                out[i] = self.fast_estimator(x)
            except NotCompilable:  # a row the compiled estimator leaves to the estimator's own path
                out[i] = self._own_proba([x])[0]
        return out

    def _own_proba(self, vectors: list[np.ndarray]) -> np.ndarray:
        with config_context(assume_finite=False, skip_parameter_validation=True):
            proba = self.model.estimator.predict_proba(np.vstack(vectors))
        return proba[:, list(self.model.estimator.classes_).index(1)]

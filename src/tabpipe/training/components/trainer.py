"""ModelTrainer: pick a model by stratified k-fold CV on the training split, calibrate it, tune its threshold, fit it.

The search (``tabpipe.training.search``: folds, rounds of successive halving, ensemble selection) runs
within ``training.time_budget_s``; the final refit on every training row is reported apart. The
calibration map (``training.calibration``: Platt scaling of the raw score) is fitted on the chosen
model's out-of-fold scores, and the decision threshold is chosen on the calibrated out-of-fold
probabilities: best F1, or the least expected cost with ``evaluation.costs`` (never the test split).
The result is one ``TabularModel``: preprocessing + estimator + calibration + threshold.
"""
from __future__ import annotations

import json
import logging
import time

import dill
import numpy as np
import pandas as pd

from tabpipe.errors import DataError, ModelQualityError
from tabpipe.model import TabularModel
from tabpipe.model.calibration import SIGNIFICANT, Calibration, fit_platt, held_out_gain
from tabpipe.model.estimators import WeightedMean
from tabpipe.schema import positive_mask
from tabpipe.training.components.transformation import split_xy
from tabpipe.training.metrics import calibration_metrics, decision_threshold
from tabpipe.training.resampling import resample
from tabpipe.training.search.ensemble import describe
from tabpipe.training.search.halving import ModelSearch
from tabpipe.training.search.progress import SearchProgress
from tabpipe.training.search.schedule import Evaluation, best_of
from tabpipe.training.search.space import make_estimator
from tabpipe.training.specs import TrainerArtifact, TrainerConfig, TransformationArtifact, ValidationArtifact

log = logging.getLogger(__name__)


class ModelTrainer:
    """The trainer stage: search, refit the chosen configuration(s), write ``model.pkl`` and ``cv_results.json``."""

    def __init__(self, config: TrainerConfig, validation: ValidationArtifact, transformation: TransformationArtifact,
                 progress: SearchProgress | None = None):
        self.config, self.validation, self.transformation = config, validation, transformation
        self.progress = progress

    def run(self) -> TrainerArtifact:
        """Run the stage; the budget covers everything before the final refit."""
        cfg = self.config
        start = time.monotonic()
        search = ModelSearch(cfg, deadline=start + cfg.time_budget_s, progress=self.progress)
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        train = cfg.rows.read_frame(self.validation.train_path)
        X, y = split_xy(train, cfg.schema)
        if min(np.bincount(y, minlength=2)) < cfg.cv_folds:
            raise DataError(f"the training split has {y.sum()} positive and {len(y) - y.sum()} negative rows; "
                            f"training.cv_folds={cfg.cv_folds} needs at least that many of each")
        outcome = search.run(X, y)
        target = train[cfg.schema.target.name]
        del train, X   # the refit works on the transformation stage's arrays
        evaluations = outcome.evaluations
        (cfg.out_dir / "cv_results.json").write_text(json.dumps([e.record() for e in evaluations], indent=2, default=str))
        best = best_of(evaluations)
        members, cv_score, oof = search.final_members(outcome, best)
        search_seconds = time.monotonic() - start
        log.info("search: %.1fs of training.time_budget_s=%.0f (folds %.1fs); best: %s %s=%.4f on %d rows per fold; "
                 "final model: %s %s=%.4f", search_seconds, cfg.time_budget_s, outcome.prep_seconds,
                 best.trial.candidate.name, cfg.metric, best.score, best.rows, describe(members), cfg.metric, cv_score)
        if cv_score < cfg.min_cv_score:
            raise ModelQualityError(f"best candidate {describe(members)} scored {cfg.metric}={cv_score:.4f} "
                                    f"in cross-validation, below training.min_cv_score={cfg.min_cv_score}")
        calibration, calibration_record = calibrate_out_of_fold(outcome.y, oof, cfg.calibration)
        threshold = decision_threshold(outcome.y, oof if calibration is None else calibration(oof), cfg.costs)
        t0 = time.monotonic()
        model = self._fit_final(members, threshold, target, calibration)
        refit_seconds = time.monotonic() - t0
        log.info("final refit of %s on %d training rows: %.1fs", model.candidate, len(y), refit_seconds)
        with open(cfg.out_dir / "model.pkl", "wb") as fh:
            dill.dump(model, fh)
        stopped = {}
        for e in evaluations:
            stopped[e.stopped] = stopped.get(e.stopped, 0) + 1
        return TrainerArtifact(
            model_path=cfg.out_dir / "model.pkl", cv_results_path=cfg.out_dir / "cv_results.json",
            best_candidate=model.candidate, best_params=_params_of(members), best_resampling=model.resampling,
            cv_score=cv_score, threshold=threshold,
            configs_tried=sum(e.score is not None for e in evaluations), configs_total=len(evaluations),
            stopped=stopped, search_rows=outcome.search_rows, search_seconds=round(search_seconds, 2),
            prep_seconds=round(outcome.prep_seconds, 2), refit_seconds=round(refit_seconds, 2),
            calibration=calibration_record,
        )

    def _fit_final(self, members: list[tuple[Evaluation, float]], threshold: float, target: pd.Series,
                   calibration: Calibration | None) -> TabularModel:
        """Fit the chosen configuration(s) on the whole (resampled) training split, behind the fitted
        preprocessor; several members become one ``WeightedMean``."""
        cfg, art = self.config, self.transformation
        X, y = cfg.rows.read_array(art.x_train_path), cfg.rows.read_array(art.y_train_path)
        means = X.mean(axis=0, dtype=np.float64)   # the training rows as they are, before resampling
        kinds = dict.fromkeys(e.trial.resampling for e, _ in members)
        resampled = {kind: resample(X, y, kind, cfg.seed) for kind in kinds}
        del X, y   # the fits need only the resampled rows (the same arrays when nothing is resampled)
        fitted = [make_estimator(e.trial, cfg.seed).fit(*resampled[e.trial.resampling]) for e, _ in members]
        estimator = fitted[0] if len(fitted) == 1 else WeightedMean.of_fitted(fitted, [w for _, w in members])
        with open(art.preprocessor_path, "rb") as fh:
            # bandit B301: written by this run's transformation stage
            preprocessor = dill.load(fh)  # nosec B301
        return TabularModel(schema=cfg.schema, preprocessor=preprocessor, estimator=estimator, threshold=threshold,
                            labels=original_labels(target, cfg.schema.target.positive),
                            candidate=members[0][0].trial.candidate.name if len(members) == 1 else "ensemble",
                            resampling="+".join(sorted(resampled)), feature_means=means,
                            calibration=calibration)


def calibrate_out_of_fold(y: np.ndarray, oof: np.ndarray, method: str) -> tuple[Calibration | None, dict | None]:
    """The calibration map fitted on out-of-fold scores ``oof`` of training rows with labels ``y`` (``method``
    ``platt``; ``none``: no map), and its record: the map, and the out-of-fold ECE/Brier/log-loss before and
    after it (measured on the rows it was fitted on: a check that it fitted, not a test score). No map
    either when it does not lower the log-loss of out-of-fold rows it was not fitted on significantly
    (by more than ``SIGNIFICANT`` standard errors: ``held_out_gain``)."""
    if method == "none":
        return None, None
    calibration = fit_platt(oof, y)
    raw = calibration_metrics(y, oof)
    if calibration is None:
        return None, {"method": "none", "note": "the out-of-fold scores could not be calibrated; raw scores served",
                      "out_of_fold_raw": raw}
    gain, error = held_out_gain(oof, y)
    if gain <= SIGNIFICANT * error:
        log.info("calibration not applied: Platt scaling lowers the held-out log-loss of the out-of-fold scores by "
                 "%.5f ± %.5f per row, not significantly; the raw score is served as the probability", gain, error)
        return None, {"method": "none", "note": "already calibrated: Platt scaling did not lower the held-out "
                      f"log-loss of the out-of-fold scores by more than {SIGNIFICANT:g} standard errors; raw scores "
                      "served", "held_out_gain": gain, "held_out_gain_se": error, "out_of_fold_raw": raw}
    calibrated = calibration_metrics(y, calibration(oof))
    log.info("calibration (%s on %d out-of-fold rows): a=%.4f b=%.4f; out-of-fold ECE %.4f -> %.4f, Brier %.4f -> %.4f",
             calibration.method, len(y), calibration.a, calibration.b, raw["ece"], calibrated["ece"], raw["brier"],
             calibrated["brier"])
    return calibration, {**calibration.record(), "held_out_gain": gain, "held_out_gain_se": error, "out_of_fold_raw": raw,
                         "out_of_fold_calibrated": calibrated}


def original_labels(target: pd.Series, positive) -> tuple:
    """(negative, positive) label values exactly as they appear in the data."""
    values = pd.Series(target.dropna().unique())
    mask = positive_mask(values, positive)
    native = [v.item() if hasattr(v, "item") else v for v in (values[~mask].iloc[0], values[mask].iloc[0])]
    return tuple(native)


def _params_of(members: list[tuple[Evaluation, float]]) -> dict:
    """The chosen configuration's parameters, or an ensemble's members (candidate, params, resampling, weight, score)."""
    if len(members) == 1:
        return members[0][0].trial.params
    return {"members": [{"candidate": e.trial.candidate.name, "params": e.trial.params, "resampling": e.trial.resampling,
                         "weight": round(w, 4), "score": e.score} for e, w in members]}

"""ModelEvaluation: score the new and the production model on the same untouched test split, and bless or not.

Both models' metrics include their calibration on the test rows (ECE with 15 equal-frequency bins, Brier,
log-loss: ``training.metrics.holdout_metrics``); a challenger whose ECE exceeds production's by more than
``evaluation.max_ece_increase`` is refused even when its ranking metric is better.

Design notes: docs/training.md#the-gate-evaluation
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import dill

from tabpipe.training.components.transformation import split_xy
from tabpipe.training.specs import (
    EvaluationArtifact,
    EvaluationConfig,
    TrainerArtifact,
    ValidationArtifact,
)
from tabpipe.errors import TabpipeError
from tabpipe.training.holdout import unseen_by_production
from tabpipe.training.importance import permutation_importance
from tabpipe.training.metrics import ECE_BINS, chance_p_value, holdout_metrics
from tabpipe.training.segments import refusal_reason, segment_checks

if TYPE_CHECKING:
    from tabpipe.config import Metric

log = logging.getLogger(__name__)


def gate(metric: Metric, new: dict, production: dict | None, min_score: float, min_improvement: float,
         production_note: str = "", new_compared: dict | None = None,
         max_ece_increase: float | None = None, chance: tuple[float, float] | None = None) -> tuple[bool, str]:
    """The evaluation gate: (accepted, reason) from the test metrics of the new and production models.

    ``new_compared``: the new model's metrics on the rows production is scored on, when those are not
    the whole test split (production had been trained on some of them); ``new`` otherwise.
    ``max_ece_increase``: refuse when the new model's ``ece`` exceeds production's by more (None: not checked).
    ``chance``: (p, max_chance_p) — refuse when random pairings of the scores with the labels reach the new
    model's score that often (``metrics.chance_p_value``; None: not checked)."""
    score = new[metric]
    if score < min_score:
        return False, f"new model {metric}={score:.4f} is below evaluation.min_score={min_score}"
    if chance is not None and chance[0] >= chance[1]:
        return False, (f"new model {metric}={score:.4f} is no better than chance on the {new['rows']} test rows: "
                       f"random rankings of them score as high with p={chance[0]:.3f} >= "
                       f"evaluation.max_chance_p={chance[1]}")
    if production is None:
        return True, f"first model{production_note}: {metric}={score:.4f} reaches evaluation.min_score={min_score}"
    compared = new_compared if new_compared is not None else new
    gain = compared[metric] - production[metric]
    on = (f" on the {compared['rows']} test rows production was not trained on"
          if new_compared is not None else "")
    versus = f"new {metric}={compared[metric]:.4f} vs production {production[metric]:.4f}{on}: {gain:+.4f}"
    if gain <= min_improvement:
        return False, f"{versus} is not > min_improvement={min_improvement}"
    if max_ece_increase is not None:
        worse = compared["ece"] - production["ece"]
        calibration = f"ECE new {compared['ece']:.4f} vs production {production['ece']:.4f}: {worse:+.4f}"
        if worse > max_ece_increase:
            return False, f"{versus}, but {calibration} is > evaluation.max_ece_increase={max_ece_increase}"
        return True, f"{versus} > min_improvement={min_improvement}; {calibration} <= max_ece_increase={max_ece_increase}"
    return True, f"{versus} > min_improvement={min_improvement}"


class ModelEvaluation:
    """The gate: the new model and production scored on the same untouched test rows."""
    def __init__(self, config: EvaluationConfig, validation: ValidationArtifact, trainer: TrainerArtifact, registry):
        self.config, self.validation, self.trainer, self.registry = config, validation, trainer, registry

    def run(self) -> EvaluationArtifact:
        """Score both models, decide, and write blessing.json."""
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.trainer.model_path, "rb") as fh:
            model = dill.load(fh)  # nosec B301: written moments ago by this run's own trainer, in its own folder
        test = cfg.rows.read_frame(self.validation.test_path)
        X, y = split_xy(test, model.schema)
        proba = model.predict_proba_typed(X)
        new = holdout_metrics(y, proba, model.threshold)
        importance = permutation_importance(model, X, y, cfg.metric)   # run.json: stages.evaluation.artifact
        prod_version, prod, note, new_compared, overlap = self.registry.production_version(), None, "", None, None
        seg_args = {"compared": None, "production_proba": None, "production_threshold": None}
        all_y, all_test = y, test
        if prod_version is not None:
            prod_model, _ = self.registry.load_model(prod_version)
            unseen, overlap = unseen_by_production(test, self.registry, prod_version)
            log.info("comparison rows: %s", overlap)
            if unseen is not None and not unseen.all():
                if len(set(y[unseen].tolist())) < 2:
                    blessing_reason = (f"cannot compare with production {prod_version}: {overlap}, and the "
                                       f"{int(unseen.sum())} rows left do not hold both classes; production kept")
                    return self._write(cfg, False, blessing_reason, new, prod_version, None, None, overlap,
                                       importance=importance)
                new_compared = holdout_metrics(y[unseen], proba[unseen], model.threshold)
                test, y = test[unseen], y[unseen]
                seg_args["compared"] = unseen
            try:
                prod_proba = prod_model.predict_proba(test)
                prod = holdout_metrics(y, prod_proba, prod_model.threshold)
                seg_args.update(production_proba=prod_proba, production_threshold=float(prod_model.threshold))
            except TabpipeError as exc:
                note = f" (production {prod_version} cannot score the current data: {exc})"
                log.warning("production model %s cannot score the test split: %s", prod_version, exc)
        chance = None
        if cfg.max_chance_p is not None:
            chance = (chance_p_value(cfg.metric, all_y, proba, float(model.threshold), new[cfg.metric], seed=cfg.seed),
                      cfg.max_chance_p)
        accepted, reason = gate(cfg.metric, new, prod, cfg.min_score, cfg.min_improvement, note, new_compared,
                                cfg.max_ece_increase, chance)
        checks = segment_checks(cfg.segments, model.schema, metric=cfg.metric, seed=cfg.seed, test=all_test,
                                train=cfg.rows.read_frame(self.validation.train_path), y=all_y, proba=proba,
                                threshold=float(model.threshold), **seg_args)
        if accepted and checks["segments"]["refused"]:   # docs/model_card.md#segments-and-the-gate
            accepted, reason = False, f"{reason}, but {refusal_reason(checks['segments'])}"
        return self._write(cfg, accepted, reason, new, prod_version, prod, new_compared, overlap, checks,
                           importance=importance, chance_p=None if chance is None else chance[0])

    @staticmethod
    def _write(cfg: EvaluationConfig, accepted: bool, reason: str, new: dict, prod_version: str | None,
               prod: dict | None, new_compared: dict | None, overlap: str | None,
               checks: dict | None = None, *, importance: dict | None = None,
               chance_p: float | None = None) -> EvaluationArtifact:
        log.info("%s: %s", "ACCEPTED" if accepted else "REJECTED", reason)
        blessing = {"accepted": accepted, "reason": reason, "metric": cfg.metric, "min_score": cfg.min_score,
                    "min_improvement": cfg.min_improvement, "max_ece_increase": cfg.max_ece_increase,
                    "max_chance_p": cfg.max_chance_p, "chance_p": chance_p,
                    "ece_bins": f"{ECE_BINS} equal-frequency", "new": new, "production_version": prod_version,
                    "production": prod, "new_on_compared_rows": new_compared, "compared_rows": overlap,
                    **(checks or {"segments": None, "worst_slices": None}), "importance": importance}
        path = cfg.out_dir / "blessing.json"
        path.write_text(json.dumps(blessing, indent=2))
        return EvaluationArtifact(blessing_path=path, accepted=accepted, reason=reason, metrics=new,
                                  production_version=prod_version, production_metrics=prod, importance=importance)

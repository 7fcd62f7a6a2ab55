"""ModelTrainer: pick a model by stratified k-fold CV on the training split, tune its threshold, fit it.

Candidates come from ``model.yaml`` (class path, fixed params, search space). Each CV fold fits its
own preprocessing and resampling on the fold's training rows only; the prepared folds are built
once and shared by every configuration tried, so the search pays for SMOTETomek k times, not k x n.
Configurations are tried round-robin across candidates until the time budget runs out. The decision
threshold maximises F1 on the out-of-fold predictions of the chosen configuration (never the test
split). The result is one ``TabularModel``: preprocessing + estimator + threshold.
The budget covers fold preparation and the search; a configuration is skipped when its candidate's
previous one would not fit in what is left; the final refit comes after the budget.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass

import dill
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import ParameterSampler, StratifiedKFold

from tabpipe.components.transformation import split_xy
from tabpipe.config import Candidate, import_class, parse_space
from tabpipe.entities import (
    TrainerArtifact,
    TrainerConfig,
    TransformationArtifact,
    ValidationArtifact,
)
from tabpipe.errors import DataError, ModelQualityError
from tabpipe.metrics import best_f1_threshold, ranking_score
from tabpipe.model import TabularModel
from tabpipe.preprocessing import build_preprocessor, fit_transform, resample
from tabpipe.schema import positive_mask

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    params: dict


def trials(candidates: tuple[Candidate, ...], seed: int) -> list[Trial]:
    """Every configuration to try, interleaved across candidates (round-robin) so a budget cut is fair."""
    per_candidate = []
    for cand in candidates:
        space = {k: parse_space(v) for k, v in cand.search.items()}
        sampled = list(ParameterSampler(space, n_iter=cand.n_iter, random_state=seed)) if space else [{}]
        per_candidate.append([Trial(cand, {**cand.params, **_native(s)}) for s in sampled])
    return [t for group in itertools.zip_longest(*per_candidate) for t in group if t is not None]


def _native(params: dict) -> dict:
    """numpy scalars from the sampler as plain Python values (readable logs, clean JSON)."""
    return {k: (round(v.item(), 6) if isinstance(v.item(), float) else v.item()) if hasattr(v, "item") else v
            for k, v in params.items()}


def make_estimator(trial: Trial, seed: int):
    """Unfitted estimator; ``random_state`` is set from the run seed unless the config fixes it."""
    est = import_class(trial.candidate.class_path)()
    params = dict(trial.params)
    if "random_state" in est.get_params() and "random_state" not in params:
        params["random_state"] = seed
    return est.set_params(**params)


@dataclass
class Fold:
    X_fit: np.ndarray      # fold-train rows, preprocessed then resampled
    y_fit: np.ndarray
    X_val: np.ndarray      # fold-validation rows, preprocessed only
    val_index: np.ndarray


def _prepare_fold(X: pd.DataFrame, y: np.ndarray, tr: np.ndarray, va: np.ndarray, cfg: TrainerConfig) -> Fold:
    pre = build_preprocessor(cfg.schema, cfg.max_categories)
    X_tr, X_va = fit_transform(pre, X.iloc[tr], X.iloc[va])
    X_fit, y_fit = resample(X_tr, y[tr], cfg.resampling, cfg.seed)
    return Fold(X_fit, y_fit, X_va, va)


def _fit_predict(trial: Trial, fold: Fold, seed: int) -> np.ndarray:
    est = make_estimator(trial, seed).fit(fold.X_fit, fold.y_fit)
    return est.predict_proba(fold.X_val)[:, list(est.classes_).index(1)]


def original_labels(target: pd.Series, positive) -> tuple:
    """(negative, positive) label values exactly as they appear in the data."""
    values = pd.Series(target.dropna().unique())
    mask = positive_mask(values, positive)
    native = [v.item() if hasattr(v, "item") else v for v in (values[~mask].iloc[0], values[mask].iloc[0])]
    return tuple(native)


class ModelTrainer:
    def __init__(self, config: TrainerConfig, validation: ValidationArtifact, transformation: TransformationArtifact):
        self.config, self.validation, self.transformation = config, validation, transformation

    def run(self) -> TrainerArtifact:
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        train = pd.read_parquet(self.validation.train_path)
        X, y = split_xy(train, cfg.schema)
        if min(np.bincount(y, minlength=2)) < cfg.cv_folds:
            raise DataError(f"the training split has {y.sum()} positive and {len(y) - y.sum()} negative rows; "
                            f"training.cv_folds={cfg.cv_folds} needs at least that many of each")
        if cfg.resampling == "smotetomek" and len(X) > 50_000:
            log.warning("SMOTETomek on %d training rows: its Tomek-link step compares every row with every other, "
                        "so preparing the folds can take long; transformation.resampling: smote grows linearly", len(X))
        results, best, oof = self._search(X, y)
        (cfg.out_dir / "cv_results.json").write_text(json.dumps(results, indent=2, default=str))
        log.info("best: %s %s=%.4f", best["candidate"], cfg.metric, best["score"])
        if best["score"] < cfg.min_cv_score:
            raise ModelQualityError(f"best candidate {best['candidate']} scored {cfg.metric}={best['score']:.4f} "
                                    f"in cross-validation, below training.min_cv_score={cfg.min_cv_score}")
        threshold, _ = best_f1_threshold(y, oof)
        model = self._fit_final(best["trial"], threshold, train[cfg.schema.target.name])
        with open(cfg.out_dir / "model.pkl", "wb") as fh:
            dill.dump(model, fh)
        return TrainerArtifact(
            model_path=cfg.out_dir / "model.pkl", cv_results_path=cfg.out_dir / "cv_results.json",
            best_candidate=best["candidate"], best_params=best["params"], cv_score=best["score"],
            threshold=threshold, configs_tried=len(results),
        )

    def _search(self, X: pd.DataFrame, y: np.ndarray) -> tuple[list[dict], dict, np.ndarray]:
        cfg = self.config
        start = time.perf_counter()
        splitter = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        parallel = Parallel(n_jobs=cfg.n_jobs, max_nbytes=None)  # no memmaps: avoids loky resource-tracker errors
        log.info("preparing %d folds: preprocessing + %s on ~%d training rows each", cfg.cv_folds, cfg.resampling,
                 len(y) * (cfg.cv_folds - 1) // cfg.cv_folds)
        folds = parallel(delayed(_prepare_fold)(X, y, tr, va, cfg) for tr, va in splitter.split(X, y))
        log.info("prepared %d folds (preprocess + %s) in %.1fs", len(folds), cfg.resampling, time.perf_counter() - start)
        todo = trials(cfg.candidates, cfg.seed)
        results, best, best_oof = [], None, None
        last_seconds: dict[str, float] = {}  # per candidate: what its previous configuration took
        for i, trial in enumerate(todo, 1):
            elapsed = time.perf_counter() - start
            if results and elapsed + last_seconds.get(trial.candidate.name, 0.0) > cfg.time_budget_s:
                log.info("[%d/%d] %s skipped: would exceed training.time_budget_s=%.0f", i, len(todo),
                         trial.candidate.name, cfg.time_budget_s)
                continue
            t0 = time.perf_counter()
            probas = parallel(delayed(_fit_predict)(trial, fold, cfg.seed) for fold in folds)
            oof = np.empty(len(y))
            for fold, proba in zip(folds, probas):
                oof[fold.val_index] = proba
            scores = [ranking_score(cfg.metric, y[f.val_index], p) for f, p in zip(folds, probas)]
            row = {"candidate": trial.candidate.name, "params": trial.params, "score": float(np.mean(scores)),
                   "score_std": float(np.std(scores)), "fold_scores": scores, "seconds": round(time.perf_counter() - t0, 2)}
            results.append(row)
            last_seconds[trial.candidate.name] = row["seconds"]
            log.info("[%d/%d] %s %s %s=%.4f ± %.4f (%.1fs)", i, len(todo), trial.candidate.name, trial.params,
                     cfg.metric, row["score"], row["score_std"], row["seconds"])
            if best is None or row["score"] > best["score"]:
                best, best_oof = {**row, "trial": trial}, oof
        return results, best, best_oof

    def _fit_final(self, trial: Trial, threshold: float, target: pd.Series) -> TabularModel:
        """Fit the chosen estimator on the whole (resampled) training split, behind the fitted preprocessor."""
        cfg, art = self.config, self.transformation
        X, y = np.load(art.x_train_path), np.load(art.y_train_path)
        X_fit, y_fit = resample(X, y, cfg.resampling, cfg.seed)
        estimator = make_estimator(trial, cfg.seed).fit(X_fit, y_fit)
        with open(art.preprocessor_path, "rb") as fh:
            # bandit B301: written by this run's transformation stage
            preprocessor = dill.load(fh)  # nosec B301
        return TabularModel(schema=cfg.schema, preprocessor=preprocessor, estimator=estimator, threshold=threshold,
                            labels=original_labels(target, cfg.schema.target.positive), candidate=trial.candidate.name)

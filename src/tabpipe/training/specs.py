"""What each component takes (stage specs) and emits (artifact entities).

All are frozen dataclasses: a component cannot change its inputs, and an artifact, once emitted,
is a fact about the run. Paths are absolute. A stage spec declares no setting of its own: each is
built by ``from_settings`` from the validated YAML (``tabpipe.config.Settings``), where every value
and its default is declared once, plus what belongs to this run (its folder ``out_dir``, ``rows``).
Row files (splits, arrays) are written and read through the run's ``RowFiles`` (``rows``), which
keeps clear sensitive values out of the run folder.
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabpipe.config import (
    CalibrationMethod,
    Candidate,
    DriftSection,
    ExecutorSection,
    IntegritySection,
    InvalidRows,
    Metric,
    Resampling,
    SegmentsSection,
    Settings,
)
from tabpipe.training.rowfiles import RowFiles
from tabpipe.schema import Schema
from tabpipe.sources import SourceConfig

# ------------------------------------------------------------------ stage specs


@dataclass(frozen=True, kw_only=True)
class IngestionConfig:
    """Where the rows come from and how they are split."""

    source: SourceConfig
    base_dir: Path
    environ: Mapping[str, str] = field(repr=False, compare=False)   # where the source's URL is looked up
    target: str
    test_size: float
    seed: int
    out_dir: Path
    uploaded_rows: Callable[[], Any] | None   # reads rows uploaded with POST /data (None: not used)
    rows: RowFiles                            # where row files are written / read back

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles, environ: Mapping[str, str],
                      uploaded_rows: Callable[[], Any]) -> IngestionConfig:
        """The ingestion of ``settings``; ``uploaded_rows`` is used when the config includes uploaded rows."""
        p = settings.pipeline
        return cls(source=p.source, base_dir=settings.base_dir, environ=environ, target=settings.schema_.target.name,
                   test_size=p.split.test_size, seed=p.run.seed, out_dir=out_dir,
                   uploaded_rows=uploaded_rows if p.includes_uploaded_rows else None, rows=rows)


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """The schema the splits are checked against, the integrity checks and the drift check."""

    schema: Schema
    on_invalid_rows: InvalidRows
    integrity: IntegritySection
    drift: DriftSection
    seed: int
    out_dir: Path
    rows: RowFiles

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles) -> ValidationConfig:
        """The validation of ``settings``."""
        p = settings.pipeline
        return cls(schema=settings.schema_, on_invalid_rows=p.validation.on_invalid_rows,
                   integrity=p.validation.integrity, drift=p.validation.drift,
                   seed=p.run.seed, out_dir=out_dir, rows=rows)


@dataclass(frozen=True, kw_only=True)
class TransformationConfig:
    """The schema-built preprocessing."""

    schema: Schema
    max_categories: int
    out_dir: Path
    rows: RowFiles

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles) -> TransformationConfig:
        """The transformation of ``settings``."""
        return cls(schema=settings.schema_, max_categories=settings.pipeline.transformation.max_categories,
                   out_dir=out_dir, rows=rows)


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """The model search: candidates, folds, metric, budget and where the fits run."""

    schema: Schema
    candidates: tuple[Candidate, ...]
    cv_folds: int
    metric: Metric
    time_budget_s: float
    n_jobs: int
    min_cv_score: float
    resampling: Resampling        # pipeline default; a candidate may set its own
    max_categories: int
    seed: int
    out_dir: Path
    executor: ExecutorSection     # local worker processes, or a Dask cluster
    rows: RowFiles
    search_rounds: int            # rounds of new configurations while the budget allows (tabpipe.training.search.schedule)
    ensemble_size: int            # greedy picks of configurations for the final model; 1 = the best alone
    calibration: CalibrationMethod = "platt"   # the map fitted on the out-of-fold scores (tabpipe.model.calibration)
    costs: tuple[float, float] | None = None   # (false positive, false negative): the threshold's expected cost

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles) -> TrainerConfig:
        """The model search of ``settings``."""
        p, training = settings.pipeline, settings.pipeline.training
        return cls(schema=settings.schema_, candidates=tuple(settings.models.candidates), cv_folds=training.cv_folds,
                   metric=training.metric, time_budget_s=training.time_budget_s, n_jobs=training.n_jobs,
                   min_cv_score=training.min_cv_score, resampling=p.transformation.resampling,
                   max_categories=p.transformation.max_categories, seed=p.run.seed, out_dir=out_dir,
                   executor=training.executor, rows=rows, search_rounds=training.search_rounds,
                   ensemble_size=training.ensemble_size, calibration=training.calibration,
                   costs=None if p.evaluation.costs is None
                   else (p.evaluation.costs.false_positive, p.evaluation.costs.false_negative))


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """The gate: the metric compared and the scores a new model must reach."""

    metric: Metric
    min_score: float
    min_improvement: float
    out_dir: Path
    rows: RowFiles
    segments: SegmentsSection = SegmentsSection()   # per-segment comparison and worst-slice search
    seed: int = 0                                   # of the bootstrap resamples
    max_ece_increase: float | None = None   # refuse a challenger whose test ECE exceeds production's by more
    max_chance_p: float | None = None       # refuse a model a random ranking of its test rows matches this often

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles) -> EvaluationConfig:
        """The evaluation of ``settings``."""
        evaluation = settings.pipeline.evaluation
        return cls(metric=evaluation.metric, min_score=evaluation.min_score,
                   min_improvement=evaluation.min_improvement, out_dir=out_dir, rows=rows,
                   segments=settings.pipeline.segments, seed=settings.pipeline.run.seed,
                   max_ece_increase=evaluation.max_ece_increase, max_chance_p=evaluation.max_chance_p)


@dataclass(frozen=True, kw_only=True)
class PusherConfig:
    """What a published version carries besides the model: its reference sample and metadata."""

    schema: Schema
    reference_rows: int
    seed: int
    run_id: str
    extra_metadata: Mapping[str, Any]
    out_dir: Path
    rows: RowFiles
    multivariate: Mapping[str, Any] | None = None   # calibration of the domain AUC stored in profile.json (None: none)
    card_context: Mapping[str, Any] = field(default_factory=dict)   # what the model card takes from the config

    @classmethod
    def from_settings(cls, settings: Settings, *, out_dir: Path, rows: RowFiles, run_id: str,
                      ingestion: IngestionArtifact, package_versions: Mapping[str, str]) -> PusherConfig:
        """The publication of run ``run_id``; its metadata names the data ``ingestion`` read."""
        p = settings.pipeline
        metadata = {"data_fingerprint": ingestion.fingerprint, "rows": ingestion.n_rows,
                    **({"sources": [dict(part) for part in ingestion.sources]} if ingestion.sources else {}),
                    "schema": settings.schema_.model_dump(mode="json"), "package_versions": dict(package_versions)}
        mv = p.monitoring.multivariate
        calibration = ({"sample_rows": mv.sample_rows, "resamplings": mv.null_resamplings, "seed": p.run.seed}
                       if mv.enabled else None)
        from tabpipe.training.card import describe_source, sensitive_handling

        card = {"model_card": p.model_card.model_dump(), "source": describe_source(p.source.model_dump(mode="json")),
                "sensitive": sensitive_handling(settings.schema_, p.monitoring.sensitive, p.monitoring.hash_key_env)}
        return cls(schema=settings.schema_, reference_rows=p.validation.drift.reference_rows, seed=p.run.seed,
                   run_id=run_id, extra_metadata=metadata, out_dir=out_dir, rows=rows, multivariate=calibration,
                   card_context=card)


# ------------------------------------------------------------------ artifact entities

@dataclass(frozen=True)
class IngestionArtifact:
    """What ingestion wrote: the raw, train and test rows and the data's fingerprint."""
    raw_path: Path
    train_path: Path
    test_path: Path
    n_rows: int
    n_train: int
    n_test: int
    fingerprint: str          # sha256 of the data's content (column names, dtypes, values)
    uploaded_rows: int = 0    # rows uploaded with POST /data appended after the source's rows
    uploaded_through_id: int | None = None   # ...every uploaded row with a store id up to this one
    sources: tuple = ()       # a join source's parts: {name, source, rows, columns, matched_rows, fingerprint}


@dataclass(frozen=True)
class ValidationArtifact:
    """What validation kept: typed rows, dropped and warned rows, repeated rows, the drift verdict."""
    report_path: Path
    train_path: Path          # typed, schema-checked rows (features + target)
    test_path: Path
    n_train: int
    n_test: int
    rows_dropped: int
    drift_status: str         # "no_reference" | "disabled" | "no_drift" | "drift"
    drift_share: float | None
    drift_html: Path | None
    drift_json: Path | None
    rows_with_warnings: int = 0   # rows kept although they break an expectation (range, category, null)
    warning_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # {column: {rule: rows}}
    integrity_counts: Mapping[str, int] = field(default_factory=dict)  # repeated rows, rows moved across the split


@dataclass(frozen=True)
class TransformationArtifact:
    """The fitted preprocessor and the transformed arrays (training rows not resampled)."""
    preprocessor_path: Path   # dill: ColumnTransformer fitted on the training split only
    x_train_path: Path        # .npy, (n_train, n_features) float32, not resampled
    y_train_path: Path        # .npy, (n_train,) int 0/1, 1 = positive class
    x_test_path: Path
    y_test_path: Path
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class TrainerArtifact:
    """The chosen model, its CV score and threshold, and how the search spent its budget."""
    model_path: Path          # dill: tabpipe.model.TabularModel (preprocessing + estimator + threshold)
    cv_results_path: Path
    best_candidate: str       # a candidate's name, or "ensemble" (tabpipe.training.search.ensemble: a weighted mean of configurations)
    best_params: Mapping[str, Any]   # an ensemble: {"members": [{candidate, params, resampling, weight, score}, ...]}
    best_resampling: str      # smotetomek | smote | none: the chosen candidate's resampling, used by the refit
                              # (an ensemble: its members' kinds joined with "+")
    cv_score: float
    threshold: float          # on the calibrated probability: best F1, or least expected cost (evaluation.costs)
    configs_tried: int        # configurations with a CV score
    configs_total: int
    stopped: Mapping[str, int]  # configurations per stop reason: finished, pruned, out_of_budget, failed
    search_rows: int          # training rows the search used (all of them, or a stratified sample)
    search_seconds: float     # everything the budget covers: probe, fold preparation, search
    prep_seconds: float       # of which preparing the folds
    refit_seconds: float      # the final refit on every training row, after the budget
    calibration: Mapping[str, Any] | None = None   # the map (method, a, b, rows) and the out-of-fold ECE/Brier
                                                   # before and after it; None: not calibrated


@dataclass(frozen=True)
class EvaluationArtifact:
    """The gate's decision and both models' metrics on the test rows."""
    blessing_path: Path
    accepted: bool
    reason: str
    metrics: Mapping[str, float]
    production_version: str | None
    production_metrics: Mapping[str, float] | None = field(default=None)
    importance: Mapping[str, Any] | None = field(default=None)   # permutation importance on the test rows


@dataclass(frozen=True)
class PusherArtifact:
    """The published version, and whether production now points at it."""
    pushed: bool                 # a new version was published
    version: str | None
    reason: str
    promoted: bool = False       # ...and production now points at it


ARTIFACT_OF: dict[str, type] = {
    "ingestion": IngestionArtifact, "validation": ValidationArtifact, "transformation": TransformationArtifact,
    "trainer": TrainerArtifact, "evaluation": EvaluationArtifact, "pusher": PusherArtifact,
}


def restore_artifact(stage: str, recorded: Mapping[str, Any]):
    """The artifact entity of ``stage`` rebuilt from its JSON form in run.json (paths and tuples restored),
    so a resumed run can hand a finished stage's artifact to the next stage without running it again."""
    cls = ARTIFACT_OF[stage]
    hints = typing.get_type_hints(cls)
    values = {}
    for name, hint in hints.items():
        if name not in recorded:
            continue
        value, text = recorded[name], str(hint)
        if value is not None and "Path" in text:
            value = Path(value)
        elif isinstance(value, list) and "tuple" in text:
            value = tuple(value)
        values[name] = value
    return cls(**values)

"""What each component takes (config entities) and emits (artifact entities).

All are frozen dataclasses: a component cannot change its inputs, and an artifact, once emitted,
is a fact about the run. Paths are absolute. Row files (splits, arrays) are written and read through
the run's ``RowFiles`` (``rows``), which keeps clear sensitive values out of the run folder.
``TrainingPipeline`` builds the config entities from the validated YAML (``tabpipe.config.Settings``).
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabpipe.config import Candidate, DriftSection, ExecutorSection
from tabpipe.training.rowfiles import RowFiles
from tabpipe.schema import Schema
from tabpipe.sources import SourceConfig

# ------------------------------------------------------------------ config entities

@dataclass(frozen=True)
class IngestionConfig:
    source: SourceConfig
    base_dir: Path
    target: str
    test_size: float
    seed: int
    out_dir: Path
    uploaded_rows: Callable[[], Any] | None = None   # reads rows uploaded with POST /data (None: not used)
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back


@dataclass(frozen=True)
class ValidationConfig:
    schema: Schema
    on_invalid_rows: str          # "fail" | "drop"
    drift: DriftSection
    seed: int
    out_dir: Path
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back


@dataclass(frozen=True)
class TransformationConfig:
    schema: Schema
    max_categories: int
    out_dir: Path
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back


@dataclass(frozen=True)
class TrainerConfig:
    schema: Schema
    candidates: tuple[Candidate, ...]
    cv_folds: int
    metric: str
    time_budget_s: float
    n_jobs: int
    min_cv_score: float
    resampling: str               # pipeline default; a candidate may set its own
    max_categories: int
    seed: int
    out_dir: Path
    executor: ExecutorSection = ExecutorSection()   # local worker processes, or a Dask cluster
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back
    search_rounds: int = 1        # rounds of new configurations while the budget allows (tabpipe.training.search.schedule)
    ensemble_size: int = 1        # greedy picks of configurations for the final model; 1 = the best alone


@dataclass(frozen=True)
class EvaluationConfig:
    metric: str
    min_score: float
    min_improvement: float
    out_dir: Path
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back


@dataclass(frozen=True)
class PusherConfig:
    schema: Schema
    reference_rows: int
    seed: int
    run_id: str
    extra_metadata: Mapping[str, Any]
    out_dir: Path
    rows: RowFiles = field(default_factory=RowFiles)   # where row files are written / read back


# ------------------------------------------------------------------ artifact entities

@dataclass(frozen=True)
class IngestionArtifact:
    raw_path: Path
    train_path: Path
    test_path: Path
    n_rows: int
    n_train: int
    n_test: int
    fingerprint: str          # sha256 of the data's content (column names, dtypes, values)
    uploaded_rows: int = 0    # rows uploaded with POST /data appended after the source's rows
    uploaded_through_id: int | None = None   # ...every uploaded row with a store id up to this one


@dataclass(frozen=True)
class ValidationArtifact:
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


@dataclass(frozen=True)
class TransformationArtifact:
    preprocessor_path: Path   # dill: ColumnTransformer fitted on the training split only
    x_train_path: Path        # .npy, (n_train, n_features) float32, not resampled
    y_train_path: Path        # .npy, (n_train,) int 0/1, 1 = positive class
    x_test_path: Path
    y_test_path: Path
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class TrainerArtifact:
    model_path: Path          # dill: tabpipe.model.TabularModel (preprocessing + estimator + threshold)
    cv_results_path: Path
    best_candidate: str       # a candidate's name, or "ensemble" (tabpipe.training.search.ensemble: a weighted mean of configurations)
    best_params: Mapping[str, Any]   # an ensemble: {"members": [{candidate, params, resampling, weight, score}, ...]}
    best_resampling: str      # smotetomek | smote | none: the chosen candidate's resampling, used by the refit
                              # (an ensemble: its members' kinds joined with "+")
    cv_score: float
    threshold: float
    configs_tried: int        # configurations with a CV score
    configs_total: int
    stopped: Mapping[str, int]  # configurations per stop reason: finished, pruned, out_of_budget, failed
    search_rows: int          # training rows the search used (all of them, or a stratified sample)
    search_seconds: float     # everything the budget covers: probe, fold preparation, search
    prep_seconds: float       # of which preparing the folds
    refit_seconds: float      # the final refit on every training row, after the budget


@dataclass(frozen=True)
class EvaluationArtifact:
    blessing_path: Path
    accepted: bool
    reason: str
    metrics: Mapping[str, float]
    production_version: str | None
    production_metrics: Mapping[str, float] | None = field(default=None)


@dataclass(frozen=True)
class PusherArtifact:
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

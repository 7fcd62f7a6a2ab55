"""The sections of ``pipeline.yaml``, each a strict frozen model with its defaults and limits.

Every setting is declared once, here; the stages, the service and monitoring take these sections
(or values read from them) as they are. Fixed choices are ``Literal`` aliases the rest of the
package imports (``Metric``, ``Resampling``, ``InvalidRows``, ``AcrossSplit``). A metric has one name inside the
code: ``METRIC_SPELLINGS`` maps the other spelling users may write to it when the YAML is read.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from tabpipe.config_base import StrictModel
from tabpipe.orchestration.spec import OrchestrationSection
from tabpipe.registry import RegistryConfig
from tabpipe.sources import SourceConfig

Metric = Literal["roc_auc", "pr_auc", "f1"]
METRIC_SPELLINGS = {"average_precision": "pr_auc"}   # also accepted in YAML, stored as the canonical name
Resampling = Literal["smotetomek", "smote", "none"]
InvalidRows = Literal["fail", "drop"]
AcrossSplit = Literal["keep_one_side", "count", "off"]
CalibrationMethod = Literal["platt", "none"]


def canonical_metric(value: object) -> object:
    """The one name of a metric (``average_precision`` is ``pr_auc``); anything else is left to the Literal."""
    return METRIC_SPELLINGS.get(value, value) if isinstance(value, str) else value


MetricSetting = Annotated[Metric, BeforeValidator(canonical_metric)]   # a metric as pipeline.yaml may spell it


class RunSection(StrictModel):
    """Where a run writes its folders, and the seed of everything random in it."""
    artifacts_dir: Path = Path("artifacts")
    seed: int = 42


class SplitSection(StrictModel):
    """The held-out test split: its share of the rows."""
    test_size: float = Field(0.2, gt=0, lt=1)


class DriftSection(StrictModel):
    """The validation stage's drift check: the training data against the production model's reference rows."""
    enabled: bool = True
    fail_on_drift: bool = False          # default: drift only warns
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drifts when this share of columns drift
    max_rows: int = Field(20_000, gt=100)        # rows sampled from each side for the report
    reference_rows: int = Field(20_000, gt=100)  # training rows stored with a model as its reference


class LeakageSection(StrictModel):
    """The target-leakage check: a feature that alone ranks the training rows' target this well stops the run."""
    enabled: bool = True
    stop_at_auc: float = Field(0.98, gt=0.5, le=1)   # a feature whose single-column AUC reaches this stops the run
    allow: list[str] = []                            # features reported but never stopping the run


class IntegritySection(StrictModel):
    """The validation stage's integrity checks before training (docs/training.md#integrity-before-training)."""
    leakage: LeakageSection = LeakageSection()
    duplicate_rows: bool = True        # count exact duplicate rows (features + target)
    conflicting_labels: bool = True    # count identical feature rows with opposite labels
    across_split: AcrossSplit = "keep_one_side"   # rows in both splits: keep_one_side (count, then move) | count | off


class ValidationSection(StrictModel):
    """What the validation stage does with rows that break a hard rule, its integrity checks and its drift check."""
    on_invalid_rows: InvalidRows = "fail"
    integrity: IntegritySection = IntegritySection()
    drift: DriftSection = DriftSection()


class TransformationSection(StrictModel):
    """Class resampling of the training rows and the one-hot limit per categorical column."""
    resampling: Resampling = "smotetomek"
    max_categories: int = Field(30, ge=2)   # one-hot columns per categorical; rarer values pooled


class ExecutorSection(StrictModel):
    """Where the search's tasks run: worker processes of this machine, or a Dask cluster."""
    type: Literal["local", "dask"] = "local"
    address: str | None = None           # dask: tcp://scheduler:8786; None = a LocalCluster started by the run
    n_workers: int | None = Field(None, ge=1)   # LocalCluster processes (default: training.n_jobs)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be a scheduler address such as tcp://host:8786 (or null for a local cluster)")
        return value

    @model_validator(mode="after")
    def _dask_only(self) -> ExecutorSection:
        if self.type == "local" and (self.address is not None or self.n_workers is not None):
            raise ValueError("address and n_workers apply to type: dask only")
        return self


class TrainingSection(StrictModel):
    """The model search: candidates file, CV folds, metric, time budget, rounds, ensemble, workers."""
    models: Path = Path("model.yaml")
    cv_folds: int = Field(5, ge=2, le=20)
    metric: MetricSetting = "roc_auc"            # `average_precision` is read as pr_auc
    time_budget_s: float = Field(600, gt=0)
    search_rounds: int = Field(4, ge=1, le=100)  # at most this many rounds of n_iter new configurations per candidate
    ensemble_size: int = Field(10, ge=1, le=100) # at most this many picks of the best configurations (1: no ensemble)
    n_jobs: int = -1                             # -1 = all cores; 0 is rejected
    min_cv_score: float = Field(0.0, ge=0, le=1)
    executor: ExecutorSection = ExecutorSection()
    include_uploaded_rows: bool | None = None    # append rows uploaded with POST /data; unset: serve.allow_uploads
    calibration: CalibrationMethod = "platt"     # probability = Platt map of the raw score fitted out-of-fold; none: raw

    @field_validator("n_jobs")
    @classmethod
    def _n_jobs(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (all cores) or a positive number of processes")
        return value


class Costs(StrictModel):
    """What a wrong decision costs, in any one unit: the decision threshold then minimises the expected cost."""
    false_positive: float = Field(gt=0)
    false_negative: float = Field(gt=0)


class EvaluationSection(StrictModel):
    """The gate a new model passes to be published: metric, minimum score, improvement on production,
    calibration not worse than production's by more than ``max_ece_increase``; and the decision costs."""
    metric: MetricSetting = "roc_auc"            # `average_precision` is read as pr_auc
    min_score: float = Field(0.6, ge=0, le=1)
    min_improvement: float = Field(0.0, ge=-1, le=1)
    # refuse a challenger whose test ECE (15 equal-frequency bins) exceeds production's by more; null: off.
    # 0.05 is above the noise of ECE on a few thousand test rows (~0.01-0.02) and below what dropping the
    # calibration costs a resampled model (0.05-0.2).
    max_ece_increase: float | None = Field(0.05, ge=0, le=1)
    # refuse a model that a random pairing of its test scores with the labels matches this often (permutation
    # test, 999 shuffles): no better than chance. null: off. A fixed min_score refuses weak but real signals.
    max_chance_p: float | None = Field(0.01, gt=0, lt=1)
    costs: Costs | None = None                   # set: the threshold minimises expected cost instead of maximising F1


def _segment_list(value: object) -> object:
    """``segments: [column, ...]`` is short for ``segments: {columns: [column, ...]}``."""
    return {"columns": value} if isinstance(value, list) else value


class SegmentsSection(StrictModel):
    """Per-segment checks of the gate (docs/model_card.md#segments-and-the-gate): the gate's metric on each
    segment of the test rows, and the worst-slice search of the model card."""
    columns: list[str] = []                          # schema columns; numeric ones are cut into `bins` quantile bins
    bins: int = Field(4, ge=2, le=20)                # quantile bins of a numeric column (edges from the training rows)
    min_rows: int = Field(200, ge=20)                # smaller segments are reported, never refuse a model
    max_drop: float = Field(0.02, ge=0, le=1)        # refuse when new - production is below -max_drop at 95 %
    resamplings: int = Field(1000, ge=100, le=20_000)   # bootstrap resamples of the intervals
    worst_slices: int = Field(10, ge=0, le=100)      # weakest single-column slices listed in the card (0: no search)
    slice_min_rows: int = Field(50, ge=10)           # smaller slices are not tested in the worst-slice search
    fdr: float = Field(0.05, gt=0, lt=1)             # Benjamini-Hochberg false discovery rate of the search
    slice_resamplings: int = Field(200, ge=50, le=20_000)   # the search's bootstrap (a standard error, not percentiles)

    @field_validator("columns")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
        return value


class ModelCardSection(StrictModel):
    """What the published model card (docs/model_card.md) says about the model's purpose; all optional."""
    owner: str | None = None             # a team or person to ask about the model
    intended_use: str | None = None      # what the predictions are for (and who acts on them)
    limitations: list[str] = []          # known limits: data it never saw, uses it is not for

    @field_validator("limitations", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class ServeSection(StrictModel):
    """The prediction service: model polling, request limits, allowed origins, token-guarded POST routes."""
    poll_interval_s: float = Field(5.0, ge=0)      # how often to look for a new production model; 0 = never
    max_body_mb: float = Field(32, gt=0)           # larger requests get HTTP 413
    max_records: int = Field(10_000, gt=0)         # per JSON request
    max_csv_rows: int = Field(100_000, gt=0)       # per CSV upload, checked before any row is scored
    allowed_origins: list[str] = []                # other web origins whose pages may POST here (none by default)
    allow_train: bool = False                      # POST /train is off unless this is true...
    train_token_env: str = "TABPIPE_TRAIN_TOKEN"   # ...and then needs this env var's token as a Bearer token
    allow_uploads: bool = False                    # POST /outcomes and POST /data are off unless this is true...
    upload_token_env: str = "TABPIPE_UPLOAD_TOKEN" # ...and then need this env var's token as a Bearer token

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s*]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com (scheme://host[:port], "
                                 "no path, no wildcard)")
        return value


class RulesSection(StrictModel):
    """Governance thresholds of ``tabpipe monitor`` (docs/monitoring.md); every one a finite number."""

    retrain_roc_auc_below: float = Field(0.70, ge=0, le=1)      # realised ROC-AUC, else the label-free estimate
    retrain_psi_at_least: float = Field(0.2, ge=0, allow_inf_nan=False)   # any feature
    retrain_drift_share_at_least: float = Field(0.5, ge=0, le=1)  # share of drifted columns (evidently)
    watch_psi_at_least: float = Field(0.1, ge=0, allow_inf_nan=False)
    # multivariate drift: watch above the calibrated no-shift threshold (monitoring.multivariate); retrain above
    # this domain AUC (1.0: never — a shift of the features alone is a reason to look, not proof of harm)
    retrain_domain_auc_above: float = Field(1.0, ge=0.5, le=1)
    # concept drift: |realised - estimated ROC-AUC| on the labelled rows, its interval excluding 0 (monitoring.concept)
    watch_concept_gap_at_least: float = Field(0.03, ge=0, le=1)
    retrain_concept_gap_at_least: float = Field(0.10, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> RulesSection:
        if self.watch_psi_at_least > self.retrain_psi_at_least:
            raise ValueError("watch_psi_at_least must not exceed retrain_psi_at_least")
        if self.watch_concept_gap_at_least > self.retrain_concept_gap_at_least:
            raise ValueError("watch_concept_gap_at_least must not exceed retrain_concept_gap_at_least")
        return self


class AlertsSection(StrictModel):
    """Webhook alerts of ``tabpipe monitor``: the URL is read from the environment variable named here."""

    webhook_url_env: str = "TABPIPE_ALERT_WEBHOOK_URL"
    timeout_s: float = Field(3.0, gt=0)       # per attempt
    retries: int = Field(2, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    total_s: float = Field(10.0, gt=0)        # the whole delivery never takes longer
    cooldown_s: float = Field(21_600, ge=0)   # the same alert for the same version is not re-sent sooner


class MultivariateSection(StrictModel):
    """Multivariate drift: a domain classifier's ROC-AUC between reference rows and the window's rows; its
    watch threshold from the no-shift AUCs measured when the model is published (docs/monitoring.md)."""

    enabled: bool = True
    sample_rows: int = Field(2_000, ge=100, le=100_000)   # rows of each side the classifier sees
    null_resamplings: int = Field(40, ge=20, le=2_000)   # publish time: training rows set against training rows
    false_alarm_rate: float = Field(0.01, gt=0, lt=0.5)   # share of no-shift windows allowed over the threshold...
    margin: float = Field(0.01, ge=0, le=0.5)             # ...plus this much AUC
    min_rows: int = Field(300, ge=50)                     # fewer window rows: not checked


class ConceptSection(StrictModel):
    """Concept drift: realised minus label-free estimated ROC-AUC on a window's labelled rows, with a
    bootstrap interval (docs/monitoring.md)."""

    enabled: bool = True
    resamplings: int = Field(200, ge=50, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    min_rows: int = Field(200, ge=20)                     # fewer labelled rows: not checked


class ContributionsSection(StrictModel):
    """Drift of the model's reasons: mean |contribution| per column, reference sample vs window sample
    (docs/monitoring.md)."""

    enabled: bool = True
    sample_rows: int = Field(2000, ge=100, le=100_000)    # rows explained of each side at most
    min_rows: int = Field(100, ge=10)                      # fewer window rows: not checked


class LogSection(StrictModel):
    """How the prediction log is stored (docs/monitoring_store.md#the-columnar-log)."""

    format: Literal["parquet", "sql"] = "parquet"   # parquet: hour-partitioned files indexed by the store; sql: the predictions table


class MonitoringSection(StrictModel):
    """Where the history store lives and what the prediction log keeps (docs: README, Monitoring)."""

    store_url_env: str = "TABPIPE_HISTORY_URL"   # SQLAlchemy URL from this env var; unset: history.sqlite by the registry
    log_predictions: bool | float = False        # true | false | sample rate in (0, 1]
    sensitive: Literal["hash", "drop"] = "hash"  # what happens to `sensitive: true` schema columns in logs
    hash_key_env: str = "TABPIPE_HASH_KEY"       # HMAC-SHA256 key for `hash`; unset: sensitive columns are dropped
    queue_rows: int = Field(100_000, gt=0)       # service: rows waiting for the background writer; more are dropped
    batch_rows: int = Field(1_000, gt=0)         # service: rows per write
    flush_interval_s: float = Field(1.0, gt=0)   # service: longest wait before a partial batch is written
    log: LogSection = LogSection()               # format of the prediction log: parquet (default) | sql
    rules: RulesSection = RulesSection()         # `tabpipe monitor`: ok | watch | retrain
    alerts: AlertsSection = AlertsSection()
    psi_min_rows: int = Field(500, ge=1)         # fewer rows in a window: PSI is insufficient_data, never an alert
    exact_rows: int = Field(2_000_000, ge=1)     # `tabpipe monitor`: scores kept per row up to this many rows; beyond, fine bins
    evidently: bool = True                       # also write evidently's drift report (sampled to validation.drift.max_rows)
    multivariate: MultivariateSection = MultivariateSection()   # domain classifier AUC (several columns at once)
    concept: ConceptSection = ConceptSection()                  # estimate vs outcomes on the same rows
    contributions: ContributionsSection = ContributionsSection()   # drift of mean |contribution| per column

    @field_validator("log_predictions")
    @classmethod
    def _rate(cls, value: bool | float) -> bool | float:
        if not isinstance(value, bool) and not 0 < value <= 1:
            raise ValueError("must be true, false or a sample rate in (0, 1]")
        return value

    @property
    def sample_rate(self) -> float:
        """Share of scored rows to log: 0.0 (off) to 1.0 (all)."""
        return float(self.log_predictions)


class StreamSection(StrictModel):
    """``tabpipe stream``: the Redis Stream it consumes and the ones it writes (docs/streaming.md). The Redis URL
    (it may hold a password) is read from the environment variable named here, never from a file."""

    redis_url_env: str = "TABPIPE_REDIS_URL"
    input: str = Field("tabpipe:rows", min_length=1)          # rows to score
    output: str = Field("tabpipe:scores", min_length=1)       # one entry per scored message
    dead_letter: str = Field("tabpipe:dead", min_length=1)    # one entry per refused message or row, with the reason
    group: str = Field("tabpipe", min_length=1)               # consumer group on the input stream
    batch_size: int = Field(500, gt=0, le=100_000)            # messages per read (a micro-batch)
    block_ms: int = Field(1_000, gt=0, le=60_000)             # longest wait for new messages (also SIGTERM's delay)
    claim_idle_ms: int = Field(60_000, gt=0)                  # pending this long: claimed from a consumer presumed dead
    max_deliveries: int = Field(10, ge=2)                      # delivered this often, never acknowledged: dead letter
    status_interval_s: float = Field(30.0, gt=0)              # how often the status line is printed

    @model_validator(mode="after")
    def _distinct(self) -> StreamSection:
        if len({self.input, self.output, self.dead_letter}) < 3:
            raise ValueError("input, output and dead_letter must be three different streams")
        return self


class PipelineConfig(StrictModel):
    """The whole of ``pipeline.yaml``: the data source and one section per part of the project."""

    source: SourceConfig
    schema_path: Path = Field(Path("../schema.yaml"), alias="schema")
    run: RunSection = RunSection()
    split: SplitSection = SplitSection()
    validation: ValidationSection = ValidationSection()
    transformation: TransformationSection = TransformationSection()
    training: TrainingSection = TrainingSection()
    evaluation: EvaluationSection = EvaluationSection()
    segments: Annotated[SegmentsSection, BeforeValidator(_segment_list)] = SegmentsSection()
    model_card: ModelCardSection = ModelCardSection()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeSection = ServeSection()
    orchestration: OrchestrationSection = OrchestrationSection()
    monitoring: MonitoringSection = MonitoringSection()
    stream: StreamSection = StreamSection()

    @property
    def includes_uploaded_rows(self) -> bool:
        """Whether training appends the rows uploaded with POST /data (default: when uploads are enabled)."""
        explicit = self.training.include_uploaded_rows
        return self.serve.allow_uploads if explicit is None else explicit

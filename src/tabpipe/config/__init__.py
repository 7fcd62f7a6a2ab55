"""Loading and checking the YAML configuration: ``pipeline.yaml``, ``model.yaml`` and the schema.

Everything is validated before any stage runs. Any problem becomes one ``ConfigError`` naming the
file and the dotted key (``config/model.yaml: candidates[1].params.n_estimator: ...``).
Relative paths inside a config file resolve against that file's folder.
"""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from scipy import stats
from pydantic import Field, ValidationError, field_validator, model_validator

from tabpipe.config_base import StrictModel
from tabpipe.errors import ConfigError
from tabpipe.orchestration.spec import OrchestrationSection
from tabpipe.registry import RegistryConfig
from tabpipe.schema import Schema
from tabpipe.sources import FileSource, SourceConfig, SqlSource, redact_urls_in

Metric = Literal["roc_auc", "average_precision", "f1"]
Resampling = Literal["smotetomek", "smote", "none"]


class RunSection(StrictModel):
    artifacts_dir: Path = Path("artifacts")
    seed: int = 42


class SplitSection(StrictModel):
    test_size: float = Field(0.2, gt=0, lt=1)


class DriftSection(StrictModel):
    enabled: bool = True
    fail_on_drift: bool = False          # default: drift only warns
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drifts when this share of columns drift
    max_rows: int = Field(20_000, gt=100)        # rows sampled from each side for the report
    reference_rows: int = Field(20_000, gt=100)  # training rows stored with a model as its reference


class ValidationSection(StrictModel):
    on_invalid_rows: Literal["fail", "drop"] = "fail"
    drift: DriftSection = DriftSection()


class TransformationSection(StrictModel):
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
    models: Path = Path("model.yaml")
    cv_folds: int = Field(5, ge=2, le=20)
    metric: Metric = "roc_auc"
    time_budget_s: float = Field(600, gt=0)
    search_rounds: int = Field(4, ge=1, le=100)  # at most this many rounds of n_iter new configurations per candidate
    ensemble_size: int = Field(10, ge=1, le=100) # at most this many picks of the best configurations (1: no ensemble)
    n_jobs: int = -1                             # -1 = all cores; 0 is rejected
    min_cv_score: float = Field(0.0, ge=0, le=1)
    executor: ExecutorSection = ExecutorSection()
    include_uploaded_rows: bool | None = None    # append rows uploaded with POST /data; unset: serve.allow_uploads


    @field_validator("n_jobs")
    @classmethod
    def _n_jobs(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (all cores) or a positive number of processes")
        return value


class EvaluationSection(StrictModel):
    metric: Literal["roc_auc", "pr_auc", "f1"] = "roc_auc"
    min_score: float = Field(0.6, ge=0, le=1)
    min_improvement: float = Field(0.0, ge=-1, le=1)


class ServeSection(StrictModel):
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
    """Governance thresholds of ``tabpipe monitor`` (docs/monitoring.md)."""

    retrain_roc_auc_below: float = Field(0.70, ge=0, le=1)      # realised ROC-AUC, else the label-free estimate
    retrain_psi_at_least: float = Field(0.2, ge=0)              # any feature
    retrain_drift_share_at_least: float = Field(0.5, ge=0, le=1)  # share of drifted columns (evidently)
    watch_psi_at_least: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RulesSection:
        if self.watch_psi_at_least > self.retrain_psi_at_least:
            raise ValueError("watch_psi_at_least must not exceed retrain_psi_at_least")
        return self


class AlertsSection(StrictModel):
    """Webhook alerts of ``tabpipe monitor``: the URL is read from the environment variable named here."""

    webhook_url_env: str = "TABPIPE_ALERT_WEBHOOK_URL"
    timeout_s: float = Field(3.0, gt=0)       # per attempt
    retries: int = Field(2, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    total_s: float = Field(10.0, gt=0)        # the whole delivery never takes longer
    cooldown_s: float = Field(21_600, ge=0)   # the same alert for the same version is not re-sent sooner


class MonitoringSection(StrictModel):
    """Where the history store lives and what the prediction log keeps (docs: README, Monitoring)."""

    store_url_env: str = "TABPIPE_HISTORY_URL"   # SQLAlchemy URL from this env var; unset: history.sqlite by the registry
    log_predictions: bool | float = False        # true | false | sample rate in (0, 1]
    sensitive: Literal["hash", "drop"] = "hash"  # what happens to `sensitive: true` schema columns in logs
    hash_key_env: str = "TABPIPE_HASH_KEY"       # HMAC-SHA256 key for `hash`; unset: sensitive columns are dropped
    queue_rows: int = Field(100_000, gt=0)       # service: rows waiting for the background writer; more are dropped
    batch_rows: int = Field(1_000, gt=0)         # service: rows per write
    flush_interval_s: float = Field(1.0, gt=0)   # service: longest wait before a partial batch is written
    rules: RulesSection = RulesSection()         # `tabpipe monitor`: ok | watch | retrain
    alerts: AlertsSection = AlertsSection()
    psi_min_rows: int = Field(500, ge=1)         # fewer rows in a window: PSI is insufficient_data, never an alert
    evidently: bool = True                       # also write evidently's drift report (sampled to validation.drift.max_rows)

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


class PipelineConfig(StrictModel):
    source: SourceConfig
    schema_path: Path = Field(Path("../schema.yaml"), alias="schema")
    run: RunSection = RunSection()
    split: SplitSection = SplitSection()
    validation: ValidationSection = ValidationSection()
    transformation: TransformationSection = TransformationSection()
    training: TrainingSection = TrainingSection()
    evaluation: EvaluationSection = EvaluationSection()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeSection = ServeSection()
    orchestration: OrchestrationSection = OrchestrationSection()
    monitoring: MonitoringSection = MonitoringSection()

    @property
    def includes_uploaded_rows(self) -> bool:
        """Whether training appends the rows uploaded with POST /data (default: when uploads are enabled)."""
        explicit = self.training.include_uploaded_rows
        return self.serve.allow_uploads if explicit is None else explicit


class Candidate(StrictModel):
    name: str
    class_path: str = Field(alias="class")
    params: dict[str, Any] = {}
    search: dict[str, Any] = {}
    n_iter: int = Field(4, ge=1)
    # resampling of this candidate's training rows; inherit = transformation.resampling of pipeline.yaml.
    # `none` with class weights (e.g. class_weight: balanced) is the cheap equivalent of SMOTE(Tomek).
    resampling: Literal["inherit", "smotetomek", "smote", "none"] = "inherit"

    def resampling_or(self, default: str) -> str:
        """The resampling this candidate's fits use, given the pipeline's default."""
        return default if self.resampling == "inherit" else self.resampling


class ModelsConfig(StrictModel):
    candidates: list[Candidate] = Field(min_length=1)


class Settings(StrictModel):
    """Everything a run needs, validated and with absolute paths."""

    pipeline: PipelineConfig
    models: ModelsConfig
    schema_: Schema = Field(alias="schema")
    config_path: Path
    snapshot: dict  # the raw YAML of all three files, for run.json (every URL's password hidden)

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, "expected a mapping of keys at the top level")
    return data


def _dotted(loc: tuple) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part in ("file", "mongodb", "sql"):  # discriminated-union tags add nothing for the reader
            continue
        else:
            key += f".{part}" if key else str(part)
    return key or "(top level)"


def _validate(model: type[StrictModel], data: dict, path: Path):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(path, _dotted(err["loc"]), message + more) from None


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_paths(cfg: PipelineConfig, base: Path) -> PipelineConfig:
    """Rewrite every relative path against the config file's folder."""
    updates: dict[str, Any] = {
        "schema_path": _resolve(base, cfg.schema_path),
        "run": cfg.run.model_copy(update={"artifacts_dir": _resolve(base, cfg.run.artifacts_dir)}),
        "training": cfg.training.model_copy(update={"models": _resolve(base, cfg.training.models)}),
    }
    if isinstance(cfg.source, FileSource):
        updates["source"] = cfg.source.model_copy(update={"path": _resolve(base, cfg.source.path)})
    if isinstance(cfg.source, SqlSource) and cfg.source.url and cfg.source.url.startswith("sqlite:///"):
        db = cfg.source.url.removeprefix("sqlite:///")
        if db and not db.startswith("/") and db != ":memory:":
            updates["source"] = cfg.source.model_copy(update={"url": f"sqlite:///{_resolve(base, Path(db))}"})
    registry = {name: _resolve(base, getattr(cfg.registry, name))
                for name in ("signing_key_file", "verify_key_file") if getattr(cfg.registry, name) is not None}
    if cfg.registry.backend == "local":
        registry["path"] = _resolve(base, cfg.registry.path)
    updates["registry"] = cfg.registry.model_copy(update=registry)
    return cfg.model_copy(update=updates)


SPACES = {
    "uniform": lambda lo, hi: stats.uniform(lo, hi - lo),
    "log_uniform": lambda lo, hi: stats.loguniform(lo, hi),
    "int_uniform": lambda lo, hi: stats.randint(lo, hi + 1),
}


def parse_space(space):
    """A search space: a list of values, or ``{uniform|log_uniform|int_uniform: [low, high]}``."""
    if isinstance(space, list) and space:
        return space
    if isinstance(space, dict) and len(space) == 1:
        (kind, bounds), = space.items()
        if kind in SPACES and isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]:
            if kind == "log_uniform" and bounds[0] <= 0:
                raise ValueError("log_uniform bounds must be positive")
            return SPACES[kind](*bounds)
    raise ValueError("a search space is a non-empty list of values or {uniform|log_uniform|int_uniform: [low, high]} with low < high")


def import_class(path: str) -> type:
    """Import ``package.module.ClassName``; raises ImportError/AttributeError with the cause."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ImportError(f"{path!r} is not a dotted path like 'sklearn.linear_model.LogisticRegression'")
    return getattr(importlib.import_module(module), name)


def _check_candidates(models: ModelsConfig, path: Path) -> None:
    seen: set[str] = set()
    for i, cand in enumerate(models.candidates):
        where = f"candidates[{i}]"
        if cand.name in seen:
            raise ConfigError(path, f"{where}.name", f"duplicate candidate name {cand.name!r}")
        seen.add(cand.name)
        try:
            cls = import_class(cand.class_path)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(path, f"{where}.class", f"cannot import {cand.class_path!r}: {exc}") from None
        if not inspect.isclass(cls) or not hasattr(cls, "fit") or not hasattr(cls, "predict_proba"):
            raise ConfigError(path, f"{where}.class", f"{cand.class_path} is not a classifier with fit/predict_proba")
        try:
            valid = set(cls().get_params()) if hasattr(cls, "get_params") else set()
        except Exception as exc:  # noqa: BLE001 — any constructor failure is a config problem here
            raise ConfigError(path, f"{where}.class", f"{cand.class_path} cannot be created from YAML parameters: {exc}") from None
        # a class whose __init__ takes **kwargs (LightGBM, XGBoost) passes other keys on to its library unchecked
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
        for section in ("params", "search"):
            for key in getattr(cand, section):
                if valid and not takes_any and key not in valid:
                    raise ConfigError(path, f"{where}.{section}.{key}", f"not a parameter of {cls.__name__}")
        for key, space in cand.search.items():
            try:
                parse_space(space)
            except ValueError as exc:
                raise ConfigError(path, f"{where}.search.{key}", str(exc)) from None


def load_settings(config_path: str | Path, *, check_candidates: bool = True) -> Settings:
    """Read pipeline.yaml plus the schema and model files it names; raise ConfigError on any problem.

    ``check_candidates=False`` skips importing the model classes (seconds of scikit-learn imports)
    for commands that never train, such as ``tabpipe models``.
    """
    path = Path(config_path).resolve()
    raw = _read_yaml(path)
    pipeline = _resolve_paths(_validate(PipelineConfig, raw, path), path.parent)
    schema_raw = _read_yaml(pipeline.schema_path)
    schema = _validate(Schema, schema_raw, pipeline.schema_path)
    models_raw = _read_yaml(pipeline.training.models)
    models = _validate(ModelsConfig, models_raw, pipeline.training.models)
    if check_candidates:
        _check_candidates(models, pipeline.training.models)
    return Settings(
        pipeline=pipeline,
        models=models,
        schema=schema,
        config_path=path,
        snapshot=redact_urls_in({"pipeline": raw, "schema": schema_raw, "models": models_raw}),
    )

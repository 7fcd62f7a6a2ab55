"""Reading the three YAML files into one validated ``Settings``, with every problem a ``ConfigError``.

A problem names the file and the dotted key (``config/model.yaml: candidates[1].params.n_estimator: ...``);
relative paths inside a config file resolve against that file's folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from tabpipe.config.models import ModelsConfig, check_candidate_classes
from tabpipe.config.sections import PipelineConfig
from tabpipe.config_base import StrictModel
from tabpipe.errors import ConfigError
from tabpipe.schema import Schema
from tabpipe.sources import FileSource, JoinSource, SqlSource, redact_urls_in


class Settings(StrictModel):
    """Everything a run needs, validated and with absolute paths."""

    pipeline: PipelineConfig
    models: ModelsConfig
    schema_: Schema = Field(alias="schema")
    config_path: Path
    snapshot: dict  # the raw YAML of all three files, for run.json (every URL's password hidden)

    @property
    def base_dir(self) -> Path:
        """The folder of pipeline.yaml (relative paths resolve against it)."""
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
        elif part in ("file", "mongodb", "sql", "join"):  # discriminated-union tags add nothing for the reader
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
    if isinstance(cfg.source, JoinSource):
        updates["source"] = cfg.source.model_copy(update={
            "base": _resolve_source(cfg.source.base, base),
            "joins": [join.model_copy(update={"source": _resolve_source(join.source, base)})
                      for join in cfg.source.joins]})
    else:
        updates["source"] = _resolve_source(cfg.source, base)
    registry = {name: _resolve(base, getattr(cfg.registry, name))
                for name in ("signing_key_file", "verify_key_file") if getattr(cfg.registry, name) is not None}
    if cfg.registry.backend == "local":
        registry["path"] = _resolve(base, cfg.registry.path)
    updates["registry"] = cfg.registry.model_copy(update=registry)
    return cfg.model_copy(update=updates)


def _resolve_source(source: Any, base: Path) -> Any:
    """A file source's path, or a SQLite URL's relative file, made absolute against ``base``."""
    if isinstance(source, FileSource):
        return source.model_copy(update={"path": _resolve(base, source.path)})
    if isinstance(source, SqlSource) and source.url and source.url.startswith("sqlite:///"):
        db = source.url.removeprefix("sqlite:///")
        if db and not db.startswith("/") and db != ":memory:":
            return source.model_copy(update={"url": f"sqlite:///{_resolve(base, Path(db))}"})
    return source


def _check_leakage_allow(pipeline: PipelineConfig, schema: Schema, path: Path) -> None:
    """Every column on the leakage check's allow-list is a feature of the schema (a typo would silently allow nothing)."""
    unknown = [c for c in pipeline.validation.integrity.leakage.allow if c not in schema.features]
    if unknown:
        raise ConfigError(path, "validation.integrity.leakage.allow",
                          f"{', '.join(map(repr, unknown))} {'is not a feature' if len(unknown) == 1 else 'are not features'} "
                          f"of {pipeline.schema_path.name}")


def _check_segments(pipeline: PipelineConfig, schema: Schema, path: Path) -> None:
    """Every segment column is a column of the schema (not the target): a typo would check no segment."""
    for i, column in enumerate(pipeline.segments.columns):
        if column == schema.target.name:
            raise ConfigError(path, f"segments.columns[{i}]", f"{column!r} is the target; segments are cut by "
                              "the columns the rows are described by")
        if column not in schema.columns:
            raise ConfigError(path, f"segments.columns[{i}]", f"{column!r} is not a column of "
                              f"{pipeline.schema_path.name} (columns: {', '.join(schema.columns)})")
        if schema.columns[column].sensitive:
            raise ConfigError(path, f"segments.columns[{i}]", f"{column!r} is sensitive: true in "
                              f"{pipeline.schema_path.name}; its values would be written in clear into "
                              "blessing.json and the model card")


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
    _check_leakage_allow(pipeline, schema, path)
    _check_segments(pipeline, schema, path)
    models_raw = _read_yaml(pipeline.training.models)
    models = _validate(ModelsConfig, models_raw, pipeline.training.models)
    if check_candidates:
        check_candidate_classes(models, pipeline.training.models)
    return Settings(
        pipeline=pipeline,
        models=models,
        schema=schema,
        config_path=path,
        snapshot=redact_urls_in({"pipeline": raw, "schema": schema_raw, "models": models_raw}),
    )

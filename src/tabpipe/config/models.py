"""``model.yaml``: the candidate models of the search, their parameters and search spaces.

A candidate names a classifier class by dotted path; ``check_candidate_classes`` imports each one and
checks that every fixed parameter and every searched one is a parameter of that class, and that
every search space can be read (``parse_space``), before any stage runs.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tabpipe.config.sections import Resampling
from tabpipe.config_base import StrictModel
from tabpipe.errors import ConfigError


class Grow(StrictModel):
    """After the search rounds: the candidate's best configuration on whole folds is evaluated again with
    ``param`` (a number of boosting iterations, say) multiplied by ``factor``, and again from the result,
    while that raises the CV score, at most ``times`` times, within the rounds' share of the budget."""

    param: str
    factor: float = Field(2.0, gt=1.0)
    times: int = Field(3, ge=1)


class Candidate(StrictModel):
    """One model.yaml candidate: a classifier class, its fixed parameters and its search space."""

    name: str
    class_path: str = Field(alias="class")
    params: dict[str, Any] = {}
    search: dict[str, Any] = {}
    n_iter: int = Field(4, ge=1)
    # resampling of this candidate's training rows; inherit = transformation.resampling of pipeline.yaml.
    # `none` with class weights (e.g. class_weight: balanced) is the cheap equivalent of SMOTE(Tomek).
    resampling: Literal["inherit", Resampling] = "inherit"
    grow: Grow | None = None

    def resampling_or(self, default: Resampling) -> Resampling:
        """The resampling this candidate's fits use, given the pipeline's default."""
        return default if self.resampling == "inherit" else self.resampling


class ModelsConfig(StrictModel):
    """The whole of ``model.yaml``: at least one candidate."""

    candidates: list[Candidate] = Field(min_length=1)


def _scipy_stats():
    from scipy import stats   # ~1 s of imports: only when a search space is read, not by every command
    return stats


SPACES = {
    "uniform": lambda lo, hi: _scipy_stats().uniform(lo, hi - lo),
    "log_uniform": lambda lo, hi: _scipy_stats().loguniform(lo, hi),
    "int_uniform": lambda lo, hi: _scipy_stats().randint(lo, hi + 1),
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


def check_candidate_classes(models: ModelsConfig, path: Path) -> None:
    """Import every candidate's class and check its parameters and search spaces; ConfigError at ``path``."""
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
        if cand.grow is not None:
            values = [cand.params[cand.grow.param]] if cand.grow.param in cand.params else cand.search.get(cand.grow.param)
            if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ConfigError(path, f"{where}.grow.param", f"{cand.grow.param!r} must be an integer parameter "
                                  "of this candidate: fixed in params or searched over a list of integers")

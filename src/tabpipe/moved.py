"""Module names from before the layered tree (tabpipe 0.1) and where that code lives now.

Saved models name the module of every class they hold, and users' ``model.yaml`` files name classes
by dotted path (``tabpipe.estimators.LinearBoostingBlend``); both keep working: importing an old name
gives the new module itself (the same object, so classes compare equal).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED: dict[str, str] = {
    "tabpipe.batch": "tabpipe.scoring.batch",
    "tabpipe.components": "tabpipe.training.components",
    "tabpipe.ensemble": "tabpipe.training.search.ensemble",
    "tabpipe.entities": "tabpipe.training.specs",
    "tabpipe.estimators": "tabpipe.model.estimators",
    "tabpipe.executors_dask": "tabpipe.executors.dask",
    "tabpipe.flowchart": "tabpipe.orchestration.flowchart",
    "tabpipe.holdout": "tabpipe.training.holdout",
    "tabpipe.metrics": "tabpipe.training.metrics",
    "tabpipe.monitoring.dashboard": "tabpipe.reports.dashboard",
    "tabpipe.monitoring.edge": "tabpipe.history.open",
    "tabpipe.monitoring.lineage": "tabpipe.history.lineage",
    "tabpipe.monitoring.logread": "tabpipe.history.logread",
    "tabpipe.monitoring.predlog": "tabpipe.history.predlog",
    "tabpipe.monitoring.profile": "tabpipe.drift.profile",
    "tabpipe.monitoring.psi": "tabpipe.drift.psi",
    "tabpipe.monitoring.sensitive": "tabpipe.privacy",
    "tabpipe.monitoring.store": "tabpipe.history.store",
    "tabpipe.partitions": "tabpipe.scoring.partitions",
    "tabpipe.pipeline": "tabpipe.training.pipeline",
    "tabpipe.preprocessing": "tabpipe.model.features",
    "tabpipe.resampling": "tabpipe.training.resampling",
    "tabpipe.rowfiles": "tabpipe.training.rowfiles",
    "tabpipe.run": "tabpipe.training.run",
    "tabpipe.sample_data": "tabpipe.sources.sample",
    "tabpipe.scaffold": "tabpipe.config.scaffold",
    "tabpipe.search": "tabpipe.training.search.schedule",
    "tabpipe.serving.scorer": "tabpipe.scoring.compiled",
}


def new_name(old: str) -> str | None:
    """Where module ``old`` lives now (a submodule of a moved package moved with it), or None."""
    parts = old.split(".")
    for n in range(len(parts), 1, -1):
        new = MOVED.get(".".join(parts[:n]))
        if new is not None:
            return ".".join([new, *parts[n:]])
    return None


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and hands back the module that now holds its code."""

    def find_spec(self, fullname, path, target=None):  # noqa: D102 — importlib's protocol
        return importlib.util.spec_from_loader(fullname, self) if new_name(fullname) else None

    def create_module(self, spec):  # noqa: D102
        module = importlib.import_module(new_name(spec.name))
        self._spec = getattr(module, "__spec__", None)   # importlib overwrites it with the alias's spec
        return module

    def exec_module(self, module):  # noqa: D102
        module.__spec__ = self._spec


def install() -> None:
    """Let ``import`` find the old names (once per process); first, so that a submodule of a moved
    package is never loaded a second time from the package's folder under its old name."""
    if not any(isinstance(finder, _OldNames) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OldNames())

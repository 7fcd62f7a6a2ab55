"""What users already have keeps working after the package moved into layers (tabpipe.moved):
the shipped and ``tabpipe init``-written configs load unchanged, their 0.1 class paths resolve, and
a model pickled under the 0.1 module names loads back as the same classes."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dill
import numpy as np
import pandas as pd
import pytest

from tabpipe.config import import_class, load_settings
from tabpipe.config.scaffold import scaffold
from tabpipe.moved import MOVED

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [REPO / "config" / "pipeline.yaml", REPO / "config" / "compose" / "pipeline.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_load_unchanged(path):
    settings = load_settings(path)   # imports and checks every candidate class
    assert settings.models.candidates


def test_init_written_config_loads_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.choice(["x", "y", "z"], 300),
                          "label": rng.choice(["yes", "no"], 300)})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    written = scaffold(tmp_path / "rows.csv", "label", tmp_path / "project")
    settings = load_settings(tmp_path / "project" / "pipeline.yaml")
    assert {p.name for p in written} >= {"pipeline.yaml", "schema.yaml", "model.yaml"}
    assert [c.name for c in settings.models.candidates]


def test_old_class_paths_in_model_yaml_resolve_to_the_moved_classes():
    from tabpipe.model.estimators import LinearBoostingBlend

    assert import_class("tabpipe.estimators.LinearBoostingBlend") is LinearBoostingBlend


OLD_SUBMODULES = {f"tabpipe.components.{name}": f"tabpipe.training.components.{name}"
                  for name in ("evaluation", "ingestion", "pusher", "trainer", "transformation", "validation")}


@pytest.mark.parametrize("old, new", sorted({**MOVED, **OLD_SUBMODULES}.items()))
def test_every_old_module_name_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new   # the alias did not overwrite the module's spec


def test_a_model_pickled_under_the_old_names_loads(monkeypatch):
    from tabpipe.model.estimators import WeightedMean
    from tabpipe.model.features import datetime_parts

    obj = {"estimator": WeightedMean.__new__(WeightedMean), "step": datetime_parts}
    monkeypatch.setattr(WeightedMean, "__module__", "tabpipe.estimators")
    monkeypatch.setattr(datetime_parts, "__module__", "tabpipe.preprocessing")
    data = dill.dumps(obj)
    monkeypatch.undo()
    assert b"tabpipe.estimators" in data and b"tabpipe.preprocessing" in data
    for name in ("tabpipe.estimators", "tabpipe.preprocessing"):
        sys.modules.pop(name, None)   # as in a fresh process: only the finder knows the old names
    loaded = dill.loads(data)
    assert type(loaded["estimator"]) is WeightedMean
    assert loaded["step"] is datetime_parts



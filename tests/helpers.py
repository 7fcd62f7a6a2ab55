"""Shared builders for the pipeline / CLI tests: a small, cheap tabpipe project in a temp folder."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import tabpipe  # noqa: F401
from tabpipe.sources.sample import generate
from tabpipe.schema import infer_schema

REPO = Path(__file__).resolve().parents[1]
TABPIPE_BIN = REPO / ".venv" / "bin" / "tabpipe"
TARGET = "fault_flag"

CHEAP_MODELS = {
    "candidates": [
        {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
         "params": {"max_iter": 50, "early_stopping": False}},
    ]
}

# The bundled schema's rules (hand-written, as in schema.yaml) for the generated telecom data.
SCHEMA = {
    "target": {"name": TARGET, "positive": 1},
    "columns": {
        "measurement_id": {"type": "string", "role": "id"},   # first id column: what outcomes join on
        "cell_id": {"type": "string", "role": "id"},
        "timestamp": {"type": "datetime"},
        "region": {"type": "category", "nullable": False, "categories": ["central", "east", "north", "south", "west"]},
        "vendor": {"type": "category", "categories": ["Ericsson", "Huawei", "Nokia", "Samsung"]},
        "technology": {"type": "category", "nullable": False, "categories": ["3G", "4G", "5G"], "hard": ["category"]},
        "throughput_mbps": {"type": "float", "min": 0},
        "latency_ms": {"type": "float", "nullable": False, "min": 0, "max": 5000},
        "packet_loss_pct": {"type": "float", "nullable": False, "min": 0, "max": 100, "hard": ["range"]},
        "call_drop_rate_pct": {"type": "float", "nullable": False, "min": 0, "max": 100, "hard": ["range"]},
        "rsrp_dbm": {"type": "float", "nullable": False, "min": -160, "max": -20},
        "sinr_db": {"type": "float", "min": -30, "max": 50},
        "prb_utilization_pct": {"type": "float", "nullable": False, "min": 0, "max": 100, "hard": ["range"]},
        "active_users": {"type": "int", "nullable": False, "min": 0},
        "alarm_count": {"type": "int", "nullable": False, "min": 0},
        "handover_success_pct": {"type": "float", "min": 0, "max": 100, "hard": ["range"]},
        "temperature_c": {"type": "float", "min": -60, "max": 120},
    },
}


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_project(
    root: Path,
    *,
    rows: int = 2000,
    seed: int = 0,
    shift: float = 0.0,
    data: pd.DataFrame | None = None,
    data_format: str = "csv",
    pipeline: dict | None = None,
    models: dict | None = None,
    schema: dict | str | None = None,
    copy_registry_from: Path | None = None,
) -> Path:
    """Write data + schema.yaml + model.yaml + pipeline.yaml under ``root``; return pipeline.yaml.

    ``schema``: a dict written as YAML, ``"infer"`` for ``infer_schema`` on the data, or None for
    the hand-written ``SCHEMA``. ``copy_registry_from``: a registry folder copied into the project
    first (so the original stays untouched); otherwise the project gets an empty local registry.
    Defaults: resampling smote, cv_folds 3, n_jobs 1, a small time budget, one search round, no ensemble.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    df = generate(rows, seed=seed, shift=shift) if data is None else data
    data_path = root / f"data.{data_format}"
    if data_format == "csv":
        df.to_csv(data_path, index=False)
    else:
        df.to_parquet(data_path, index=False)
    if schema == "infer":
        schema_doc = infer_schema(df, TARGET).model_dump(mode="json", exclude_defaults=True)
    else:
        schema_doc = SCHEMA if schema is None else schema
    (root / "schema.yaml").write_text(yaml.safe_dump(schema_doc, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(models or CHEAP_MODELS, sort_keys=False))
    reg = root / "registry"
    if copy_registry_from is not None:
        shutil.copytree(copy_registry_from, reg)
    doc = _merge({
        "source": {"type": "file", "path": data_path.name},
        "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0},
        "split": {"test_size": 0.2},
        "validation": {"on_invalid_rows": "fail", "drift": {"enabled": True, "fail_on_drift": False}},
        "transformation": {"resampling": "smote"},
        # one round of configurations and the best one alone (tests of rounds and ensembles set their own)
        "training": {"models": "model.yaml", "cv_folds": 3, "metric": "roc_auc", "time_budget_s": 60,
                     "n_jobs": 1, "min_cv_score": 0.0, "search_rounds": 1, "ensemble_size": 1},
        # the chance rule (evaluation.max_chance_p, on by default) is off: these projects' test splits hold a
        # handful of positives, too few to show any model better than chance (tests/unit/training/test_chance.py
        # and tests/scenarios/test_gate_chance.py test the rule)
        "evaluation": {"metric": "roc_auc", "min_score": 0.6, "min_improvement": 0.0, "max_chance_p": None},
        "registry": {"backend": "local", "path": str(reg)},
    }, pipeline or {})
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_pipeline(config: Path):
    """Load the settings and run the whole pipeline; returns the Run."""
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline

    return TrainingPipeline(load_settings(config), environ=os.environ).run()


def run_dirs(config: Path) -> list[Path]:
    """Run folders under the project's artifacts dir, oldest first."""
    art = Path(config).parent / "artifacts"
    return sorted(p for p in art.iterdir() if p.is_dir()) if art.exists() else []


def read_run_json(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def registry_of(config: Path):
    """The project's registry, opened as a publisher with the session's keys (from the environment)."""
    import os

    from tabpipe.config import load_settings
    from tabpipe.registry import open_registry

    settings = load_settings(config)
    return open_registry(settings.pipeline.registry, os.environ, sign=True, config_file=settings.config_path)


def stage_dir(run_dir: Path, name: str) -> Path:
    """The folder of stage ``name`` (``NN_<name>``) inside a run folder."""
    found = [p for p in Path(run_dir).iterdir() if p.is_dir() and p.name.split("_", 1)[-1] == name]
    assert len(found) == 1, f"expected one folder for stage {name!r} in {run_dir}, found {found}"
    return found[0]


class _CodeOnUnpickle:
    """Unpickling this creates a file: proof that bytes were (or were not) unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_pickle(marker: Path) -> bytes:
    """A pickle that runs code when loaded (it creates ``marker``): the payload of the tamper tests."""
    import pickle

    return pickle.dumps(_CodeOnUnpickle(Path(marker)))


def write_dataset(folder: Path, parts: list[pd.DataFrame], row_group_size: int = 70) -> pd.DataFrame:
    """Hive-partitioned: batch=00/…, batch=01/…; returns the whole table in the dataset's order."""
    for i, part in enumerate(parts):
        where = folder / f"batch={i:02d}"
        where.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), where / "part-0.parquet",
                       row_group_size=row_group_size)
    return pd.concat([p.assign(batch=i) for i, p in enumerate(parts)], ignore_index=True)

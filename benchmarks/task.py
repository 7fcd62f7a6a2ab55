"""One measured run, in its own process so its peak memory is its own: ``python -m benchmarks.task NAME JSON``.

Prints ``RESULT {json}`` as its last line: the timed section's seconds (data generation is not timed)
and what the comparison needs (output digests, per-column verdicts, test ROC-AUC, stage seconds).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.sources.sample import generate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sample_matrix(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generated rows through the bundled schema's preprocessing: (rows, 30) float64, ~5 % positives."""
    from tabpipe.training.components.transformation import split_xy
    from tabpipe.model.features import build_preprocessor
    from tabpipe.schema import coerce_frame, load_schema

    schema = load_schema(ROOT / "schema.yaml")
    typed, _ = coerce_frame(generate(rows, seed=seed), schema, with_target=True)
    X, y = split_xy(typed, schema)
    return build_preprocessor(schema).fit_transform(X).astype(np.float64), np.asarray(y, dtype=np.int64)


def wide(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """30 columns: two generated frames side by side (the second's columns suffixed ``_2``), no target."""
    first = generate(rows, seed=seed, shift=shift).drop(columns=["measurement_id", "fault_flag"])
    second = (generate(rows, seed=seed + 1000, shift=shift).drop(columns=["measurement_id", "fault_flag", "timestamp"])
              .add_suffix("_2"))
    return pd.concat([first, second], axis=1)


def drift_frames(rows: int, scenario: str, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frame of a drift scenario: no_shift, mean_shift, variance_shift, new_categories."""
    ref, cur = wide(rows, seed), wide(rows, seed + 1)
    numeric = [c for c in cur.columns if cur[c].dtype.kind == "f"]
    if scenario == "mean_shift":
        cur[numeric[::2]] += 0.25 * ref[numeric[::2]].std()
    elif scenario == "variance_shift":
        centre = cur[numeric[1::2]].mean()
        cur[numeric[1::2]] = centre + 1.6 * (cur[numeric[1::2]] - centre)
    elif scenario == "new_categories":
        replace = np.random.default_rng(seed).random(rows) < 0.3
        for column in ("region", "vendor_2", "technology"):
            cur[column] = cur[column].where(~replace, f"NEW-{column}")
    elif scenario != "no_shift":
        raise ValueError(f"unknown drift scenario {scenario!r}")
    return ref, cur


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def resample(rows: int, impl: str, seed: int = 0) -> dict:
    from imblearn.combine import SMOTETomek
    from imblearn.over_sampling import SMOTE

    from tabpipe.training.resampling import smote_tomek

    X, y = sample_matrix(rows, seed=1)
    sampler = smote_tomek(seed) if impl == "tabpipe" else SMOTETomek(smote=SMOTE(random_state=seed), random_state=seed)
    start = time.perf_counter()
    X_out, y_out = sampler.fit_resample(X, y)
    return {"seconds": time.perf_counter() - start, "rows_out": len(y_out), "digest": _digest(X_out, y_out),
            "shape_in": list(X.shape)}


def evidently_verdicts(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, bool]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    raw = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
    verdicts = {}
    for metric in raw["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, value, threshold = config["method"], float(metric["value"]), float(config["threshold"])
            verdicts[config["column"]] = (value <= threshold if method.startswith("K-S") else
                                          value < threshold if "p_value" in method else value >= threshold)
    return verdicts


def drift(rows: int, impl: str, scenario: str) -> dict:
    from tabpipe.drift.rules import check_drift, drift_report

    ref, cur = drift_frames(rows, scenario)
    if impl == "evidently":
        import evidently  # noqa: F401  (import not timed, as for tabpipe)
    start = time.perf_counter()
    if impl == "tabpipe":
        verdicts = {name: c.drifted for name, c in check_drift(ref, cur).items()}
    elif impl == "tabpipe_report":
        with tempfile.TemporaryDirectory() as tmp:
            summary = drift_report(ref, cur, Path(tmp), drift_share=0.5, max_rows=20_000, seed=0)
        verdicts = {name: c["drifted"] for name, c in summary["columns"].items()}
    else:
        verdicts = evidently_verdicts(ref, cur)
    return {"seconds": time.perf_counter() - start, "verdicts": verdicts, "columns": int(ref.shape[1])}


def _project(tmp: Path, rows: int, seed: int) -> Path:
    data = tmp / "data.parquet"
    generate(rows, seed=seed).to_parquet(data, index=False)
    cfg = yaml.safe_load((ROOT / "config/pipeline.yaml").read_text())
    cfg["source"] = {"type": "file", "path": str(data)}
    cfg["schema"] = str(ROOT / "schema.yaml")
    cfg["run"]["artifacts_dir"] = str(tmp / "artifacts")
    cfg["training"]["models"] = str(ROOT / "src/tabpipe/defaults/model.yaml")
    from tabpipe.registry.signing import write_keypair

    private, public = write_keypair(tmp / "keys")      # signed registry, as shipped
    cfg["registry"] = {"backend": "local", "path": str(tmp / "registry"), "require_signature": True,
                       "signing_key_file": str(private), "verify_key_file": str(public)}
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(rows: int, impl: str, seed: int = 11, data: str | None = None, schema: str | None = None,
          split_seed: int = 42) -> dict:
    """``tabpipe train``'s pipeline (shipped config, default candidates) or the usual recipe, same data.

    The recipe can also take a project's own rows and schema (``data``: a CSV, ``schema``: its schema.yaml),
    split with the project's ``run.seed`` (``split_seed``), as ``python -m benchmarks.quick`` runs it."""
    if impl == "recipe":
        from benchmarks import recipe
        from tabpipe.schema import load_schema

        df = pd.read_csv(data) if data else generate(rows, seed=seed)
        start = time.perf_counter()
        result = recipe.run(df, load_schema(schema or ROOT / "schema.yaml"), seed=split_seed)
        return {"seconds": time.perf_counter() - start, "stages": result.pop("seconds"), **result}
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline

    with tempfile.TemporaryDirectory() as tmp:
        config = _project(Path(tmp), rows, seed)
        start = time.perf_counter()
        run = TrainingPipeline(load_settings(config), environ=os.environ).run()
        seconds = time.perf_counter() - start
        record = run.record
    stages = {name: stage["seconds"] for name, stage in record["stages"].items()}
    return {"seconds": seconds, "stages": stages, "test_roc_auc": record.get("metrics", {}).get("roc_auc"),
            "status": record.get("status"),
            "configurations": record["stages"].get("trainer", {}).get("artifact", {}).get("configs_tried")}


def per_row(config: str, data: str, rows: int = 300, repeats: int = 5, own_rows: int = 100) -> dict:
    """Microseconds per record: the service's compiled scorer (schema check + compiled model; ``rows`` records,
    median of ``repeats``) vs the saved model's own ``predict_proba`` on a one-row DataFrame (the first
    ``own_rows`` of them, slower: median of ``repeats // 2``), records of ``data`` as JSON gives them."""
    import os

    from benchmarks.tree_scoring import per_row_us
    from tabpipe.config import load_settings
    from tabpipe.registry import open_registry
    from tabpipe.scoring.compiled import RecordScorer

    settings = load_settings(config)
    model, meta = open_registry(settings.pipeline.registry, os.environ, sign=False,
                                config_file=settings.config_path).load_model()
    scorer = RecordScorer(model)
    frame = pd.read_csv(data, nrows=rows)[model.schema.features]
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    records = [r for r in records if not any(p.hard for p in scorer.check(r)[1])]

    def compiled(record: dict) -> float:
        return float(scorer.proba([scorer.check(record)[0]])[0])

    def own(record: dict) -> float:
        return float(model.predict_proba(pd.DataFrame([record]))[0])

    for record in records[:20]:   # warm both paths
        compiled(record), own(record)
    fast = [per_row_us(compiled, records) for _ in range(repeats)]
    slow = [per_row_us(own, records[:own_rows]) for _ in range(max(1, repeats // 2))]
    diff = max(abs(compiled(r) - own(r)) for r in records[:own_rows])
    return {"compiled_us": float(np.median(fast)), "own_us": float(np.median(slow)), "records": len(records),
            "own_records": len(records[:own_rows]), "max_abs_diff": diff, "compiled_estimator": scorer.fast_estimator is not None,
            "version": meta["version"], "candidate": meta.get("candidate"),
            "estimator": type(model.estimator).__name__}


TASKS = {"resample": resample, "drift": drift, "train": train, "per_row": per_row}


if __name__ == "__main__":
    result = TASKS[sys.argv[1]](**json.loads(sys.argv[2]))
    print("RESULT " + json.dumps(result, default=str))

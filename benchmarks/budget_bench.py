"""Does the trainer keep ``training.time_budget_s`` on a large table with many categoricals?

    .venv/bin/python benchmarks/budget_bench.py --rows 300000 --categoricals 20 --budget 120 \
        [--resampling smote] [--repeats 3]

Generates ``--rows`` rows with the sample generator plus ``--categoricals`` random categorical
columns (5 to 200 levels, a few of them weakly informative), writes a project with the shipped
candidates (``config/model.yaml``), an inferred schema and the given resampling, runs
``TrainingPipeline`` and prints, per run and as medians: the trainer stage's seconds, the part the
budget covers (probe + folds + search), the final refit (reported apart, as the budget allows),
the search sample's rows, how the configurations stopped, the test ROC-AUC and the peak RSS of
the whole process tree (this process + workers, sampled every 0.2 s; shared pages counted per process).

``--categoricals 0 --resampling smote --rows 1000000`` is the 1M x 30 memory check of issue 10.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

import tabpipe  # noqa: F401  (sets OMP_WAIT_POLICY before scikit-learn loads)
from tabpipe.config import load_settings
from tabpipe.pipeline import TrainingPipeline
from tabpipe.sample_data import generate
from tabpipe.schema import infer_schema

ROOT = Path(__file__).resolve().parent.parent
TARGET = "fault_flag"


def wide_table(rows: int, categoricals: int, seed: int) -> pd.DataFrame:
    """The sample data plus random categorical columns; every fourth shifts the positive rate a little."""
    df = generate(rows, seed=seed)
    rng = np.random.default_rng(seed)
    for j in range(categoricals):
        levels = int(rng.integers(5, 200))
        codes = rng.integers(0, levels, size=rows)
        if j % 4 == 0:   # weakly informative: positives lean towards low codes
            codes = np.where(df[TARGET].to_numpy() == 1, codes // 2, codes)
        df[f"cat_{j:02d}"] = pd.Series(codes).map(lambda c: f"L{c}")
    return df


def project(tmp: Path, rows: int, categoricals: int, budget: float, resampling: str, seed: int) -> Path:
    df = wide_table(rows, categoricals, seed)
    data = tmp / "data.parquet"
    df.to_parquet(data, index=False)
    schema = infer_schema(df, TARGET, max_categories=250).model_dump(mode="json", exclude_defaults=True)
    (tmp / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    cfg = yaml.safe_load((ROOT / "config/pipeline.yaml").read_text())
    cfg["source"] = {"type": "file", "path": str(data)}
    cfg["schema"] = str(tmp / "schema.yaml")
    cfg["run"]["artifacts_dir"] = str(tmp / "artifacts")
    cfg["training"]["models"] = str(ROOT / "config/model.yaml")
    cfg["training"]["time_budget_s"] = budget
    cfg["transformation"]["resampling"] = resampling
    cfg["validation"]["drift"]["enabled"] = False
    cfg["evaluation"]["min_score"] = 0.0
    cfg["registry"] = {"backend": "local", "path": str(tmp / "registry")}
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class PeakRss:
    """Largest summed RSS of this process and all its descendants while running."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--categoricals", type=int, default=20)
    parser.add_argument("--budget", type=float, default=120)
    parser.add_argument("--resampling", default="smote", choices=["smotetomek", "smote", "none"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config = project(Path(tmp), args.rows, args.categoricals, args.budget, args.resampling, seed=i)
            with PeakRss() as rss:
                run = TrainingPipeline(load_settings(config)).run()
            stage = run.record["stages"]["trainer"]
            art = stage["artifact"]
            results = json.loads(Path(art["cv_results_path"]).read_text())
            runs.append({"trainer_s": stage["seconds"], "search_s": art["search_seconds"], "prep_s": art["prep_seconds"],
                         "refit_s": art["refit_seconds"], "search_rows": art["search_rows"], "stopped": art["stopped"],
                         "best": f"{art['best_candidate']} ({art['best_resampling']})",
                         "rungs": max(r["rung"] for r in results) + 1, "roc_auc": run.record["metrics"]["roc_auc"],
                         "peak_rss_gb": round(rss.peak / 2**30, 2),
                         "stages_s": {k: v["seconds"] for k, v in run.record["stages"].items()}})
            print(json.dumps(runs[-1]), flush=True)
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cores} cores, {mem:.0f} GB; "
          f"{args.rows} rows x ({16 + args.categoricals} features, {3 + args.categoricals} categorical), "
          f"resampling {args.resampling}, budget {args.budget:.0f}s, {args.repeats} run(s)\n")
    print("| median of runs | trainer stage s | budgeted part s (of which folds) | vs budget | final refit s | "
          "search rows | test ROC-AUC | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    med = {k: statistics.median(r[k] for r in runs) for k in ("trainer_s", "search_s", "prep_s", "refit_s",
                                                               "search_rows", "roc_auc", "peak_rss_gb")}
    print(f"| {len(runs)} | {med['trainer_s']:.1f} | {med['search_s']:.1f} ({med['prep_s']:.1f}) | "
          f"{med['search_s'] / args.budget:.2f} | {med['refit_s']:.1f} | {med['search_rows']:.0f} | "
          f"{med['roc_auc']:.4f} | {med['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()

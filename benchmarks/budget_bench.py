"""Does the trainer keep ``training.time_budget_s`` on a large table with many categoricals?

    .venv/bin/python benchmarks/budget_bench.py --rows 300000 --categoricals 20 --budget 120 \
        [--numerics 24] [--resampling smote] [--repeats 3]
    .venv/bin/python benchmarks/budget_bench.py --rows 300000 --categoricals 60 --numerics 24 --init

Generates ``--rows`` rows with the sample generator plus ``--categoricals`` random categorical
columns (5 to 200 levels, a few of them weakly informative, ~2 % missing) and ``--numerics``
random numeric columns (a few weakly informative, ~5 % missing), writes a project with the shipped
candidates (``config/model.yaml``), an inferred schema and the given resampling (or, with
``--init``, exactly the files ``tabpipe init`` writes: its budget, resampling and defaults), runs
``TrainingPipeline`` and prints, per run and as medians: the trainer stage's seconds, the part the
budget covers (probe + folds + search), the final refit (reported apart, as the budget allows),
the search sample's rows, how the configurations stopped, the test ROC-AUC and the peak RSS of
the whole process tree (this process + workers, sampled every 0.2 s; shared pages counted per process).

``--categoricals 0 --resampling smote --rows 1000000`` is the 1M x 30 memory check of issue 10.
"""
from __future__ import annotations

import argparse
import json
import logging
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

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.config import load_settings
from tabpipe.training.pipeline import TrainingPipeline
from tabpipe.registry.signing import write_keypair
from tabpipe.sources.sample import generate
from tabpipe.config.scaffold import scaffold
from tabpipe.schema import infer_schema

ROOT = Path(__file__).resolve().parent.parent
TARGET = "fault_flag"


def wide_table(rows: int, categoricals: int, seed: int, numerics: int = 0) -> pd.DataFrame:
    """The sample data plus random categorical and numeric columns; every fourth of each kind shifts
    the positive rate a little. Added columns from the second on hold some missing values."""
    df = generate(rows, seed=seed)
    rng = np.random.default_rng(seed)
    positive = df[TARGET].to_numpy() == 1
    added = {}
    for j in range(categoricals):
        levels = int(rng.integers(5, 200))
        codes = rng.integers(0, levels, size=rows)
        if j % 4 == 0:   # weakly informative: positives lean towards low codes
            codes = np.where(positive, codes // 2, codes)
        values = np.array([f"L{c}" for c in range(levels)], dtype=object)[codes]
        if j % 2:
            values[rng.random(rows) < 0.02] = None
        added[f"cat_{j:02d}"] = values
    for j in range(numerics):
        values = rng.normal(size=rows) * (1 + j % 5) + j
        if j % 4 == 0:   # weakly informative: positives shifted by a fifth of a standard deviation
            values = values + 0.2 * (1 + j % 5) * positive
        if j % 2:
            values[rng.random(rows) < 0.05] = np.nan
        added[f"num_{j:02d}"] = values.round(3)
    return pd.concat([df, pd.DataFrame(added)], axis=1)


def project(tmp: Path, rows: int, categoricals: int, budget: float, resampling: str, seed: int,
            numerics: int = 0, init: bool = False) -> Path:
    df = wide_table(rows, categoricals, seed, numerics)
    data = tmp / "data.parquet"
    df.to_parquet(data, index=False)
    private, public = write_keypair(tmp / "keys")      # signed registry, as shipped
    registry = {"backend": "local", "path": str(tmp / "registry"), "require_signature": True,
                "signing_key_file": str(private), "verify_key_file": str(public)}
    if init:   # the files `tabpipe init` writes, as they are (but for the registry's place and keys)
        path = scaffold(data, TARGET, tmp)[0]
        cfg = yaml.safe_load(path.read_text())
        cfg["registry"] = registry
        cfg["evaluation"]["min_score"] = 0.0
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path
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
    cfg["registry"] = registry
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class PeakRss(logging.Handler):
    """Largest summed RSS of this process and all its descendants while running, also per part of the run
    (``by_part``: the stages, the trainer's search and final refit apart, told apart by the run's log lines)."""

    def __init__(self):
        super().__init__()
        self.peak, self._stop = 0, threading.Event()
        self.part, self.by_part = "start", {}
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        msg = str(record.msg)
        if msg == "stage %s started":
            self.part = record.args[0]
        elif msg.startswith("search: %.1fs of"):   # the trainer's last line before the final refit
            self.part = "trainer: refit"

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
            self.by_part[self.part] = max(self.by_part.get(self.part, 0), total)
            time.sleep(0.2)

    def __enter__(self):
        logging.getLogger("tabpipe").addHandler(self)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        logging.getLogger("tabpipe").removeHandler(self)


def project_arguments(parser: argparse.ArgumentParser, numerics: int = 0, repeats: int = 1) -> None:
    """The options of ``project`` (rows, columns, budget, resampling, init) and ``--repeats``."""
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--categoricals", type=int, default=20)
    parser.add_argument("--numerics", type=int, default=numerics)
    parser.add_argument("--budget", type=float, default=120)
    parser.add_argument("--resampling", default="smote", choices=["smotetomek", "smote", "none"])
    parser.add_argument("--init", action="store_true",
                        help="the project `tabpipe init` writes (its budget and resampling; --budget/--resampling ignored)")
    parser.add_argument("--repeats", type=int, default=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    project_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config = project(Path(tmp), args.rows, args.categoricals, args.budget, args.resampling, seed=i,
                             numerics=args.numerics, init=args.init)
            settings = load_settings(config)
            budget = settings.pipeline.training.time_budget_s
            resampling = settings.pipeline.transformation.resampling
            with PeakRss() as rss:
                run = TrainingPipeline(settings, environ=os.environ).run()
            stage = run.record["stages"]["trainer"]
            art = stage["artifact"]
            results = json.loads(Path(art["cv_results_path"]).read_text())
            runs.append({"trainer_s": stage["seconds"], "search_s": art["search_seconds"], "prep_s": art["prep_seconds"],
                         "refit_s": art["refit_seconds"], "search_rows": art["search_rows"], "stopped": art["stopped"],
                         "best": f"{art['best_candidate']} ({art['best_resampling']})",
                         "rungs": max(r["rung"] for r in results) + 1, "roc_auc": run.record["metrics"]["roc_auc"],
                         "peak_rss_gb": round(rss.peak / 2**30, 2),
                         "peak_rss_gb_by_part": {k: round(v / 2**30, 2) for k, v in rss.by_part.items()},
                         "features": len(settings.schema_.features),
                         "width": len(run.record["stages"]["transformation"]["artifact"]["feature_names"]),
                         "stages_s": {k: v["seconds"] for k, v in run.record["stages"].items()}})
            print(json.dumps(runs[-1]), flush=True)
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cores} cores, {mem:.0f} GB, "
          f"load average {os.getloadavg()[0]:.1f}; {args.rows} rows x ({runs[-1]['features']} features, "
          f"{3 + args.categoricals} categorical; {runs[-1]['width']} columns after preprocessing), "
          f"resampling {resampling}, budget {budget:.0f}s{' (tabpipe init)' if args.init else ''}, "
          f"{args.repeats} run(s)\n")
    print("| median of runs | trainer stage s | budgeted part s (of which folds) | vs budget | final refit s | "
          "search rows | test ROC-AUC | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    med = {k: statistics.median(r[k] for r in runs) for k in ("trainer_s", "search_s", "prep_s", "refit_s",
                                                               "search_rows", "roc_auc", "peak_rss_gb")}
    print(f"| {len(runs)} | {med['trainer_s']:.1f} | {med['search_s']:.1f} ({med['prep_s']:.1f}) | "
          f"{med['search_s'] / budget:.2f} | {med['refit_s']:.1f} | {med['search_rows']:.0f} | "
          f"{med['roc_auc']:.4f} | {med['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()

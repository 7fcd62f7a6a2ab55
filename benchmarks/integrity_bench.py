"""What do the integrity checks before training cost, against a whole run, on a large table?

    .venv/bin/python -m benchmarks.integrity_bench --rows 300000 --categoricals 20 --numerics 24 \
        [--budget 120] [--repeats 3] [--init]

Builds the table and project of ``benchmarks/budget_bench.py`` (the sample data plus random categorical
and numeric columns; ``--init``: the files ``tabpipe init`` writes, with its 600 s budget), runs
``TrainingPipeline`` and prints, per run and as medians: the integrity checks' seconds (repeated
rows and leakage, from ``validation_report.json``), the validation stage's and the whole run's
seconds (every stage in run.json), and the checks' share of the run. The checks are also timed
alone, in this process, on the run's typed splits (``check_integrity``, ``--alone`` times each).
The goal of issue 22: at most 5 % of a run on 300,000 rows.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
import pandas as pd  # noqa: E402

from benchmarks.budget_bench import project, project_arguments  # noqa: E402
from tabpipe.config import load_settings  # noqa: E402
from tabpipe.schema import coerce_frame  # noqa: E402
from tabpipe.training.integrity import check_integrity  # noqa: E402
from tabpipe.training.pipeline import TrainingPipeline  # noqa: E402


def alone(settings, run_dir: Path, repeats: int) -> float:
    """Median seconds of ``check_integrity`` in this process on the run's splits, typed as the validation stage
    types them (``coerce_frame``: categories as object strings, as the stage hands them to the checks)."""
    folder = next(p for p in run_dir.iterdir() if p.name.endswith("_ingestion"))
    train, test = (coerce_frame(pd.read_parquet(folder / f"{name}.parquet"), settings.schema_, with_target=True)[0]
                   for name in ("train", "test"))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        check_integrity(train, test, settings.schema_, settings.pipeline.validation.integrity, settings.pipeline.run.seed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    project_arguments(parser, numerics=24, repeats=3)
    parser.add_argument("--alone", type=int, default=3, help="times the checks are timed alone per run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config = project(Path(tmp), args.rows, args.categoricals, args.budget, args.resampling, seed=i,
                             numerics=args.numerics, init=args.init)
            settings = load_settings(config)
            started = time.perf_counter()
            run = TrainingPipeline(settings, environ=os.environ).run()
            wall = time.perf_counter() - started
            stages = {k: v["seconds"] for k, v in run.record["stages"].items()}
            report = json.loads(Path(run.record["stages"]["validation"]["artifact"]["report_path"]).read_text())
            seconds = report["integrity"]["seconds"]
            checks = sum(seconds.values())
            runs.append({"checks_s": round(checks, 3), "duplicates_s": seconds["duplicates"],
                         "leakage_s": seconds.get("leakage"), "alone_s": round(alone(settings, run.dir, args.alone), 3),
                         "validation_s": stages["validation"], "run_s": round(wall, 1),
                         "share": round(checks / wall, 5), "stages_s": stages,
                         "features": len(settings.schema_.features), "train_rows": report["integrity"]["rows"]["train"],
                         "top_auc": next(iter(report["integrity"]["leakage"]["auc"].items()))})
            print(json.dumps(runs[-1]), flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in ("checks_s", "alone_s", "validation_s", "run_s", "share")}
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, {mem:.0f} GB, "
          f"load average {os.getloadavg()[0]:.1f}; {args.rows} rows x {runs[-1]['features']} features "
          f"({runs[-1]['train_rows']} training rows), budget {settings.pipeline.training.time_budget_s:.0f}s"
          f"{' (tabpipe init)' if args.init else ''}, {len(runs)} run(s)\n")
    print("| median of runs | integrity checks s (in the run) | alone s | validation stage s | whole run s | share |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(runs)} | {med['checks_s']:.2f} | {med['alone_s']:.2f} | {med['validation_s']:.1f} | "
          f"{med['run_s']:.0f} | {med['share']:.2%} |")


if __name__ == "__main__":
    main()

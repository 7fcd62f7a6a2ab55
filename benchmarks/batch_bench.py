"""Batch scoring in one command: ``tabpipe predict`` wall seconds and peak RSS at several row counts, and
optionally POST /predict/csv end to end (``python -m benchmarks.batch_bench``).

The project is made as ``benchmarks/quick.py`` makes it (``tabpipe data generate`` 20,000 rows, ``tabpipe init``,
``tabpipe train`` with a small budget), or reused with ``--project DIR`` (a folder holding pipeline.yaml and
data.csv, e.g. one this script made with ``--keep``). A short time budget on a busy machine can leave a lone
linear model; ``--ensemble`` publishes and promotes the kind of model ``tabpipe init``'s defaults train on an
idle machine, a ``WeightedMean`` of a ``LinearBoostingBlend`` (200-tree histogram gradient boosting) and a
``SplineLogisticRegression``, fitted on the same rows, so the figures are for that model.

Input files repeat the generated rows' feature columns up to each row count. Each ``tabpipe predict`` is its own
process: wall seconds from start to exit (imports and model loading included) and its peak RSS (``wait4``);
``--src`` measures another source tree (e.g. an older commit's ``src``, from ``git archive``) with the same
interpreter. Medians of ``--repeats`` runs; the machine's load average is printed, since a shared machine moves
these figures a lot.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.harness import ROOT, log
from benchmarks.quick import bench_project


def publish_ensemble(config: Path, data: Path) -> str:
    """Fit WeightedMean(LinearBoostingBlend(max_iter=200), SplineLogisticRegression) on ``data`` with the
    production model's fitted preprocessing; publish and promote it. Returns the new version."""
    import numpy as np

    from tabpipe.cli.common import open_registry_of
    from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
    from tabpipe.model.features import transform32
    from tabpipe.schema import positive_mask

    registry = open_registry_of(config, sign=True)
    model, meta = registry.load_model()
    rows = pd.read_csv(data)
    typed, problems = model.check(rows)
    ok = np.ones(len(rows), dtype=bool)
    for p in problems:
        if p.hard:
            ok[list(p.rows)] = False
    y = positive_mask(rows[model.schema.target.name], model.schema.target.positive).astype(int)[ok]
    X = transform32(model.preprocessor, typed[ok])
    blend = LinearBoostingBlend(max_iter=200, early_stopping=False, random_state=0).fit(X, y)
    spline = SplineLogisticRegression(C=0.6, n_knots=6).fit(X, y)
    model.estimator = WeightedMean.of_fitted([blend, spline], [0.5, 0.5])
    model.candidate = "ensemble(0.50 linear_boosting_blend + 0.50 spline_logistic_regression)"
    import dill

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(dill.dumps(model))
        files = {name: registry.fetch(meta["version"], name) for name in meta["files"] if name != "model.pkl"}
        metadata = {k: v for k, v in meta.items() if k not in ("version", "created_at", "files", "signature")}
        version = registry.publish({"model.pkl": path, **files}, {**metadata, "candidate": model.candidate})
    registry.promote(version)
    return version


def make_inputs(data: Path, features: list[str], counts: list[int], folder: Path) -> dict[int, Path]:
    """CSV files of ``count`` rows each: the generated rows' features, repeated."""
    base = pd.read_csv(data)[features]
    out = {}
    for count in counts:
        path = folder / f"rows_{count}.csv"
        if not path.exists():
            pd.concat([base] * (count // len(base) + 1), ignore_index=True).head(count).to_csv(path, index=False)
        out[count] = path
    return out


def predict_run(config: Path, input_path: Path, output: Path, src: Path) -> dict:
    """One ``tabpipe predict`` process: wall seconds, peak RSS (MB), exit code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    command = [sys.executable, "-m", "tabpipe.cli", "predict", "-i", str(input_path), "-o", str(output),
               "-c", str(config)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    error = proc.stderr.read().decode(errors="replace")[-2000:]
    proc.stderr.close()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"tabpipe predict failed ({proc.returncode}):\n{error}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "exit": proc.returncode}


def csv_runs(config: Path, input_path: Path, repeats: int, src: Path) -> list[float]:
    """End-to-end seconds of POST /predict/csv with ``input_path`` against ``tabpipe serve`` (shipped settings)."""
    from benchmarks.loadgen import csv_seconds, free_port, ready, stop

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)]), "GUNICORN_LOG_LEVEL": "warning"}
    server = ready(subprocess.Popen([sys.executable, "-m", "tabpipe.cli", "serve", "--config", str(config), "--port",
                                     str(port)], env=env, cwd=config.parent, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL), f"http://127.0.0.1:{port}/health")
    try:
        payload = input_path.read_bytes()
        csv_seconds(port, payload)          # warm up both workers' lazy imports
        csv_seconds(port, payload)
        return [csv_seconds(port, payload)[0] for _ in range(repeats)]
    finally:
        stop(server)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, help="a folder with pipeline.yaml and data.csv (default: make one)")
    ap.add_argument("--keep", type=Path, help="make the project in this folder and keep it")
    ap.add_argument("--ensemble", action="store_true", help="publish and promote the default-kind ensemble first")
    ap.add_argument("--train-budget", type=float, default=20)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv-rows", type=int, default=0, help="also time POST /predict/csv with this many rows")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tabpipe-batch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder, config = bench_project(args.project, args.keep, tmp, args.train_budget)
        data = folder / "data.csv"
        if args.ensemble:
            log(f"published and promoted {publish_ensemble(config, data)}")
        from tabpipe.cli.common import open_registry_of

        model, meta = open_registry_of(config).load_model()
        inputs = make_inputs(data, model.features, sorted(set(args.rows) | ({args.csv_rows} - {0})), folder)
        load_start = os.getloadavg()
        results: dict = {"model": {"version": meta["version"], "candidate": model.candidate,
                                   "estimator": type(model.estimator).__name__}, "src": str(args.src),
                         "predict": {}, "csv": None}
        runs: dict[int, list] = {n: [] for n in args.rows}
        for _ in range(args.repeats):           # interleaved, so a burst of load hits every size alike
            for n in args.rows:
                runs[n].append(predict_run(config, inputs[n], tmp / f"out_{n}.csv", args.src))
                log(f"tabpipe predict {n:,} rows: {runs[n][-1]['seconds']:.2f} s, {runs[n][-1]['peak_rss_mb']:.0f} MB")
        for n, rs in runs.items():
            results["predict"][n] = {"median_seconds": statistics.median(r["seconds"] for r in rs),
                                     "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                                     "runs": rs}
        if args.csv_rows:
            seconds = csv_runs(config, inputs[args.csv_rows], args.repeats, args.src)
            results["csv"] = {"rows": args.csv_rows, "median_seconds": statistics.median(seconds), "runs": seconds}
        results["load_average"] = {"start": load_start, "end": os.getloadavg()}
    print(json.dumps(results, indent=2, default=str))
    print(f"\nmodel {meta['version']} ({model.candidate}); src {args.src}; load average "
          f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end (a shared machine: medians of "
          f"{args.repeats})")
    for n, r in results["predict"].items():
        print(f"tabpipe predict {n:>9,} rows: {r['median_seconds']:6.2f} s, peak RSS {r['median_peak_rss_mb']:6.0f} MB")
    if results["csv"]:
        print(f"POST /predict/csv {args.csv_rows:,} rows: {results['csv']['median_seconds']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

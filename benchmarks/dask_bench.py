"""The search and partitioned scoring on Dask (``training.executor.type: dask``) against the local executor.

    .venv/bin/python benchmarks/dask_bench.py [--search-rows 20000] [--repeats 3] [--parts 20] \
        [--part-rows 500000] [--append docs/benchmarks-notebook.md]

1. Search: the same project (sample generator, ``--search-rows`` rows, 8 configurations, 3 folds, a
   budget large enough that nothing is stopped for time) trained with the local executor
   (``n_jobs: 2``) and on a ``distributed.LocalCluster`` of 1, 2 and 4 worker processes (one thread
   each, started before the run: its start-up is reported apart). Reported: the trainer's
   ``search_seconds`` (folds + successive halving), median of ``--repeats`` runs, and its ratio to
   the local executor's, plus whether every run chose the same configuration with the same CV score.
2. Scoring: ``--parts`` x ``--part-rows`` generated rows written as a hive-partitioned Parquet
   dataset (``part=00/…``), scored by ``tabpipe.scoring.partitions.score_dataset`` to a Parquet file, in a
   fresh process each time: in process, and on a LocalCluster of 2 workers (one task per file).
   Reported: seconds, rows/s, peak RSS of the scoring process and of each worker (``ru_maxrss``).

The machine has 2 cores and is shared with other jobs: timings are noisy, and more than 2 workers
can only add overhead here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.sources.sample import generate
from tabpipe.schema import infer_schema

TARGET = "fault_flag"
MODELS = {"candidates": [
    {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
     "search": {"C": {"log_uniform": [0.01, 10.0]}}, "n_iter": 3},
    {"name": "hgb", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
     "params": {"max_iter": 60, "early_stopping": False},
     "search": {"learning_rate": [0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31]}, "n_iter": 3},
    {"name": "forest", "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 40, "n_jobs": 1},
     "search": {"max_depth": [6, 10], "min_samples_leaf": [5, 20]}, "n_iter": 2},
]}


def keys_in_environment() -> None:
    """A throwaway registry keypair (publishing is signed by default)."""
    from tabpipe.registry.base import SIGNING_KEY_ENV, VERIFY_KEY_ENV
    from tabpipe.registry.signing import generate_keypair

    if SIGNING_KEY_ENV not in os.environ:
        signing, verify = (pem.decode() for pem in generate_keypair())
        os.environ[SIGNING_KEY_ENV], os.environ[VERIFY_KEY_ENV] = signing, verify


def project(root: Path, rows: int, executor: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data.parquet"
    if not data.exists():
        df = generate(rows, seed=3)
        df.to_parquet(data, index=False)
        schema = infer_schema(df, TARGET).model_dump(mode="json", exclude_defaults=True)
        (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
        (root / "model.yaml").write_text(yaml.safe_dump(MODELS, sort_keys=False))
    doc = {"source": {"type": "file", "path": "data.parquet"}, "schema": "schema.yaml",
           "run": {"artifacts_dir": "artifacts", "seed": 0}, "validation": {"drift": {"enabled": False}},
           "transformation": {"resampling": "smote"},
           "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 900, "n_jobs": 2,
                        "executor": executor},
           "registry": {"backend": "local", "path": str(root / "registry")}}
    path = root / f"pipeline_{executor.get('type', 'local')}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def train(config: Path) -> dict:
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline

    run = TrainingPipeline(load_settings(config), environ=os.environ).run()
    trainer = json.loads((run.dir / "run.json").read_text())["stages"]["trainer"]["artifact"]
    return {"search_s": trainer["search_seconds"], "best": (trainer["best_candidate"], trainer["best_params"]),
            "cv": trainer["cv_score"]}


def bench_search(work: Path, rows: int, repeats: int) -> list[dict]:
    from tabpipe.executors.dask import local_cluster

    rows_out = []
    setups = [("local (2 processes)", None)] + [(f"dask, {n} worker{'s' if n > 1 else ''}", n) for n in (1, 2, 4)]
    for name, workers in setups:
        started = 0.0
        if workers is None:
            config, cluster = project(work, rows, {"type": "local"}), None
        else:
            t0 = time.monotonic()
            cluster = local_cluster(workers)
            started = time.monotonic() - t0
            config = project(work, rows, {"type": "dask", "address": cluster.scheduler_address})
        try:
            runs = [train(config) for _ in range(repeats)]
        finally:
            if cluster is not None:
                cluster.close()
        rows_out.append({"setup": name, "search_s": statistics.median(r["search_s"] for r in runs),
                         "all_s": [r["search_s"] for r in runs], "cluster_start_s": round(started, 1),
                         "results": {(r["best"][0], json.dumps(r["best"][1], sort_keys=True), r["cv"]) for r in runs}})
        print(f"{name}: search {rows_out[-1]['all_s']}", flush=True)
    return rows_out


# --------------------------------------------------------------------------- scoring

def write_dataset(folder: Path, parts: int, part_rows: int) -> None:
    if (folder / "_done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(parts):
        df = generate(part_rows, seed=100 + i).drop(columns=[TARGET])
        where = folder / f"part={i:02d}"
        where.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), where / "data.parquet", row_group_size=100_000)
        print(f"wrote part {i + 1}/{parts}", flush=True)
    (folder / "_done").write_text("")


def score_child(config: str, folder: str, output: str, workers: int) -> None:
    """In a fresh process: score the folder, print seconds and peak RSS (MiB) of this process and each worker."""
    from tabpipe.scoring.partitions import score_dataset
    from tabpipe.registry import open_registry
    from tabpipe.config import load_settings

    settings = load_settings(Path(config), check_candidates=False)
    model, _ = open_registry(settings.pipeline.registry, os.environ, sign=False,
                             config_file=settings.config_path).load_model()
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (Linux: KiB)
    before = peak()
    t0 = time.monotonic()
    if workers == 0:
        result = score_dataset(model.use_all_cores(), Path(folder), Path(output))
        worker_peaks = []
    else:
        from distributed import Client

        from tabpipe.executors.dask import local_cluster

        with local_cluster(workers) as cluster:
            t0 = time.monotonic()
            result = score_dataset(model, Path(folder), Path(output), dask=True, dask_address=cluster.scheduler_address)
            seconds = time.monotonic() - t0
            with Client(cluster.scheduler_address) as client:
                worker_peaks = sorted(client.run(peak).values())
    seconds = time.monotonic() - t0 if workers == 0 else seconds
    print(json.dumps({"seconds": seconds, "rows": result.rows, "scored": result.scored, "main_peak_mib": peak(),
                      "main_before_mib": before, "worker_peaks_mib": worker_peaks}))


def bench_scoring(work: Path, parts: int, part_rows: int, config: Path) -> list[dict]:
    folder = work / "dataset"
    write_dataset(folder, parts, part_rows)
    out = []
    for name, workers in [("in process", 0), ("dask, 2 workers", 2)]:
        proc = subprocess.run([sys.executable, __file__, "--score-child", str(config), str(folder),
                               str(work / "scored.parquet"), str(workers)], capture_output=True, text=True,
                              env=os.environ)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append({"setup": name, **result})
        print(name, result, flush=True)
        (work / "scored.parquet").unlink(missing_ok=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--search-rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--part-rows", type=int, default=500_000)
    parser.add_argument("--work", type=Path, default=None, help="keep data here (reused by the next run)")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--append", type=Path, default=None)
    parser.add_argument("--score-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    keys_in_environment()
    if args.score_child:
        config, folder, output, workers = args.score_child
        score_child(config, folder, output, int(workers))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="dask-bench-"))
    shutil.rmtree(work / "search" / "registry", ignore_errors=True)   # signed with this run's throwaway key
    search = [] if args.skip_search else bench_search(work / "search", args.search_rows, args.repeats)
    config = project(work / "search", args.search_rows, {"type": "local"})
    if not list((work / "search" / "registry").glob("*")):
        train(config)
    scoring = bench_scoring(work, args.parts, args.part_rows, config)

    lines = [f"### Dask executor — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             "", f"`.venv/bin/python benchmarks/dask_bench.py {' '.join(sys.argv[1:])}` · {platform.node()} · "
             f"{os.cpu_count()} cores (shared with other jobs: noisy) · Python {platform.python_version()}", ""]
    if search:
        local = search[0]["search_s"]
        same = len({r for s in search for r in s["results"]}) == 1
        lines += [f"Search: {args.search_rows} rows, 8 configurations, 3 folds, median of {args.repeats} runs "
                  f"(every run chose the same configuration with the same CV score: {'yes' if same else 'NO'})", "",
                  "| executor | search s (median) | runs | vs local | cluster start s |", "|---|---|---|---|---|"]
        for s in search:
            lines.append(f"| {s['setup']} | {s['search_s']:.1f} | {', '.join(f'{v:.1f}' for v in s['all_s'])} | "
                         f"{s['search_s'] / local:.2f}x | {s['cluster_start_s'] or '-'} |")
        lines.append("")
    lines += [f"Scoring {args.parts} x {args.part_rows:,} rows (hive-partitioned Parquet, row groups of 100k) "
              "to one Parquet file:", "",
              "| where | seconds | rows/s | peak RSS main MiB | peak RSS per worker MiB |", "|---|---|---|---|---|"]
    for s in scoring:
        workers = ", ".join(f"{v:.0f}" for v in s["worker_peaks_mib"]) or "-"
        lines.append(f"| {s['setup']} | {s['seconds']:.1f} | {s['rows'] / s['seconds']:,.0f} | "
                     f"{s['main_peak_mib']:.0f} | {workers} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()

"""Peak memory of `tabpipe monitor --input FOLDER` on partitioned Parquet datasets of growing size.

    .venv/bin/python benchmarks/monitor_rss_bench.py [--rows 1000000 5000000] [--parts 20] [--repeats 3] \
        [--peer-max-rows 5000000] [--work DIR] [--append docs/benchmarks-notebook.md]

A project like ``make train``'s: the repository's schema.yaml, a histogram gradient boosting model
trained on 20,000 generated rows, evidently drift on with the shipped defaults (``max_rows`` and
``reference_rows`` 20,000). For each row count: ``--parts`` hive-partitioned Parquet files
(``part=00/…``, row groups of 100,000 rows) of generated rows drifted by ``shift=0.5``, with the
``fault_flag`` outcomes. Measured, each in a fresh process, median of ``--repeats`` runs:

- streamed: ``tabpipe monitor --config … --input FOLDER --labels fault_flag --json`` — the CLI itself, read a row
  group at a time (PSI counts, quality counts, probabilities and outcomes per row, a 20,000-row sample for evidently);
- peer, in the same run: the same monitoring run on the same rows held in memory as one table
  (``pd.concat`` of the partitions, then ``run_monitor`` on a ``Window``), which is what monitoring a single
  CSV file does (and what ``monitor --input`` did for any input before it read datasets a partition at a time).

Reported: peak RSS (``ru_maxrss`` of the measured process, MiB), seconds, and the peer's ratio. The
streamed run still keeps 10 bytes per row (probability float64, outcome known bool, outcome int8) for the
exact realised metrics and the label-free estimate: its peak may grow by about that (and the sorting
those metrics do), but not by the rows' columns.
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

REPO = Path(__file__).resolve().parents[1]
TABPIPE = Path(sys.executable).with_name("tabpipe")
TARGET = "fault_flag"
MODEL = {"candidates": [{"name": "hist_gradient_boosting", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                         "resampling": "none", "params": {"max_iter": 100, "learning_rate": 0.08, "max_leaf_nodes": 15}}]}


def keys_in_environment() -> None:
    """A throwaway registry keypair (publishing is signed by default)."""
    from tabpipe.registry.base import SIGNING_KEY_ENV, VERIFY_KEY_ENV
    from tabpipe.registry.signing import generate_keypair

    if SIGNING_KEY_ENV not in os.environ:
        signing, verify = (pem.decode() for pem in generate_keypair())
        os.environ[SIGNING_KEY_ENV], os.environ[VERIFY_KEY_ENV] = signing, verify


def project(root: Path) -> Path:
    """A trained project (see the module docstring); returns its pipeline.yaml."""
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline
    from tabpipe.sources.sample import generate

    shutil.rmtree(root, ignore_errors=True)    # its registry is signed with this run's throwaway key
    root.mkdir(parents=True)
    generate(20_000, seed=3).to_parquet(root / "data.parquet", index=False)
    shutil.copy(REPO / "schema.yaml", root / "schema.yaml")
    (root / "model.yaml").write_text(yaml.safe_dump(MODEL, sort_keys=False))
    config = root / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"type": "file", "path": "data.parquet"}, "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0},
        "validation": {"drift": {"enabled": True, "max_rows": 20_000, "reference_rows": 20_000}},
        "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 600, "n_jobs": 1},
        "registry": {"backend": "local", "path": "registry"}}, sort_keys=False))
    TrainingPipeline(load_settings(config), environ=os.environ).run()
    return config


def write_dataset(folder: Path, rows: int, parts: int) -> None:
    from tabpipe.sources.sample import generate

    if (folder / "_done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(parts):
        df = generate(rows // parts, seed=1000 + i, shift=0.5)
        where = folder / f"part={i:02d}"
        where.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), where / "data.parquet", row_group_size=100_000)
    (folder / "_done").write_text("")


def peak_child(argv: list[str]) -> None:
    """In a fresh process: run ``argv``, print its seconds and peak RSS (MiB; Linux ru_maxrss is KiB)."""
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if done.returncode not in (0, 3):
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout)
    print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "rows": result["window"]["rows"], "decision": result["decision"],
                      "roc_auc": result["metrics"]["realised"]["roc_auc"]}))


def in_memory(config: str, folder: str) -> None:
    """The peer (run by ``peak_child``): the whole dataset as one table, monitored in memory; prints the result."""
    from datetime import datetime, timezone

    import pandas as pd

    from tabpipe.cli.common import open_registry_of
    from tabpipe.config import load_settings
    from tabpipe.monitoring.monitor import MonitorSettings, run_monitor, window_from_file
    from tabpipe.drift.profile import read_profile
    from tabpipe.scoring.partitions import iter_partitions

    settings = load_settings(Path(config), check_candidates=False)
    registry = open_registry_of(Path(config))
    model, meta = registry.load_model()
    version = meta["version"]
    profile = read_profile(registry.fetch(version, "profile.json"))
    reference = pd.read_parquet(registry.fetch(version, "reference.parquet"))
    now = datetime.now(timezone.utc)
    window = window_from_file(pd.concat(iter_partitions(Path(folder)), ignore_index=True), "peer", TARGET, now)
    out = Path(tempfile.mkdtemp(prefix="monitor-peer-"))
    try:
        result = run_monitor(window, model=model, version=version, profile=profile, reference=reference, out_dir=out,
                             settings=MonitorSettings.from_settings(settings), now=now)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


def measure(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--peak-child", json.dumps(argv)], capture_output=True, text=True,
                          env=os.environ)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-max-rows", type=int, default=5_000_000, help="skip the in-memory peer above this size")
    ap.add_argument("--work", type=Path, default=None, help="keep the datasets here (reused by the next run)")
    ap.add_argument("--append", type=Path, default=None)
    ap.add_argument("--peak-child", help=argparse.SUPPRESS)
    ap.add_argument("--in-memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak_child:
        return peak_child(json.loads(args.peak_child))
    if args.in_memory:
        return in_memory(*args.in_memory)
    keys_in_environment()
    work = args.work or Path(tempfile.mkdtemp(prefix="monitor-rss-"))
    config = project(work / "project")
    results = []
    for rows in args.rows:
        folder = work / f"dataset-{rows}"
        write_dataset(folder, rows, args.parts)
        streamed = [str(TABPIPE), "monitor", "--config", str(config), "--input", str(folder), "--labels", TARGET,
                    "--json"]
        peer = [sys.executable, __file__, "--in-memory", str(config), str(folder)]
        runs = {"streamed": [], "in memory (peer)": []}
        for _ in range(args.repeats):   # interleaved, so both see the same load on the shared machine
            runs["streamed"].append(measure(streamed))
            if rows <= args.peer_max_rows:
                runs["in memory (peer)"].append(measure(peer))
            print(rows, {k: v[-1] for k, v in runs.items() if v}, flush=True)
        results.append((rows, runs))

    lines = [f"### `tabpipe monitor --input FOLDER`: peak memory by dataset size — "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"`.venv/bin/python benchmarks/monitor_rss_bench.py {' '.join(sys.argv[1:])}` · {platform.node()} · "
             f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB "
             f"(shared with other jobs: timings noisy) · Python {platform.python_version()}", "",
             f"{args.parts} hive-partitioned Parquet files of generated rows (shift 0.5, with outcomes), row groups of "
             "100,000; a histogram gradient boosting model; evidently on (20,000-row sample). Medians of "
             f"{args.repeats} runs, each in a fresh process; peak RSS is the process's ru_maxrss.", "",
             "| rows | how | peak RSS MiB (median) | runs MiB | seconds (median) | peer / streamed RSS |",
             "|---:|---|---:|---|---:|---:|"]
    for rows, runs in results:
        medians = {k: statistics.median(r["peak_mib"] for r in v) for k, v in runs.items() if v}
        for how, values in runs.items():
            if not values:
                continue
            ratio = f"{medians[how] / medians['streamed']:.1f}x" if how != "streamed" else ""
            each = ", ".join(f"{r['peak_mib']:.0f}" for r in values)
            lines.append(f"| {rows:,} | {how} | {medians[how]:.0f} | {each} | "
                         f"{statistics.median(r['seconds'] for r in values):.1f} | {ratio} |")
    same = {(r["decision"], round(r["roc_auc"], 9)) for _, runs in results[:1] for v in runs.values() for r in v}
    lines += ["", f"The streamed and in-memory runs of the first size agree on decision and realised ROC-AUC: "
              f"{'yes' if len(same) == 1 else 'NO ' + str(same)}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()

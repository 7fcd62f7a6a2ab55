"""Seconds to check logged rows against a frozen reference profile (PSI of every feature), by row count.

    .venv/bin/python benchmarks/monitor_bench.py [--rows 100000 1000000] [--repeats 5]

The rows: 30 features (24 numeric with ~2 % missing, 6 categorical with 5-40 levels and ~1 %
unseen values), already typed, as ``tabpipe monitor`` holds them after ``coerce_frame``. The
profile is built from 200,000 training rows (10 quantile bins). Measured: ``frame_psi`` (numpy
searchsorted + bincount; categorical: a hash lookup per value) — the target is <= 5 s for 1M rows.
Peer, in the same run: the same bins counted the usual pandas way (``pd.cut`` + ``value_counts``
per column). Also reported, for context: the schema check (``coerce_frame``) of the same rows,
which ``tabpipe monitor`` runs for the expectation-violation rates. Medians of ``--repeats`` runs.

``--full`` also times a whole monitoring run (``run_monitor``) on the same rows as logged rows
(probabilities given, outcomes for every row): schema check, quality rates, PSI, realised metrics,
the label-free estimate, governance, the 6-panel dashboard and HTML report, and the writes to a
fresh SQLite history store; evidently off (it is told to sample; its time does not grow with the
window). A logistic regression on the 30 features plays the model.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import tabpipe  # noqa: F401  (sets OMP_WAIT_POLICY before scikit-learn loads)
from tabpipe.monitoring.profile import build_profile
from tabpipe.monitoring.psi import frame_psi, psi
from tabpipe.schema import Schema, coerce_frame

N_NUMERIC, N_CATEGORICAL = 24, 6


def make_schema() -> Schema:
    columns = {f"n{i}": {"type": "float"} for i in range(N_NUMERIC)}
    columns.update({f"c{i}": {"type": "category"} for i in range(N_CATEGORICAL)})
    return Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": columns})


def make_rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(N_NUMERIC):
        x = rng.lognormal(0.0, 1.0, n) if i % 3 == 0 else rng.normal(shift * (i % 2), 1.0 + i / 10, n)
        x[rng.random(n) < 0.02] = np.nan
        data[f"n{i}"] = x
    for i in range(N_CATEGORICAL):
        levels = np.array([f"L{j}" for j in range(5 + 7 * i)] + ["unseen"], dtype=object)
        p = np.r_[np.full(len(levels) - 1, 0.99 / (len(levels) - 1)), 0.01 if shift else 0.0]
        data[f"c{i}"] = levels[rng.choice(len(levels), n, p=p / p.sum())]
    return pd.DataFrame(data)


def pandas_psi(profile_features: dict, frame: pd.DataFrame) -> dict:
    """The peer: the same buckets and formula, counted with pd.cut / value_counts."""
    out = {}
    for name, ref in profile_features.items():
        col = frame[name]
        if ref["kind"] == "numeric":
            bins = pd.cut(col, [-np.inf, *ref["edges"], np.inf], right=True)
            counts = bins.value_counts(sort=False).tolist() + [int(col.isna().sum())]
        else:
            known = col.where(col.isin(ref["categories"]) | col.isna(), "__other__")
            vc = known.value_counts(dropna=False)
            counts = [int(vc.get(c, 0)) for c in ref["categories"]] + [int(vc.get("__other__", 0)), int(col.isna().sum())]
        counts = np.asarray(counts, dtype=float)
        out[name] = psi(ref["shares"], counts / counts.sum())
    return out


def full_run_seconds(schema: Schema, train: pd.DataFrame, rows: pd.DataFrame, repeats: int, tmp: Path) -> float:
    """Median seconds of ``run_monitor`` over ``rows`` as a logged window (see the module docstring)."""
    from datetime import datetime, timezone

    from sklearn.linear_model import LogisticRegression

    from tabpipe.model import TabularModel
    from tabpipe.monitoring.monitor import MonitorSettings, Window, run_monitor
    from tabpipe.monitoring.store import HistoryStore
    from tabpipe.preprocessing import build_preprocessor

    rng = np.random.default_rng(2)
    fit_rows = train.iloc[:20_000]
    y_fit = (rng.random(len(fit_rows)) < 1 / (1 + np.exp(-(fit_rows["n1"].fillna(0).to_numpy() - 2)))).astype(int)
    pre = build_preprocessor(schema).fit(fit_rows)
    model = TabularModel(schema=schema, preprocessor=pre, estimator=LogisticRegression(max_iter=500).fit(
        pre.transform(fit_rows), y_fit), threshold=0.5, labels=(0, 1))
    y_test = (rng.random(2000) < 0.15).astype(int)
    profile = build_profile(train, schema, model.predict_proba(train.iloc[:2000]), y_test, 0.5)
    proba = model.predict_proba(rows)
    outcomes = pd.Series((rng.random(len(rows)) < proba).astype(int))
    now = datetime.now(timezone.utc)
    window = Window(rows, "bench", now, now, proba, outcomes)
    settings = MonitorSettings(evidently=False)
    times = []
    for i in range(repeats):
        store = HistoryStore.open(f"sqlite:///{tmp / f'history-{len(rows)}-{i}.sqlite'}")
        start = time.perf_counter()
        run_monitor(window, model=model, version="v0001", profile=profile, reference=None, out_dir=tmp / f"run-{len(rows)}-{i}",
                    settings=settings, store=store)
        times.append(time.perf_counter() - start)
        store.close()
    return statistics.median(times)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="also time whole monitoring runs (run_monitor)")
    args = ap.parse_args()
    schema = make_schema()
    train = make_rows(200_000, seed=0)
    profile = build_profile(train, schema, np.random.default_rng(0).random(1000), np.zeros(1000, int), 0.5)
    print(f"30 features ({N_NUMERIC} numeric, {N_CATEGORICAL} categorical); medians of {args.repeats} runs\n")
    print("| rows | tabpipe frame_psi (s) | pandas cut/value_counts (s) | speed-up | coerce_frame (s) |"
          + (" whole monitoring run (s) |" if args.full else ""))
    print("|---:|---:|---:|---:|---:|" + ("---:|" if args.full else ""))
    for n in args.rows:
        rows = make_rows(n, seed=1, shift=0.3)
        ours = frame_psi(profile["features"], rows)
        theirs = pandas_psi(profile["features"], rows)
        worst = max(abs(ours[k].value - theirs[k]) for k in theirs)
        assert worst < 1e-9, f"the two implementations disagree by {worst}"
        fast = median_seconds(lambda rows=rows: frame_psi(profile["features"], rows), args.repeats)
        slow = median_seconds(lambda rows=rows: pandas_psi(profile["features"], rows), args.repeats)
        check = median_seconds(lambda rows=rows: coerce_frame(rows, schema, with_target=False), max(1, args.repeats // 2))
        full = ""
        if args.full:
            with tempfile.TemporaryDirectory() as tmp:
                full = f" {full_run_seconds(schema, train, rows, max(1, args.repeats // 2), Path(tmp)):.2f} |"
        print(f"| {n:,} | {fast:.3f} | {slow:.3f} | {slow / fast:.1f}x | {check:.3f} |{full}")


if __name__ == "__main__":
    main()

"""Seconds to check logged rows against a frozen reference profile (PSI of every feature), by row count.

    .venv/bin/python benchmarks/monitor_bench.py [--rows 100000 1000000] [--repeats 5]

The rows: 30 features (24 numeric with ~2 % missing, 6 categorical with 5-40 levels and ~1 %
unseen values), already typed, as ``tabpipe monitor`` holds them after ``coerce_frame``. The
profile is built from 200,000 training rows (10 quantile bins). Measured: ``frame_psi`` (numpy
searchsorted + bincount; categorical: a hash lookup per value) — the target is <= 5 s for 1M rows.
Peer, in the same run: the same bins counted the usual pandas way (``pd.cut`` + ``value_counts``
per column). Also reported, for context: the schema check (``coerce_frame``) of the same rows,
which ``tabpipe monitor`` runs for the expectation-violation rates. Medians of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import statistics
import time

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
    args = ap.parse_args()
    schema = make_schema()
    train = make_rows(200_000, seed=0)
    profile = build_profile(train, schema, np.random.default_rng(0).random(1000), np.zeros(1000, int), 0.5)
    print(f"30 features ({N_NUMERIC} numeric, {N_CATEGORICAL} categorical); medians of {args.repeats} runs\n")
    print("| rows | tabpipe frame_psi (s) | pandas cut/value_counts (s) | speed-up | coerce_frame (s) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.rows:
        rows = make_rows(n, seed=1, shift=0.3)
        ours = frame_psi(profile["features"], rows)
        theirs = pandas_psi(profile["features"], rows)
        worst = max(abs(ours[k].value - theirs[k]) for k in theirs)
        assert worst < 1e-9, f"the two implementations disagree by {worst}"
        fast = median_seconds(lambda rows=rows: frame_psi(profile["features"], rows), args.repeats)
        slow = median_seconds(lambda rows=rows: pandas_psi(profile["features"], rows), args.repeats)
        check = median_seconds(lambda rows=rows: coerce_frame(rows, schema, with_target=False), max(1, args.repeats // 2))
        print(f"| {n:,} | {fast:.3f} | {slow:.3f} | {slow / fast:.1f}x | {check:.3f} |")


if __name__ == "__main__":
    main()

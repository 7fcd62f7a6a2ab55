"""Seconds of SMOTE vs SMOTETomek on the transformed sample data, by number of training rows.

    .venv/bin/python benchmarks/resample_bench.py [--rows 10000 20000 40000]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import tabpipe  # noqa: F401  (sets OMP_WAIT_POLICY before scikit-learn loads)
from tabpipe.components.transformation import split_xy
from tabpipe.preprocessing import build_preprocessor, resample
from tabpipe.sample_data import generate
from tabpipe.schema import coerce_frame, load_schema

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 20_000, 40_000])
    args = ap.parse_args()
    schema = load_schema(ROOT / "schema.yaml")
    print("| rows | smote (s) | smotetomek (s) |\n|---:|---:|---:|")
    for n in args.rows:
        typed, _ = coerce_frame(generate(n, seed=1), schema, with_target=True)
        X, y = split_xy(typed, schema)
        Xt = build_preprocessor(schema).fit_transform(X)
        seconds = []
        for kind in ("smote", "smotetomek"):
            start = time.perf_counter()
            resample(Xt, y, kind, 0)
            seconds.append(time.perf_counter() - start)
        print(f"| {n:,} | {seconds[0]:.2f} | {seconds[1]:.2f} |")


if __name__ == "__main__":
    main()

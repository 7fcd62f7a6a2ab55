"""Per-row cost of the compiled tree scorers (``tabpipe.scoring.compiled``) against the estimator's own
``predict_proba`` on one row, the call ``/predict`` would otherwise make for each record.

    .venv/bin/python benchmarks/tree_scoring.py [--rows 300] [--repeats 5]

Fits histogram gradient boosting and LightGBM (if installed) on a generated 5,000 x 30 table in two shapes (100
trees of 31 leaves; 400 trees of 4 leaves), then scores ``--rows`` rows one at a time both ways. Prints, per model,
the median over ``--repeats`` of the mean microseconds per row, the ratio, and the largest difference between
the two probabilities (the compiled path must equal the estimator's).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from tabpipe.scoring.compiled import _compile_estimator


def per_row_us(score, rows: np.ndarray) -> float:
    start = time.perf_counter()
    for r in rows:
        score(r)
    return (time.perf_counter() - start) / len(rows) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(5000, 20)), rng.integers(0, 2, (5000, 10))]).astype(np.float32)
    y = (X[:, 0] ** 2 + X[:, 1] * X[:, 20] - X[:, 2] + rng.normal(size=5000) > 1).astype(int)
    rows = X[: args.rows].astype(np.float64)
    models = {
        "HistGradientBoosting, 100 trees x 31 leaves": HistGradientBoostingClassifier(max_iter=100, random_state=0),
        "HistGradientBoosting, 400 trees x 4 leaves": HistGradientBoostingClassifier(
            max_iter=400, max_leaf_nodes=4, learning_rate=0.03, random_state=0),
    }
    try:
        from lightgbm import LGBMClassifier
        models["LightGBM, 100 trees x 31 leaves"] = LGBMClassifier(n_jobs=1, verbosity=-1, random_state=0)
        models["LightGBM, 400 trees x 4 leaves"] = LGBMClassifier(
            n_jobs=1, verbosity=-1, n_estimators=400, num_leaves=4, learning_rate=0.03, random_state=0)
    except ImportError:
        print("lightgbm is not installed: its rows are left out")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.rows} rows one at a time, "
          f"median of {args.repeats}\n")
    print("| model | compiled µs/row | own predict_proba µs/row | ratio | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for name, model in models.items():
        model.fit(X, y)
        compiled = _compile_estimator(model)

        def own(r, m=model):
            return m.predict_proba(r[None])[0, 1]
        fast = [per_row_us(compiled, rows) for _ in range(args.repeats)]
        slow = [per_row_us(own, rows) for _ in range(args.repeats)]
        diff = max(abs(compiled(r) - own(r)) for r in rows)
        f, s = statistics.median(fast), statistics.median(slow)
        print(f"| {name} | {f:.0f} | {s:.0f} | {s / f:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()

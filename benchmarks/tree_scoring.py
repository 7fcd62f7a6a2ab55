"""Per-row cost of the compiled scorer (``tabpipe.scoring.compiled``) against the model's own ``predict_proba``
on one row, the call ``/predict`` would otherwise make for each record.

    .venv/bin/python benchmarks/tree_scoring.py [--rows 300] [--repeats 5] [--own-rows 100] [--only records|trees]

``records``: ``RecordScorer`` on the bundled schema (``schema.yaml``), its preprocessing fitted as the trainer
fits it on 5,000 generated rows (``tabpipe.sources.sample.generate``), scoring ``--rows`` other generated
records (JSON-like dicts) one at a time, ``--own-rows`` of them through the model's own path, for four
estimators: the kind of ensemble ``tabpipe init``'s candidates give (a ``WeightedMean`` of a spline logistic
regression, two histogram gradient boosting models and a ``LinearBoostingBlend``), the largest ensemble
``training.ensemble_size: 10`` can pick from init's search space, histogram gradient boosting alone (200 trees
of 7 leaves) and a logistic regression. Columns: check + proba (what ``/predict`` runs per record) and its
parts (``check``, ``vector``, the compiled estimator), the ``TabularModel``'s own ``predict_proba`` on a
one-row frame, and the largest difference.

``trees``: histogram gradient boosting and LightGBM (if installed) on a generated 5,000 x 30 table in two shapes
(100 trees of 31 leaves; 400 trees of 4 leaves), the compiled estimator against ``predict_proba`` on one row.

Every figure is the median over ``--repeats`` of the mean microseconds per row.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from tabpipe.scoring.compiled import RecordScorer, compile_estimator

ROOT = Path(__file__).resolve().parent.parent


def per_row_us(score, rows) -> float:
    """Mean microseconds of ``score(row)`` over ``rows``."""
    start = time.perf_counter()
    for r in rows:
        score(r)
    return (time.perf_counter() - start) / len(rows) * 1e6


def _median_us(score, rows, repeats: int) -> float:
    return statistics.median(per_row_us(score, rows) for _ in range(repeats))


def record_models(train_rows: int = 5000) -> tuple[dict, list[dict]]:
    """The three TabularModels of the ``records`` table and the probe records (JSON-like dicts)."""
    from tabpipe.model import TabularModel
    from tabpipe.model.estimators import LinearBoostingBlend, SplineLogisticRegression, WeightedMean
    from tabpipe.model.features import build_preprocessor, fit_transform
    from tabpipe.schema import coerce_frame, load_schema
    from tabpipe.sources.sample import generate

    schema = load_schema(ROOT / "schema.yaml")
    typed, _ = coerce_frame(generate(train_rows, seed=11), schema, with_target=True)
    y = np.asarray(typed[schema.target.name]).astype(int)
    preprocessor = build_preprocessor(schema)
    (X,) = fit_transform(preprocessor, typed[schema.features])
    hgb = HistGradientBoostingClassifier(max_iter=200, max_leaf_nodes=7, learning_rate=0.05, min_samples_leaf=40,
                                         early_stopping=False, random_state=0).fit(X, y)
    members = [SplineLogisticRegression(n_knots=6).fit(X, y), hgb,
               HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, learning_rate=0.1, early_stopping=False,
                                              random_state=1).fit(X, y),
               LinearBoostingBlend(linear_weight=0.3, random_state=0).fit(X, y)]
    def boosting(trees: int, leaves: int, seed: int) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=trees, max_leaf_nodes=leaves, learning_rate=0.05,
                                              early_stopping=False, random_state=seed).fit(X, y)

    largest = [SplineLogisticRegression(n_knots=8).fit(X, y), SplineLogisticRegression(n_knots=4, C=0.1).fit(X, y),
               boosting(400, 31, 2), boosting(400, 15, 3), hgb, boosting(100, 4, 4),
               LinearBoostingBlend(linear_weight=0.5, random_state=5).fit(X, y),
               LinearBoostingBlend(linear_weight=0.7, random_state=6).fit(X, y),
               LogisticRegression(max_iter=2000).fit(X, y), LogisticRegression(C=0.05, max_iter=2000).fit(X, y)]
    estimators = {
        "ensemble: spline LR + HGB 200x7 + HGB 100x15 + blend (LR + HGB 100x15)":
            WeightedMean.of_fitted(members, [0.3, 0.3, 0.2, 0.2]),
        "largest ensemble of init's search space: 10 members, 1,300 trees of up to 31 leaves":
            WeightedMean.of_fitted(largest, [1.0] * len(largest)),
        "HistGradientBoosting, 200 trees x 7 leaves": hgb,
        "LogisticRegression": LogisticRegression(max_iter=2000).fit(X, y),
    }
    models = {name: TabularModel(schema=schema, preprocessor=preprocessor, estimator=est, threshold=0.5,
                                 labels=(0, 1), candidate=name) for name, est in estimators.items()}
    probe = generate(1000, seed=12)[schema.features]
    return models, json.loads(probe.to_json(orient="records", date_format="iso"))


def records_table(rows: int, repeats: int, own_rows: int = 100) -> None:
    """Prints the ``records`` table."""
    models, records = record_models()
    print("| model | check + proba µs/row | check | vector | estimator | own predict_proba µs/row (1-row frame) "
          "| ratio | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        scorer = RecordScorer(model)
        assert scorer.compiled, name
        probe = [r for r in records if not any(p.hard for p in scorer.check(r)[1])][:rows]
        values = [scorer.check(r)[0] for r in probe]
        vectors = [scorer.vector(v) for v in values]

        def compiled(record: dict, s=scorer) -> float:
            return float(s.proba([s.check(record)[0]])[0])

        def own(record: dict, m=model) -> float:
            return float(m.predict_proba(pd.DataFrame([record]))[0])

        for record in probe[:20]:   # warm both paths
            compiled(record), own(record)
        total = _median_us(compiled, probe, repeats)
        check = _median_us(scorer.check, probe, repeats)
        vector = _median_us(scorer.vector, values, repeats)
        estimator = _median_us(scorer.fast_estimator, vectors, repeats)
        slow = _median_us(own, probe[:own_rows], max(1, repeats // 2))
        diff = max(abs(compiled(r) - own(r)) for r in probe[:own_rows])
        print(f"| {name} | {total:.0f} | {check:.0f} | {vector:.0f} | {estimator:.0f} | {slow:,.0f} | "
              f"{slow / total:.0f}x | {diff:.1e} |")


def trees_table(rows: int, repeats: int) -> None:
    """Prints the ``trees`` table."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(5000, 20)), rng.integers(0, 2, (5000, 10))]).astype(np.float32)
    y = (X[:, 0] ** 2 + X[:, 1] * X[:, 20] - X[:, 2] + rng.normal(size=5000) > 1).astype(int)
    probe = X[:rows].astype(np.float64)
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
    print("| model | compiled µs/row | own predict_proba µs/row | ratio | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for name, model in models.items():
        model.fit(X, y)
        compiled = compile_estimator(model)

        def own(r, m=model):
            return m.predict_proba(r[None])[0, 1]
        fast = _median_us(compiled, probe, repeats)
        slow = _median_us(own, probe, repeats)
        diff = max(abs(compiled(r) - own(r)) for r in probe)
        print(f"| {name} | {fast:.0f} | {slow:.0f} | {slow / fast:.1f}x | {diff:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--own-rows", type=int, default=100, help="records timed through the model's own predict_proba")
    ap.add_argument("--only", choices=["records", "trees"])
    args = ap.parse_args()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.rows} rows one at a time, "
          f"median of {args.repeats}\n")
    if args.only in (None, "records"):
        records_table(args.rows, args.repeats, args.own_rows)
        print()
    if args.only in (None, "trees"):
        trees_table(args.rows, args.repeats)


if __name__ == "__main__":
    main()

"""Cost of per-row reasons (``explain``) against the plain request, in the same run.

    make train                                  # a production model must exist
    .venv/bin/python benchmarks/explain_bench.py [--config config/pipeline.yaml] [--repeats 3] [--requests 300]

1. server-side latency of one-row ``POST /predict`` through Flask's test client (in process, no network), the
   plain request and ``"explain": 3`` alternating in every repeat: p50 / p99 and the ratio of the p50s;
2. ``tabpipe predict``'s batch path (``score_rows``) on ``--batch-rows`` rows of the project's data, without and
   with ``explain=3``: seconds and rows/s;
3. per estimator kind (``benchmarks/tree_scoring.py``'s models: init's kind of ensemble, the largest ensemble,
   histogram gradient boosting alone, a logistic regression) the in-process cost per record of what ``/predict``
   runs (check + compiled proba) and of explaining it on top (``--kinds`` to run it; skipped with ``--no-kinds``).

Each figure is the median over ``--repeats`` runs. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.edge import prepare_process  # noqa: E402

prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.config import load_settings  # noqa: E402
from tabpipe.registry import open_registry  # noqa: E402
from tabpipe.scoring.explain import explainer_for  # noqa: E402
from tabpipe.serving.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def request_latencies(client, bodies: list[bytes], n: int) -> list[list[float]]:
    """Per body, n one-row POST /predict seconds, the bodies alternating request by request."""
    for body in bodies:                      # warm-up: the explainer is built on its first use
        for _ in range(30):
            client.post("/predict", data=body, content_type="application/json")
    times: list[list[float]] = [[] for _ in bodies]
    for _ in range(n):
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            resp = client.post("/predict", data=body, content_type="application/json")
            times[i].append(time.perf_counter() - t)
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return times


def kinds_table(repeats: int, rows: int) -> list[tuple[str, float, float]]:
    """(kind, us per record for check + proba, us per record for check + proba + explain 3) per estimator kind."""
    from benchmarks.tree_scoring import record_models
    from tabpipe.scoring.compiled import RecordScorer

    models, records = record_models()
    records = records[:rows]
    out = []
    for name, model in models.items():
        scorer = RecordScorer(model)
        explainer = explainer_for(model)

        def plain(record, scorer=scorer):
            values, _ = scorer.check(record)
            scorer.proba([values])

        def explained(record, scorer=scorer, explainer=explainer):
            values, _ = scorer.check(record)
            scorer.proba([values])
            explainer.explain(scorer.matrix([values])).entries(3, [record])

        for f in (plain, explained):
            for r in records[:20]:
                f(r)
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            for r in records:
                plain(r)
            a = (time.perf_counter() - t) / len(records) * 1e6
            t = time.perf_counter()
            for r in records:
                explained(r)
            runs.append((a, (time.perf_counter() - t) / len(records) * 1e6))
        out.append((name, statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "pipeline.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--kind-rows", type=int, default=200)
    parser.add_argument("--no-kinds", action="store_true")
    args = parser.parse_args()

    from tabpipe.scoring.batch import score_rows

    config = args.config.resolve()
    settings = load_settings(config)
    model, meta = open_registry(settings.pipeline.registry, os.environ, sign=False,
                                config_file=settings.config_path).load_model()
    features = model.schema.features
    data = pd.read_csv(settings.pipeline.source.path)[features]
    record = json.loads(json.dumps({k: (None if pd.isna(v) else v) for k, v in data.iloc[3].items()}, default=str))
    app = create_app(config)
    app.extensions["tabpipe"]["holder"].stop()
    client = app.test_client()
    bodies = [json.dumps(record).encode(), json.dumps({**record, "explain": 3}).encode()]
    p50s, p99s = [[], []], [[], []]
    for _ in range(args.repeats):
        times = request_latencies(client, bodies, args.requests)
        for i in (0, 1):
            p50s[i].append(np.percentile(times[i], 50) * 1e3)
            p99s[i].append(np.percentile(times[i], 99) * 1e3)
    frame = data[features].sample(n=min(args.batch_rows, len(data)), replace=len(data) < args.batch_rows,
                                  random_state=0).reset_index(drop=True)
    batch = [[], []]
    for _ in range(args.repeats):
        for i, k in enumerate((0, 3)):
            t = time.perf_counter()
            score_rows(model, frame, explain=k)
            batch[i].append(time.perf_counter() - t)
    med = statistics.median
    print(f"explain_bench on {platform.node()} ({platform.processor() or platform.machine()}), model "
          f"{meta['version']} ({model.candidate}), median of {args.repeats} runs; machine shared\n")
    print("| figure | plain | explain: 3 | ratio |\n|---|---|---|---|")
    print(f"| one-row /predict p50 (ms, Flask in process) | {med(p50s[0]):.2f} | {med(p50s[1]):.2f} | "
          f"{med(p50s[1]) / med(p50s[0]):.2f} |")
    print(f"| one-row /predict p99 (ms) | {med(p99s[0]):.2f} | {med(p99s[1]):.2f} | {med(p99s[1]) / med(p99s[0]):.2f} |")
    print(f"| score_rows {len(frame)} rows (s) | {med(batch[0]):.2f} | {med(batch[1]):.2f} | "
          f"{med(batch[1]) / med(batch[0]):.2f} |")
    if not args.no_kinds:
        print("\n| estimator | check + proba (us/record) | + explain 3 (us/record) | ratio |\n|---|---|---|---|")
        for name, plain, explained in kinds_table(args.repeats, args.kind_rows):
            print(f"| {name} | {plain:.0f} | {explained:.0f} | {explained / plain:.2f} |")


if __name__ == "__main__":
    main()

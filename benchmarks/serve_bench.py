"""Benchmark of the prediction service against the naive path, in the same run.

    make train                                  # a production model must exist
    .venv/bin/python benchmarks/serve_bench.py [--config config/pipeline.yaml] [--repeats 5]

Measures, for the service (``tabpipe.serving``) and the naive app (``benchmarks/naive_app.py``):
1. server-side latency of one-row POST /predict (Flask in process, no network): p50 / p99;
2. sustained requests/s of one-row POST /predict through gunicorn with the shipped settings,
   driven by ``wrk`` (Debian package) on loopback, on the same machine;
3. end-to-end seconds of POST /predict/csv with 100,000 rows through gunicorn;
and checks that the service's probabilities equal the saved model's ``predict_proba`` (max abs diff).
Each figure is the median over ``--repeats`` runs. Prints a Markdown table (docs/benchmarks-notebook.md keeps dated runs).

``--log-predictions`` also measures (1) for two in-process services built from the same config,
prediction log off and on (``monitoring.log_predictions``), alternating in every repeat, and prints
both p50s and their ratio. ``--latency-only`` skips the gunicorn/wrk/CSV figures (no ``wrk`` needed).
Logged rows go to a temporary SQLite history store (``TABPIPE_HISTORY_URL``), never to the registry's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.config import load_settings
from tabpipe.registry import open_registry
from tabpipe.serving.app import create_app

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from loadgen import csv_seconds, free_port, start_gunicorn, stop, wrk_rps  # noqa: E402
from naive_app import create_naive_app  # noqa: E402  (run as a script: benchmarks/ on sys.path)


def latency_ms(app, record: dict, n: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of one-row POST /predict through the Flask test client."""
    client, body = app.test_client(), json.dumps(record)
    for _ in range(50):
        client.post("/predict", data=body, content_type="application/json")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        resp = client.post("/predict", data=body, content_type="application/json")
        times.append(time.perf_counter() - t)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def start_server(target: str, config: Path, port: int) -> subprocess.Popen:
    """``target`` under gunicorn with the shipped settings, access log off, serving ``config``'s model."""
    env = {"TABPIPE_CONFIG": str(config), "PYTHONPATH": f"{ROOT / 'benchmarks'}:{os.environ.get('PYTHONPATH', '')}"}
    return start_gunicorn(target, port, env)


def config_variant(config: Path, log_predictions: bool) -> Path:
    """A copy of ``config`` (same folder, so relative paths still resolve) with the prediction log on/off."""
    import yaml

    doc = yaml.safe_load(config.read_text())
    doc["monitoring"] = {**(doc.get("monitoring") or {}), "log_predictions": log_predictions}
    path = config.with_name(f".{config.stem}.bench-log-{'on' if log_predictions else 'off'}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def print_logging_comparison(config: Path, record: dict, args) -> None:
    """p50/p99 of one-row /predict with the prediction log off and on, alternating, same process."""
    variants = {flag: config_variant(config, flag) for flag in (False, True)}
    try:
        apps = {flag: create_app(path) for flag, path in variants.items()}
    finally:
        for path in variants.values():
            path.unlink()
    for app in apps.values():
        app.extensions["tabpipe"]["holder"].stop()
    lat: dict[bool, list] = {False: [], True: []}
    for _ in range(args.repeats):
        for flag in (False, True):
            lat[flag].append(latency_ms(apps[flag], record, args.latency_requests))
    log = apps[True].extensions["tabpipe"]["prediction_log"]
    log.flush(60)
    stats = log.stats()
    med = statistics.median
    off, on = med(p for p, _ in lat[False]), med(p for p, _ in lat[True])
    print(f"\n### Prediction log overhead — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores; medians of {args.repeats} runs x {args.latency_requests} requests, "
          f"alternating; `{' '.join(['python'] + sys.argv)}`\n")
    print("| one-row POST /predict, server-side | log off | log on | on / off |")
    print("|---|---:|---:|---:|")
    print(f"| p50 (ms) | {off:.3f} | {on:.3f} | {on / off:.3f} |")
    p99_off, p99_on = med(p for _, p in lat[False]), med(p for _, p in lat[True])
    print(f"| p99 (ms) | {p99_off:.3f} | {p99_on:.3f} | {p99_on / p99_off:.3f} |")
    print(f"\nrows logged {stats['logged_rows']}, dropped {stats['dropped_rows']}, failed writes "
          f"{stats['failed_writes']} (SQLite history store, background writer)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config/pipeline.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latency-requests", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per repeat")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--csv-rows", type=int, default=100_000)
    ap.add_argument("--log-predictions", action="store_true",
                    help="also compare one-row /predict p50 with the prediction log off and on")
    ap.add_argument("--latency-only", action="store_true", help="only the in-process latency figures")
    args = ap.parse_args()
    if shutil.which("wrk") is None and not args.latency_only:
        sys.exit("wrk is needed for the throughput figures: apt-get install wrk (or pass --latency-only)")
    config = args.config.resolve()
    history = tempfile.TemporaryDirectory(prefix="tabpipe-bench-history-")
    os.environ["TABPIPE_HISTORY_URL"] = f"sqlite:///{history.name}/history.sqlite"  # also for the gunicorn servers
    settings = load_settings(config)
    model, meta = open_registry(settings.pipeline.registry, os.environ, sign=False,
                                config_file=settings.config_path).load_model()
    features = model.schema.features
    data = pd.read_csv(settings.pipeline.source.path)[features]
    record = {k: (None if pd.isna(v) else v) for k, v in data.iloc[3].items()}
    record = json.loads(json.dumps(record, default=str))

    fast_app, naive_app = create_app(config), create_naive_app(str(config))
    fast_app.extensions["tabpipe"]["holder"].stop()
    lat = {"service": [], "naive": []}
    for _ in range(args.repeats):
        lat["service"].append(latency_ms(fast_app, record, args.latency_requests))
        lat["naive"].append(latency_ms(naive_app, record, max(200, args.latency_requests // 10)))
    if args.log_predictions:
        print_logging_comparison(config, record, args)
    if args.latency_only:
        med = statistics.median
        print(f"\none-row POST /predict server-side p50: service {med(p for p, _ in lat['service']):.3f} ms, "
              f"naive {med(p for p, _ in lat['naive']):.3f} ms (medians of {args.repeats} runs)")
        return

    # equality of the fast path with the saved model, on 2,000 real rows
    sample = data.head(2000)
    body = json.loads(sample.to_json(orient="records"))
    got = fast_app.test_client().post("/predict", json={"records": body}).get_json()["predictions"]
    max_diff = float(np.max(np.abs(np.array([p["probability"] for p in got]) - model.predict_proba(sample))))

    big = pd.concat([data] * (args.csv_rows // len(data) + 1), ignore_index=True).head(args.csv_rows)
    payload = big.to_csv(index=False).encode()
    reference = model.predict_proba(big)
    ports = {"service": free_port(), "naive": free_port()}
    targets = {"service": "tabpipe.serving.app:create_app()", "naive": "naive_app:create_naive_app()"}
    servers: dict[str, subprocess.Popen] = {}
    rps = {k: [] for k in targets}
    csv = {k: [] for k in targets}
    csv_diff = 0.0
    try:
        for name, target in targets.items():
            servers[name] = start_server(target, config, ports[name])
        for _ in range(args.repeats):
            for name, port in ports.items():
                rps[name].append(wrk_rps(port, record, args.seconds, args.connections))
                seconds, scored = csv_seconds(port, payload)
                csv[name].append(seconds)
                if name == "service":
                    csv_diff = max(csv_diff, float(np.max(np.abs(scored["probability"].to_numpy() - reference))))
    finally:
        for proc in servers.values():
            stop(proc)

    med = statistics.median
    rows = [
        ("one-row POST /predict, server-side p50 (ms)", med(p for p, _ in lat["service"]), med(p for p, _ in lat["naive"])),
        ("one-row POST /predict, server-side p99 (ms)", med(p for _, p in lat["service"]), med(p for _, p in lat["naive"])),
        (f"one-row POST /predict through gunicorn, requests/s (wrk, {args.connections} conns)",
         med(r for r, _ in rps["service"]), med(r for r, _ in rps["naive"])),
        (f"POST /predict/csv, {args.csv_rows:,} rows, end-to-end (s)", med(csv["service"]), med(csv["naive"])),
    ]
    errors = {k: sum(b for _, b in v) for k, v in rps.items()}
    print(f"\n### Serving — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"model {meta['version']} ({meta.get('candidate')}), medians of {args.repeats} runs; "
          f"`{' '.join(['python'] + sys.argv)}`\n")
    print("| measure | tabpipe service | naive path | service advantage |")
    print("|---|---:|---:|---:|")
    for label, fast, naive in rows:
        ratio = naive / fast if "requests/s" not in label else fast / naive
        print(f"| {label} | {fast:.3f} | {naive:.3f} | {ratio:.1f}x |")
    print(f"\nnon-2xx responses under load: service {errors['service']}, naive {errors['naive']}; "
          f"max |service - model.predict_proba|: JSON {max_diff:.2e}, CSV {csv_diff:.2e}")


if __name__ == "__main__":
    main()

"""What the service's Prometheus metrics cost on one-row POST /predict (issue #19: <= 5 % of p50).

    .venv/bin/python -m benchmarks.metrics_cost --config PROJECT/pipeline.yaml [--repeats 5] [--seconds 5]
    .venv/bin/python -m benchmarks.metrics_cost --config PROJECT/pipeline.yaml --in-process [--repeats 3]

Two gunicorn servers with the shipped settings serve the same config's production model, one built with
metrics (``create_app()``, the default) and one without (``create_app(metrics=False)``: no ``/metrics``, no
per-request bookkeeping). ``wrk`` with one connection drives one-row POST /predict on each in turn,
alternating, ``--repeats`` times; prints the median p50 and p99 of each, the CPU seconds the server's
processes spent per request (less sensitive than latency to other load on a shared machine) and the ratios.
``--access-log`` keeps gunicorn's access log on (discarded), as ``tabpipe serve`` has it. Needs ``wrk``.

``--in-process`` resolves smaller differences on a busy machine: four apps in this process (built off, on,
on, off, so that build order favours neither; metrics values in a private multiprocess folder, as under
gunicorn) answer one-row POST /predict through Flask's test client in rotation, request by request;
prints, per block of ``--requests`` rounds, the median server-side latency of the "on" and "off" requests.
``--control`` builds all four without metrics (the difference is then the method's own noise).
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import psutil

from benchmarks.harness import child_env
from benchmarks.loadgen import free_port, start_gunicorn, stop, wrk
from tabpipe.config import load_settings
from tabpipe.registry import open_registry

TARGETS = {"metrics on": "tabpipe.serving.app:create_app()",
           "metrics off": "tabpipe.serving.app:create_app(metrics=False)"}


def one_record(config: Path) -> dict:
    """Row 3 of the config's source data, as a JSON client sends it (features only, missing values as null)."""
    settings = load_settings(config)
    model, _ = open_registry(settings.pipeline.registry, os.environ, sign=False,
                             config_file=settings.config_path).load_model()
    frame = pd.read_csv(settings.pipeline.source.path, nrows=4)[list(model.schema.features)]
    return json.loads(frame.iloc[[3]].to_json(orient="records"))[0]


def cpu_seconds(proc) -> float:
    """User + system CPU seconds of a server process and its workers so far."""
    total = 0.0
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def in_process(config: Path, record: dict, args) -> None:
    """Median test-client latency of one-row POST /predict, metrics on vs off, apps in rotation."""
    folder = tempfile.mkdtemp(prefix="tabpipe-metrics-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    from tabpipe.edge import prepare_process
    prepare_process()
    from tabpipe.serving.app import create_app   # after the folder is set: prometheus_client reads it on import

    built = [(name, create_app(config, metrics=flag and not args.control))
             for name, flag in (("off", False), ("on", True), ("on", True), ("off", False))]
    for _, app in built:
        app.extensions["tabpipe"]["holder"].stop()
    clients = [(name, app.test_client()) for name, app in built]
    body = json.dumps(record)

    def one(client) -> int:
        started = time.perf_counter_ns()
        resp = client.post("/predict", data=body, content_type="application/json")
        elapsed = time.perf_counter_ns() - started
        if resp.status_code != 200:
            sys.exit(f"POST /predict answered {resp.status_code}: {resp.get_data(as_text=True)[:300]}")
        return elapsed

    for _ in range(300):   # warm up
        for _, client in clients:
            one(client)
    print(f"### Metrics cost in process — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"load average {os.getloadavg()[0]:.2f}; `{' '.join(['python -m benchmarks.metrics_cost'] + sys.argv[1:])}`"
          f"{' (control: no metrics anywhere)' if args.control else ''}\n")
    print("| block | off p50 (us) | on p50 (us) | on - off (us) | on / off |")
    print("|---:|---:|---:|---:|---:|")
    deltas = []
    for block in range(args.repeats):
        times: dict[str, list[int]] = {"on": [], "off": []}
        for i in range(args.requests):
            for j in range(len(clients)):
                name, client = clients[(i + j) % len(clients)]
                times[name].append(one(client))
        on, off = (statistics.median(times[k]) / 1e3 for k in ("on", "off"))
        deltas.append(on - off)
        print(f"| {block + 1} | {off:.1f} | {on:.1f} | {on - off:+.1f} | {on / off:.3f} |", flush=True)
    print(f"\nmedian difference over {args.repeats} blocks of {args.requests} rounds: "
          f"{statistics.median(deltas):+.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5, help="wrk seconds per run")
    ap.add_argument("--access-log", action="store_true", help="keep gunicorn's access log on, as tabpipe serve does")
    ap.add_argument("--in-process", action="store_true", help="test-client apps in rotation instead of gunicorn + wrk")
    ap.add_argument("--requests", type=int, default=2500, help="--in-process: rounds (one request per app) per block")
    ap.add_argument("--control", action="store_true", help="--in-process: no metrics in any app (the method's noise)")
    args = ap.parse_args()
    if args.in_process:
        config = args.config.resolve()
        return in_process(config, one_record(config), args)
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (scripts/test_deps.sh installs it)")
    config = args.config.resolve()
    record = one_record(config)
    env = child_env(TABPIPE_CONFIG=str(config))
    ports = {name: free_port() for name in TARGETS}
    servers = {}
    runs: dict[str, list[dict]] = {name: [] for name in TARGETS}
    try:
        for name, target in TARGETS.items():
            servers[name] = start_gunicorn(target, ports[name], env, access_log=args.access_log)
        for port in ports.values():   # warm up: lazy imports, first connections
            wrk(f"http://127.0.0.1:{port}/predict", 2, 1, body=record)
        for _ in range(args.repeats):
            for name, port in ports.items():
                before = cpu_seconds(servers[name])
                run = wrk(f"http://127.0.0.1:{port}/predict", args.seconds, 1, body=record)
                run["cpu_us"] = (cpu_seconds(servers[name]) - before) / run["requests"] * 1e6
                if run["non_2xx"] or run["socket_errors"]:
                    sys.exit(f"{name}: {run['non_2xx']} non-2xx responses, {run['socket_errors']}")
                runs[name].append(run)
                print(f"{name}: p50 {run['p50_ms']:.3f} ms, p99 {run['p99_ms']:.3f} ms, "
                      f"server CPU {run['cpu_us']:.0f} us/request", file=sys.stderr)
    finally:
        for proc in servers.values():
            stop(proc)
    med = statistics.median
    p50 = {name: med(r["p50_ms"] for r in rs) for name, rs in runs.items()}
    p99 = {name: med(r["p99_ms"] for r in rs) for name, rs in runs.items()}
    cpu = {name: med(r["cpu_us"] for r in rs) for name, rs in runs.items()}
    print(f"\n### Metrics cost — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; medians of {args.repeats} runs of "
          f"wrk 1 connection x {args.seconds} s, alternating; access log {'on' if args.access_log else 'off'}; "
          f"`{' '.join(['python -m benchmarks.metrics_cost'] + sys.argv[1:])}`\n")
    print("| one-row POST /predict | metrics off | metrics on | on / off |")
    print("|---|---:|---:|---:|")
    for label, figures in (("p50 (ms)", p50), ("p99 (ms)", p99), ("server CPU per request (us)", cpu)):
        off, on = figures["metrics off"], figures["metrics on"]
        print(f"| {label} | {off:.3f} | {on:.3f} | {on / off:.3f} |")
    for key, unit in (("p50_ms", "p50 ms"), ("cpu_us", "server CPU us/request")):
        print(f"\nevery run ({unit}): " + "; ".join(f"{name}: " + ", ".join(f"{r[key]:.3f}" for r in rs)
                                                  for name, rs in runs.items()))


if __name__ == "__main__":
    main()

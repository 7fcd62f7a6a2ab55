"""``tabpipe stream`` end to end: rows/s from a Redis input stream through scoring to the output stream and the
prediction log (``python -m benchmarks.stream_bench``).

The project is made as ``benchmarks/quick.py`` makes it (``tabpipe data generate`` 20,000 rows, ``tabpipe init``,
``tabpipe train`` with a small budget), or reused with ``--project DIR``; ``monitoring.log_predictions`` is
switched on in a copy of its pipeline.yaml (every row logged, to a fresh history store per run: index in SQLite,
the log in the config's ``monitoring.log.format``, Parquet files by default).
A ``redis-server`` (Debian's) runs on a free port of 127.0.0.1 in a temp folder, without persistence.

For each message shape (``--rows-per-message``: 1 = one row per message, its columns as flat text fields;
k > 1 = a ``rows`` field holding a JSON array of k row objects) and each repeat: the input stream is emptied,
the producer fills it with ``--rows`` generated rows (not timed), then one ``tabpipe stream --until-idle``
process consumes it with micro-batches of about ``--batch-rows`` rows. Reported per run:

- steady rows/s: the rows of every output entry after the first batch's, divided by the time between the first
  and the last output entry (Redis entry ids are millisecond timestamps): scoring, log and output writes, acks;
- wall rows/s: all rows over the process's whole life (imports, model loading and the idle check included);
- rows per CPU second of the consumer process (user + system, its whole life): what it costs, less moved by
  other work on a shared machine than the rates (redis-server's own CPU time is not in it).

``--consumers N`` runs N consumer processes of the group together (their CPU seconds summed).

Medians of ``--repeats`` runs; the load average is printed, since a shared machine moves these figures a lot.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import ROOT, log, machine
from benchmarks.quick import bench_project


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """``redis-server`` on a free port, no persistence; (process, URL) once it answers."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def produce(client, records: list[dict], per_message: int) -> int:
    """The rows into ``tabpipe:rows`` in the chosen shape; returns the number of messages."""
    pipe = client.pipeline(transaction=False)
    messages = 0
    for start in range(0, len(records), per_message):
        if per_message == 1:
            pipe.xadd("tabpipe:rows", {k: "" if v is None else str(v) for k, v in records[start].items()})
        else:
            pipe.xadd("tabpipe:rows", {"rows": json.dumps(records[start:start + per_message])})
        messages += 1
        if messages % 5000 == 0:
            pipe.execute()
    pipe.execute()
    return messages


def stream_run(config: Path, url: str, history: Path, batch_size: int, src: Path, consumers: int = 1) -> dict:
    """``consumers`` ``tabpipe stream --until-idle`` processes of one group, started together: wall seconds until
    the last exits, their CPU seconds and largest peak RSS (MB), the last one's status line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)]), "TABPIPE_REDIS_URL": url,
           "TABPIPE_HISTORY_URL": f"sqlite:///{history}"}
    command = [sys.executable, "-m", "tabpipe.cli", "stream", "-c", str(config), "--until-idle", "--batch-size",
               str(batch_size), "--block-ms", "300"]
    started = time.perf_counter()
    procs = [subprocess.Popen(command, env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(consumers)]
    cpu = rss = 0.0
    status = ""
    for proc in procs:
        _, code, usage = os.wait4(proc.pid, 0)
        stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
        if os.waitstatus_to_exitcode(code) != 0:
            raise SystemExit(f"tabpipe stream failed:\n{stdout[-2000:]}\n{stderr[-3000:]}")
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
        status = stdout.strip().splitlines()[-1]
    return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu, "peak_rss_mb": rss, "status": status}


def steady_rate(client) -> tuple[float, int]:
    """(rows/s between the first and the last output entry, rows in the output)."""
    entries = client.xrange("tabpipe:scores")
    stamps = [int(entry_id.split(b"-")[0]) for entry_id, _ in entries]
    rows = [len(json.loads(fields[b"results"])) for _, fields in entries]
    first_batch = sum(r for s, r in zip(stamps, rows) if s == stamps[0])
    span = (stamps[-1] - stamps[0]) / 1000
    return ((sum(rows) - first_batch) / span if span > 0 else float("nan")), sum(rows)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stream_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, help="a folder with pipeline.yaml and data.csv (default: make one)")
    ap.add_argument("--keep", type=Path, help="make the project in this folder and keep it")
    ap.add_argument("--train-budget", type=float, default=20)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rows-per-message", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--batch-rows", type=int, default=2000, help="rows per micro-batch (messages per read = "
                    "this / rows per message)")
    ap.add_argument("--consumers", type=int, default=1, help="consumer processes of the group, run together")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    args = ap.parse_args()
    import pandas as pd
    import redis

    with tempfile.TemporaryDirectory(prefix="tabpipe-stream-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder, base = bench_project(args.project, args.keep, tmp, args.train_budget)
        doc = yaml.safe_load(base.read_text())
        doc.setdefault("monitoring", {})["log_predictions"] = True
        config = base.with_name("pipeline.stream-bench.yaml")   # beside the original: its relative paths hold
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        from tabpipe.cli.common import open_registry_of

        model, meta = open_registry_of(config).load_model()
        data = pd.read_csv(folder / "data.csv")[model.features]
        frame = pd.concat([data] * (args.rows // len(data) + 1), ignore_index=True).head(args.rows)
        frame = frame.astype(object).where(frame.notna(), None)
        records = frame.to_dict("records")
        server, url = start_redis(tmp)
        client = redis.Redis.from_url(url)
        load_start = os.getloadavg()
        results: dict = {"model": {"version": meta["version"], "candidate": model.candidate}, "rows": args.rows,
                         "shapes": {}}
        try:
            for per_message in args.rows_per_message:
                runs = []
                for repeat in range(args.repeats):
                    client.flushdb()
                    messages = produce(client, records, per_message)
                    history = tmp / f"history-{per_message}-{repeat}.sqlite"
                    run = stream_run(config, url, history, max(1, args.batch_rows // per_message), args.src,
                                     args.consumers)
                    run["steady_rows_per_s"], out_rows = steady_rate(client)
                    run["wall_rows_per_s"] = args.rows / run["seconds"]
                    run["rows_per_cpu_s"] = args.rows / run["cpu_seconds"]
                    if out_rows != args.rows:
                        raise SystemExit(f"{out_rows} rows in the output, {args.rows} sent: {run['status']}")
                    runs.append(run)
                    history.unlink()
                    log(f"{per_message} row(s)/message, {messages:,} messages: steady {run['steady_rows_per_s']:,.0f} "
                        f"rows/s, wall {run['seconds']:.1f} s ({run['wall_rows_per_s']:,.0f} rows/s), "
                        f"{run['rows_per_cpu_s']:,.0f} rows per CPU s, peak RSS {run['peak_rss_mb']:.0f} MB")
                results["shapes"][per_message] = {
                    "messages": messages, "batch_size": max(1, args.batch_rows // per_message),
                    "median_steady_rows_per_s": statistics.median(r["steady_rows_per_s"] for r in runs),
                    "median_wall_rows_per_s": statistics.median(r["wall_rows_per_s"] for r in runs),
                    "median_rows_per_cpu_s": statistics.median(r["rows_per_cpu_s"] for r in runs), "runs": runs}
        finally:
            server.terminate()
            server.wait(10)
        results["load_average"] = {"start": load_start, "end": os.getloadavg()}
    print(json.dumps(results, indent=2, default=str))
    print(f"\n{machine()}; model {meta['version']} ({model.candidate}); {args.rows:,} rows, every row logged (history "
          f"index in SQLite, log format as the project's config), {args.consumers} consumer process(es); "
          f"load average {load_start[0]:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end (a shared machine: medians of {args.repeats})")
    for per_message, r in results["shapes"].items():
        print(f"tabpipe stream, {per_message:>3} row(s) per message (batch {r['batch_size']} messages): steady "
              f"{r['median_steady_rows_per_s']:>9,.0f} rows/s, wall {r['median_wall_rows_per_s']:>9,.0f} rows/s, "
              f"{r['median_rows_per_cpu_s']:>9,.0f} rows per consumer CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds until a training read gives up on a broken source, with the shipped default timeouts.

    .venv/bin/python benchmarks/source_outages.py [--repeats 3] [--cap 60] [--skip-slow]

For each outage, the median of ``--repeats`` runs of ``read_source`` (the call ``tabpipe train``
makes), the nominal time the defaults add up to (timeouts + backoff, without connection set-up
overhead), and a peer: one read of the same outage with the drivers' own defaults (pymongo: 30 s
server selection, no socket timeout; libpq: no connect or statement timeout), abandoned after
``--cap`` seconds. The servers are on loopback:
nothing listening (down), a TCP server that accepts and never answers (hung), a wire-protocol fake
whose cursor stalls after its first batch, and a private PostgreSQL cluster (tests/pg_server.py).
``--skip-slow`` leaves out the stalled cursor (its default socket timeout is 120 s).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fault_servers import stalled_tcp_server, stalling_mongo  # noqa: E402
from pg_server import free_port, postgres_server  # noqa: E402

from tabpipe.sources import MongoSource, SqlSource, read_source  # noqa: E402


def timed(fn: Callable[[], object], cap: float) -> tuple[float | None, str]:
    """Seconds until ``fn`` raised or returned (None if still running after ``cap``), and what it raised."""
    box: dict = {}

    def target() -> None:
        try:
            fn()
            box["outcome"] = "returned"
        except Exception as exc:  # noqa: BLE001 — a benchmark reports whatever ended the read
            box["outcome"] = f"{type(exc).__name__}: {str(exc)[:90]}"

    start = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(cap)
    if thread.is_alive():
        return None, f"still waiting after {cap:g} s (abandoned)"
    return time.perf_counter() - start, box["outcome"]


def mongo(uri: str) -> Callable[[], object]:
    os.environ["TABPIPE_BENCH_URI"] = uri
    cfg = MongoSource(type="mongodb", uri_env="TABPIPE_BENCH_URI", database="shop", collection="orders", batch_size=3)
    return lambda: read_source(cfg, Path("."), mongo_client_factory=MongoClient, environ=os.environ)


def mongo_without_timeouts(uri: str) -> Callable[[], object]:
    """The read as pymongo does it by default: no socket timeout, 30 s server selection, no retry loop."""
    def read() -> object:
        client = MongoClient(uri)
        try:
            return list(client["shop"]["orders"].find({}, batch_size=3))
        finally:
            client.close()
    return read


def sql(url: str, **options) -> Callable[[], object]:
    cfg = SqlSource(type="sql", url=url, query="SELECT pg_sleep(3600) AS slept", **options)
    return lambda: read_source(cfg, Path("."), environ=os.environ)


def sql_without_timeouts(url: str) -> Callable[[], object]:
    def read() -> object:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.text("SELECT pg_sleep(3600)")).all()
        finally:
            engine.dispose()
    return read


def kill_postmaster_soon(data_dir: Path, after_s: float) -> None:
    def kill() -> None:
        time.sleep(after_s)
        os.kill(int((data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    threading.Thread(target=kill, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cap", type=float, default=60.0, help="seconds after which a read is abandoned")
    ap.add_argument("--skip-slow", action="store_true")
    args = ap.parse_args()
    defaults = MongoSource(type="mongodb", database="d", collection="c")
    backoff = sum(defaults.retry_backoff_s * 2**i for i in range(defaults.max_retries))
    mongo_bound = (defaults.max_retries + 1) * defaults.timeout_ms / 1000 + backoff
    rows: list[tuple[str, str, str, str]] = []

    def measure(name: str, bound: str, run: Callable[[], tuple[Callable[[], object], Callable[[], object]]],
                repeats: int, cap: float) -> None:
        times, outcome, peer_outcome = [], "", ""
        for _ in range(repeats):
            ours, _ = run()
            seconds, outcome = timed(ours, cap=10 * 60)
            times.append(seconds)
        _, peer = run()
        peer_seconds, peer_outcome = timed(peer, cap=cap)
        median = statistics.median(t for t in times if t is not None) if all(times) else None
        shown = f"{median:.2f}" if median is not None else "no answer"
        peer_shown = f"{peer_seconds:.2f}" if peer_seconds is not None else f"> {cap:g} (abandoned)"
        rows.append((name, f"{shown} (n={repeats})", bound, peer_shown))
        print(f"{name}: {shown} s; peer {peer_shown}\n  ours: {outcome}\n  peer: {peer_outcome}", flush=True)

    with stalled_tcp_server() as hung:
        uri = f"mongodb://127.0.0.1:{hung.port}/"
        measure("MongoDB host hung (accepts, never answers)", f"{mongo_bound:g}",
                lambda: (mongo(uri), mongo_without_timeouts(uri)), args.repeats, args.cap)
    down = f"mongodb://127.0.0.1:{free_port()}/"
    measure("MongoDB down (connection refused)", f"{mongo_bound:g}",
            lambda: (mongo(down), mongo_without_timeouts(down)), args.repeats, args.cap)
    if not args.skip_slow:
        with stalling_mongo() as stalled:
            uri = f"mongodb://127.0.0.1:{stalled.port}/"
            measure("MongoDB cursor stalled after its first batch",
                    f"{defaults.socket_timeout_ms / 1000:g} (one attempt: the retry window has closed)",
                    lambda: (mongo(uri), mongo_without_timeouts(uri)), 1, args.cap)
    sql_defaults = SqlSource(type="sql", url_env="X", query="q")
    with stalled_tcp_server() as hung:
        url = f"postgresql+psycopg://tabpipe@127.0.0.1:{hung.port}/postgres"
        measure("PostgreSQL host hung", f"{sql_defaults.connect_timeout_s}",
                lambda: (sql(url), sql_without_timeouts(url)), args.repeats, args.cap)
    with postgres_server() as server:
        measure("PostgreSQL slow query, statement_timeout_s: 2", "2",
                lambda: (sql(server.url, statement_timeout_s=2), sql_without_timeouts(server.url)),
                args.repeats, args.cap)
    times = []
    for _ in range(args.repeats):  # a fresh cluster each time; its postmaster is SIGKILLed 1 s into the query
        with postgres_server() as server:
            kill_postmaster_soon(server.data_dir, 1.0)
            seconds, outcome = timed(sql(server.url), cap=120)
            times.append(seconds - 1.0 if seconds is not None else None)
    shown = f"{statistics.median(times):.2f}" if all(t is not None for t in times) else "no answer"
    rows.append(("PostgreSQL server killed mid-query (SIGKILL)", f"{shown} after the kill (n={args.repeats})",
                 "-", "(the driver notices too)"))
    print(f"PostgreSQL killed: {shown} s after the kill\n  ours: {outcome}", flush=True)
    print("\n| outage | tabpipe gives up after (s, median) | nominal from defaults (s) | drivers' defaults (s) |")
    print("|---|---:|---:|---:|")
    for name, ours, bound, peer in rows:
        print(f"| {name} | {ours} | {bound} | {peer} |")


if __name__ == "__main__":
    main()

"""HTTP load for the serving benchmarks: gunicorn servers on loopback, ``wrk`` (Debian package) and a CSV upload.

Used by ``benchmarks/serve_bench.py`` (service vs the naive app) and ``python -m benchmarks.quick`` (service vs
a bare Flask echo app, ``benchmarks/bare_app.py``, under the same gunicorn settings).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"   # the shipped settings (re-exports tabpipe's gunicorn_conf)

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, method: str = "GET", timeout: float = 90) -> None:
    """Wait until ``url`` answers (any status); fail if ``proc`` exits or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with {proc.returncode}")
        try:
            requests.request(method, url, json={} if method == "POST" else None, timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_gunicorn(target: str, port: int, env: dict | None = None, probe: str = "/predict",
                   method: str = "POST", access_log: bool = False) -> subprocess.Popen:
    """gunicorn with the shipped settings (``gunicorn.conf.py``) serving ``target`` on 127.0.0.1:``port``.

    ``access_log``: keep the shipped access log (one line per request on stdout, discarded here) instead of
    turning it off; ``tabpipe serve`` keeps it."""
    env = {**os.environ, "GUNICORN_LOG_LEVEL": "warning", **(env or {})}
    quiet = [] if access_log else ["--access-logfile", "/dev/null"]
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind",
                             f"127.0.0.1:{port}", *quiet, target], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ready(proc, f"http://127.0.0.1:{port}{probe}", method)


def ready(proc: subprocess.Popen, url: str, method: str = "GET") -> subprocess.Popen:
    """``proc`` once ``url`` answers; the process is stopped if it never does."""
    try:
        wait_http(url, proc, method)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server (gunicorn: graceful), kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, seconds: float, connections: int, threads: int = 2, body: dict | None = None) -> dict:
    """One ``wrk --latency`` run: requests/s, p50 and p99 milliseconds, requests and non-2xx responses.

    With ``body``, every request is a POST of that JSON; otherwise a GET."""
    script = None
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if body is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write(LUA % json.dumps(body))
        script = fh.name
        cmd += ["-s", script]
    try:
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    finally:
        if script:
            os.unlink(script)
    percentiles = {p: float(v) * _UNITS[u]
                   for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": percentiles.get("50"), "p99_ms": percentiles.get("99"),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(0) if errors else None}


def wrk_rps(port: int, record: dict, seconds: int, connections: int) -> tuple[float, int]:
    """(requests/s, non-2xx count) from wrk (2 threads) driving one-row POST /predict."""
    run = wrk(f"http://127.0.0.1:{port}/predict", seconds, connections, body=record)
    return run["rps"], run["non_2xx"]


def csv_seconds(port: int, payload: bytes) -> tuple[float, pd.DataFrame]:
    """End-to-end seconds of POST /predict/csv with ``payload``, and the CSV it answered."""
    t = time.perf_counter()
    resp = requests.post(f"http://127.0.0.1:{port}/predict/csv", files={"file": ("rows.csv", payload, "text/csv")},
                         timeout=300)
    elapsed = time.perf_counter() - t
    resp.raise_for_status()
    return elapsed, pd.read_csv(pd.io.common.BytesIO(resp.content))

"""What every benchmark run shares: one measured task per child process (peak RSS of its whole tree),
the machine and commit a figure was measured on, medians and progress lines.

Used by ``python -m benchmarks`` (the full runs) and ``python -m benchmarks.quick`` (``make bench-quick``).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict:
    """The environment of a benchmark child: ``src`` and the repository root first on PYTHONPATH."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_tree(proc: psutil.Process) -> None:
    """Kill a process and all its descendants."""
    for p in [*proc.children(recursive=True), proc]:
        try:
            p.kill()
        except psutil.Error:
            pass


def measure(task: str, timeout: float | None = None, **args) -> dict:
    """Run ``benchmarks.task`` in a child process; its RESULT plus the tree's peak RSS (MB) and wall seconds.

    With ``timeout``, a run still going after that many seconds is killed (with its workers) and reported as
    ``{"timed_out": True, "seconds": timeout}``: a lower bound, never a result."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.task", task, json.dumps(args)], cwd=ROOT,
                             env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, proc, done = 0, psutil.Process(child.pid), threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(proc))
            except psutil.Error:
                return
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        child.communicate()
        done.set()
        sampler.join()
        return {"timed_out": True, "seconds": float(timeout), "peak_rss_mb": peak / 2**20,
                "wall": time.perf_counter() - start}
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"benchmark task {task} {args} failed (exit {child.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
    return {**result, "peak_rss_mb": peak / 2**20, "wall": time.perf_counter() - start}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Host, cores, memory, CPU model, Python and the load average when asked."""
    return {"host": platform.node(), "nproc": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": cpu_model(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine() -> str:
    """One line on the machine, for a benchmark's header."""
    m = machine_info()
    return (f"{m['host']}, {m['nproc']} cores, {m['memory_gib']:.0f} GiB RAM, Python {m['python']}, "
            f"load average at start {m['load_average'][0]:.1f}")


def git_commit() -> str:
    """The checked-out commit (short hash), with ``+dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def median(runs: list[dict], key: str = "seconds") -> float:
    """The median of ``key`` over a list of run results."""
    return statistics.median(r[key] for r in runs)


def log(message: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {message}", file=sys.stderr, flush=True)

"""WorkerPool: tasks run in worker processes, a task past its time is stopped, workers never outlive the pool."""
from __future__ import annotations

import math
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tabpipe.executors.local import Task, WorkerPool


def task(key, fn, *args, timeout=60.0, deadline=math.inf):
    return Task(key, fn, args, timeout_s=timeout, deadline=deadline)


def test_results_failures_and_timeouts():
    with WorkerPool(2) as pool:
        outcomes = {o.key: o for o in pool.run([
            task("sum", operator.add, 2, 3),
            task("fails", operator.truediv, 1, 0),
            task("sleeps", time.sleep, 30, timeout=1.0),
            task("after", math.factorial, 5),
        ])}
        assert outcomes["sum"].status == "done" and outcomes["sum"].value == 5
        assert outcomes["fails"].status == "failed" and "ZeroDivisionError" in outcomes["fails"].value
        assert outcomes["sleeps"].status == "timeout" and 1.0 <= outcomes["sleeps"].seconds < 20
        assert outcomes["after"].status == "done" and outcomes["after"].value == 120   # the pool goes on
        pids = pool.pids()
        assert pids and all(psutil.pid_exists(p) for p in pids)
    assert_all_gone([psutil.Process(p) for p in pids if psutil.pid_exists(p)], within=5)


def test_deadline_and_cancel():
    with WorkerPool(1) as pool:
        late = list(pool.run([task("late", math.factorial, 3, deadline=time.monotonic() - 1)]))
        assert [(o.key, o.status) for o in late] == [("late", "timeout")]   # past its deadline: never started
        outcomes = list(pool.run([task(("a", 0), math.factorial, 3), task(("b", 0), math.factorial, 4)],
                                 cancel=lambda key: key[0] == "b"))
        assert {o.key: o.status for o in outcomes} == {("a", 0): "done", ("b", 0): "cancelled"}


def descendants_after(proc: subprocess.Popen, wait_for: int, timeout: float = 60) -> list[psutil.Process]:
    """Wait until ``proc`` has at least ``wait_for`` descendant processes; return them."""
    parent, end = psutil.Process(proc.pid), time.monotonic() + timeout
    while time.monotonic() < end:
        kids = parent.children(recursive=True)
        if len(kids) >= wait_for:
            return kids
        time.sleep(0.2)
    raise AssertionError(f"only {parent.children(recursive=True)} after {timeout}s")


def running(proc: psutil.Process) -> bool:
    """Still there and not a zombie (an exited process its new parent, here PID 1, has not reaped yet)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(processes: list[psutil.Process], within: float = 10.0) -> float:
    """Wait until none of ``processes`` runs; return how long that took."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if not any(running(p) for p in processes):
            return time.monotonic() - start
        time.sleep(0.1)
    alive = [(p.pid, p.cmdline()) for p in processes if running(p)]
    raise AssertionError(f"still running {within}s after the kill: {alive}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, sig):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import time
        from tabpipe.executors.local import Task, WorkerPool
        if __name__ == "__main__":   # the fork server re-imports this script: no pool at import time
            with WorkerPool(2) as pool:
                for _ in pool.run([Task(i, time.sleep, (600,), 600, time.monotonic() + 600) for i in range(2)]):
                    pass
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        kids = descendants_after(proc, wait_for=3)   # fork server + 2 workers (+ resource tracker)
        time.sleep(0.5)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert_all_gone(kids)
    finally:
        proc.kill()

"""Where the search's tasks run: worker processes that can be stopped one task at a time.

Invariants:
- a task that is still running at its deadline is stopped by killing its worker (a fresh worker
  replaces it on demand), so no single fit can run away with the budget;
- workers die with the process that started them: ``PR_SET_PDEATHSIG`` (Linux) plus a watchdog
  thread that exits when the parent pid changes, so even ``kill -9`` of ``tabpipe train`` leaves
  nothing computing; closing the pool (also on an exception or KeyboardInterrupt) kills every worker;
- workers ignore SIGINT: Ctrl-C reaches the parent, which stops them;
- tasks are module-level functions and small arguments (paths, parameters); large arrays travel
  as files the workers memory-map, never through the pipe.
Imports nothing from tabpipe.
"""
from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_owner(lifeline: Connection) -> None:
    """End this worker when the pool's process ends, however it ends (``kill -9`` included).

    ``lifeline`` is the read end of a pipe whose only write end the pool's process holds: the kernel
    closes it when that process dies (even before it is reaped), and the read returns EOF. The
    parent pid is no signal here: a worker's parent is the fork server, which by design lives as
    long as any of its children does. ``PR_SET_PDEATHSIG`` is kept as a second, kernel-side path
    for workers whose parent is the pool itself (the spawn start method)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        try:
            lifeline.recv()      # nothing is ever sent: returns only by EOF, when the owner is gone
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="owner-watchdog", daemon=True).start()


def _worker_main(conn: Connection, threads: int, lifeline: Connection) -> None:
    _die_with_owner(lifeline)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)   # n workers x all cores would oversubscribe the machine
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, fn, args = message
        try:
            reply = (task_id, "done", fn(*args))
        except Exception as exc:  # noqa: BLE001 — the parent records the failure of this one task
            reply = (task_id, "failed", "".join(traceback.format_exception_only(exc)).strip())
        conn.send(reply)


@dataclass
class Task:
    """One call ``fn(*args)`` in a worker; it is stopped if still running ``timeout_s`` after it starts
    or at ``deadline`` (a ``time.monotonic()`` value), whichever comes first."""
    key: Any
    fn: Callable
    args: tuple
    timeout_s: float
    deadline: float


@dataclass
class Outcome:
    """How one task ended: its key, status, return value (or error text) and seconds."""
    key: Any
    status: str              # "done" | "failed" (the task raised) | "timeout" (stopped) | "cancelled" (never started)
    value: Any               # the return value, the error text, or None
    seconds: float


def not_started(task: Task, cancel: Callable[[Any], bool], now: float) -> Outcome | None:
    """The outcome of a queued task that must not start (cancelled, or already past its deadline), else None.
    One rule for every executor (this pool, ``executors.dask.DaskPool``)."""
    if cancel(task.key):
        return Outcome(task.key, "cancelled", None, 0.0)
    if now >= task.deadline:
        return Outcome(task.key, "timeout", None, 0.0)
    return None


class _Worker:
    def __init__(self, ctx, threads: int, lifeline: Connection):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, threads, lifeline), daemon=True,
                                   name="tabpipe-worker")
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.task_id = -1
        self.started = 0.0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """``n_workers`` processes running ``Task``s; use as a context manager; ``run`` yields an ``Outcome``
    per task as tasks finish.

    Workers are forked by multiprocessing's fork server, which has imported ``preload`` once (a
    replacement worker starts in milliseconds, not seconds) and never ran a thread pool (no OpenMP
    state is inherited); the fork server ends when this process does, and its workers with it."""

    def __init__(self, n_workers: int, *, threads_per_worker: int = 1, preload: tuple[str, ...] = ()):
        self.n_workers = max(1, n_workers)
        self.threads = max(1, threads_per_worker)
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(list(preload))
        else:
            self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        # workers watch the read end; only this process holds the write end (see _die_with_owner)
        self._lifeline, self._lifeline_w = self._ctx.Pipe(duplex=False)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill every worker now (running tasks are abandoned)."""
        workers, self._workers = self._workers, []
        for w in workers:
            if w.process.is_alive():
                w.process.kill()
        for w in workers:
            w.process.join(timeout=5)
            w.conn.close()

    def pids(self) -> list[int]:
        """Process ids of the live worker processes."""
        return [w.process.pid for w in self._workers if w.process.is_alive()]

    def _idle_worker(self) -> _Worker:
        for w in self._workers:
            if w.task is None and w.process.is_alive():
                return w
        self._workers = [w for w in self._workers if w.process.is_alive() or w.task is not None]
        worker = _Worker(self._ctx, self.threads, self._lifeline)
        self._workers.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)

    def run(self, tasks: list[Task], cancel: Callable[[Any], bool] = lambda key: False) -> Iterator[Outcome]:
        """Run ``tasks`` (in order, ``n_workers`` at a time); yield each ``Outcome`` as it is known.

        Between outcomes the caller may decide that some queued or running tasks are no longer
        wanted: ``cancel(key)`` is asked for every queued task before it starts and every running
        task after each outcome; a True answer stops it (status "cancelled")."""
        queue = deque(tasks)
        running: dict[int, _Worker] = {}
        try:
            yield from self._run(queue, running, cancel)
        finally:   # the caller stopped early (an error, Ctrl-C, enough results): abandon what still runs
            for worker in running.values():
                self._replace(worker)

    def start(self) -> None:
        """Start every worker now (e.g. in a thread while the caller does something else)."""
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self._ctx, self.threads, self._lifeline))

    def _run(self, queue: deque, running: dict[int, _Worker], cancel: Callable[[Any], bool]) -> Iterator[Outcome]:
        while queue or running:
            while queue and len(running) < self.n_workers:
                task = queue.popleft()
                now = time.monotonic()
                if (skipped := not_started(task, cancel, now)) is not None:
                    yield skipped
                    continue
                worker = self._idle_worker()
                worker.task, worker.task_id, worker.started = task, next(self._ids), now
                worker.conn.send((worker.task_id, task.fn, task.args))
                running[worker.task_id] = worker
            if not running:
                continue
            now = time.monotonic()
            soonest = min(min(w.started + w.task.timeout_s, w.task.deadline) for w in running.values())
            ready = wait([w.conn for w in running.values()], timeout=min(60.0, max(0.0, soonest - now)))
            now = time.monotonic()
            for worker in list(running.values()):
                task = worker.task
                if worker.conn in ready:
                    try:
                        task_id, status, value = worker.conn.recv()
                    except (EOFError, OSError):   # the worker died (e.g. out of memory)
                        status, value = "failed", f"worker process ended unexpectedly (exit code {worker.process.exitcode})"
                        self._replace(worker)
                    else:
                        worker.task = None
                    del running[worker.task_id]
                    yield Outcome(task.key, status, value, now - worker.started)
                elif now >= min(worker.started + task.timeout_s, task.deadline):
                    del running[worker.task_id]
                    self._replace(worker)
                    yield Outcome(task.key, "timeout", None, now - worker.started)
            for worker in list(running.values()):
                if cancel(worker.task.key):
                    del running[worker.task_id]
                    self._replace(worker)
                    yield Outcome(worker.task.key, "cancelled", None, time.monotonic() - worker.started)

"""The search's tasks on a Dask cluster: the same ``Task``/``Outcome``/``run`` contract as ``WorkerPool``.

Files under ``files_under`` travel once (scattered to every worker); a task past its deadline is
abandoned (Dask cannot kill it); a lost worker's tasks are rerun elsewhere.
Design notes: docs/dask.md#daskpools-contract
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import os
import queue as queue_mod
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tabpipe.errors import TabpipeError
from tabpipe.executors.local import Outcome, Task, not_started

CONNECT_TIMEOUT_S = 20


@dataclasses.dataclass(frozen=True)
class _File:
    """A file named by a task: ``key`` of its scattered bytes, its name (kept for readers that look at suffixes)."""
    key: str
    name: str


@dataclasses.dataclass(frozen=True)
class _Dir:
    """A folder under ``files_under`` (relative path), made on the worker."""
    rel: str


@dataclasses.dataclass(frozen=True)
class _Written:
    """A file a task wrote under one of its ``_Dir`` folders (relative path)."""
    rel: str


def _walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with every leaf (Path or marker) replaced by ``leaf(it)``; tuples, lists, dicts and dataclasses are rebuilt."""
    if isinstance(value, (Path, _File, _Dir, _Written)):
        return leaf(value)
    if isinstance(value, tuple):
        return tuple(_walk(v, leaf) for v in value)
    if isinstance(value, list):
        return [_walk(v, leaf) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, leaf) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _walk(getattr(value, f.name), leaf) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value


# --------------------------------------------------------------------------- on the worker

_WRITTEN: dict[str, Path] = {}   # per worker process: file key -> its local copy


def _local_root(run: str) -> Path:
    from distributed import get_worker

    try:
        base = Path(get_worker().local_directory)
    except ValueError:   # not in a worker (a test calling directly)
        base = Path(tempfile.gettempdir())
    return base / "tabpipe-files" / run


def _call(fn: Callable, args: tuple, files: dict[str, bytes], run: str, threads: int) -> tuple[Any, dict[str, bytes]]:
    """Run ``fn(*args)`` on a worker: markers become local paths; files it wrote come back as bytes."""
    from threadpoolctl import threadpool_limits

    root = _local_root(run)
    jobs = root / f"task-{uuid.uuid4().hex}"

    def to_local(leaf):
        if isinstance(leaf, _File):
            if leaf.key not in _WRITTEN or not _WRITTEN[leaf.key].exists():
                path = root / "files" / leaf.key / leaf.name
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")  # worker threads may race here
                tmp.write_bytes(files[leaf.key])
                tmp.replace(path)
                _WRITTEN[leaf.key] = path
            return _WRITTEN[leaf.key]
        if isinstance(leaf, _Dir):
            return jobs / leaf.rel
        return leaf

    written: dict[str, bytes] = {}

    def to_marker(leaf):
        if isinstance(leaf, Path) and leaf.is_relative_to(jobs) and leaf.is_file():
            rel = str(leaf.relative_to(jobs))
            if rel not in written:
                written[rel] = leaf.read_bytes()
            return _Written(rel)
        return leaf

    try:
        with threadpool_limits(threads):
            value = fn(*_walk(args, to_local))
        return _walk(value, to_marker), written
    finally:
        shutil.rmtree(jobs, ignore_errors=True)


def _forget(run: str) -> None:
    """Remove this worker's local copies of one pool's files."""
    shutil.rmtree(_local_root(run), ignore_errors=True)
    for key, path in list(_WRITTEN.items()):
        if run in path.parts:
            del _WRITTEN[key]


# --------------------------------------------------------------------------- in this process

def local_cluster(n_workers: int):
    """A ``distributed.LocalCluster`` of ``n_workers`` separate processes, one thread each, dashboard on a free port.

    Its workers run without Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``: with it, scikit-learn's
    HistGradientBoosting fits measured 3x slower here (memory returned to the OS and faulted back in
    every iteration). Workers started elsewhere (``address``) keep their own settings."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=max(1, n_workers), threads_per_worker=1, processes=True, dashboard_address=":0")


class DaskPool:
    """``run(tasks)`` on a Dask cluster: at ``address`` (``tcp://host:port``), or a ``distributed.LocalCluster``
    of ``n_workers`` separate processes started here when ``address`` is None. Use as a context manager."""

    def __init__(self, address: str | None, *, n_workers: int, files_under: Path, threads_per_worker: int = 1,
                 preload: tuple[str, ...] = ()):
        from distributed import Client

        self.files_under = Path(files_under).resolve()
        self.threads = max(1, threads_per_worker)
        self._cluster = None
        if address is None:
            self._cluster = local_cluster(n_workers)
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:   # refused, unreachable, timed out
                raise TabpipeError(f"training.executor.address: cannot reach the Dask scheduler at {address} "
                                   f"({exc})") from None
        self.client.wait_for_workers(1)
        self.n_workers = max(1, sum(self.client.nthreads().values()))
        self._run_id = uuid.uuid4().hex
        self._scattered: dict[tuple, Any] = {}   # (path, mtime, size) of files read here -> scattered future
        self._written: dict[Path, Any] = {}      # files tasks wrote (scattered), by the path this process knows them as
        self._ids = itertools.count()
        self._preload = preload

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Import ``preload`` in every worker now (e.g. in a thread while the caller does something else)."""
        for module in self._preload:
            self.client.run(importlib.import_module, module)

    def pids(self) -> list[int]:
        """Process ids of the cluster's workers, sorted."""
        return sorted(self.client.run(os.getpid).values())

    def close(self) -> None:
        """Release every scattered file and remove the workers' copies; stop the cluster this pool started."""
        self._scattered.clear()
        self._written.clear()
        with contextlib.suppress(Exception):   # a cluster already gone has nothing left to clean
            self.client.run(_forget, self._run_id)
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    # ------------------------------------------------------------------ files

    def _scatter(self, key: tuple, data: bytes):
        if key not in self._scattered:
            self._scattered[key] = self.client.scatter(data, broadcast=True, hash=True)
        return self._scattered[key]

    def _prepare_args(self, args: tuple) -> tuple[tuple, dict]:
        files: dict[str, Any] = {}

        def to_marker(leaf):
            if not isinstance(leaf, Path):
                return leaf
            path = leaf.resolve()
            if not path.is_relative_to(self.files_under):
                return leaf
            if path in self._written:
                future = self._written[path]
            elif path.is_file():
                stat = path.stat()
                key = (str(path), stat.st_mtime_ns, stat.st_size)
                future = self._scattered[key] if key in self._scattered else self._scatter(key, path.read_bytes())
            else:
                return _Dir(str(path.relative_to(self.files_under)))
            files[future.key] = future
            return _File(future.key, path.name)

        marked = _walk(args, to_marker)
        return marked, files

    def _result(self, value: Any, written: dict[str, bytes]) -> Any:
        """The task's value with the files it wrote as paths under ``files_under``; their bytes are scattered."""
        def to_path(leaf):
            if isinstance(leaf, _Written):
                path = self.files_under / leaf.rel
                if leaf.rel in written:   # scattered now, once; this process keeps only the future
                    self._written[path] = self.client.scatter(written.pop(leaf.rel), broadcast=True, hash=True)
                return path
            return leaf

        return _walk(value, to_path)

    # ------------------------------------------------------------------ tasks

    def run(self, tasks: list[Task], cancel: Callable[[Any], bool] = lambda key: False) -> Iterator[Outcome]:
        """Run ``tasks`` (in order, ``n_workers`` at a time); yield each ``Outcome`` as it is known (see ``WorkerPool.run``)."""
        queue = deque(tasks)
        running: dict[str, tuple[Task, Any, float, tuple]] = {}
        finished: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        try:
            yield from self._run(queue, running, finished, cancel)
        finally:   # the caller stopped early: abandon what still runs
            for _, future, _ in running.values():
                future.cancel()

    def _run(self, queue: deque, running: dict, finished: queue_mod.SimpleQueue,
             cancel: Callable[[Any], bool]) -> Iterator[Outcome]:
        while queue or running:
            while queue and len(running) < self.n_workers:
                task = queue.popleft()
                now = time.monotonic()
                if (skipped := not_started(task, cancel, now)) is not None:
                    yield skipped
                    continue
                args, files = self._prepare_args(task.args)
                future = self.client.submit(_call, task.fn, args, files, self._run_id, self.threads,
                                            key=f"tabpipe-{self._run_id[:8]}-{next(self._ids)}", pure=False)
                running[future.key] = (task, future, now)
                future.add_done_callback(lambda f: finished.put(f.key))
            if not running:
                continue
            now = time.monotonic()
            soonest = min(min(started + task.timeout_s, task.deadline) for task, _, started in running.values())
            try:
                done_keys = [finished.get(timeout=min(60.0, max(0.0, soonest - now)))]
            except queue_mod.Empty:
                done_keys = []
            while True:
                try:
                    done_keys.append(finished.get_nowait())
                except queue_mod.Empty:
                    break
            now = time.monotonic()
            for key in done_keys:
                if key not in running:   # already cancelled or timed out
                    continue
                task, future, started = running.pop(key)
                yield self._outcome(task, future, now - started)
            for key, (task, future, started) in list(running.items()):
                if now >= min(started + task.timeout_s, task.deadline):
                    del running[key]
                    future.cancel()
                    yield Outcome(task.key, "timeout", None, now - started)
            for key, (task, future, started) in list(running.items()):
                if cancel(task.key):
                    del running[key]
                    future.cancel()
                    yield Outcome(task.key, "cancelled", None, time.monotonic() - started)

    def _outcome(self, task: Task, future, seconds: float) -> Outcome:
        if future.status == "finished":
            value, written = future.result()
            return Outcome(task.key, "done", self._result(value, written), seconds)
        if future.status == "error":
            exc = future.exception()
            return Outcome(task.key, "failed", f"{type(exc).__name__}: {exc}", seconds)
        return Outcome(task.key, "failed", f"the task ended as {future.status!r} on the cluster", seconds)


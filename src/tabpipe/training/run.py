"""The run folder: ``artifacts/<UTC timestamp>/`` with one subfolder per stage, ``run.log`` and ``run.json``.

``run.json`` is rewritten (atomically) after every stage, so a crashed run still shows how far it got.
Creating a ``Run`` leaves logging alone: ``run.log`` is written only inside ``with run.logging_to_folder():``
(``TrainingPipeline.run`` opens it), which attaches its handler to the ``tabpipe`` logger and to Python's
warnings and takes it away again on exit.
"""
from __future__ import annotations

import json
import logging
import platform
import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tabpipe.errors import TabpipeError
from tabpipe.registry.durable import replace_atomic

T = TypeVar("T")
PACKAGES = ("tabpipe", "pandas", "numpy", "scikit-learn", "imbalanced-learn", "evidently", "dill", "pyarrow")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a model depends on, for run.json and the registry."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class RunFolderError(TabpipeError):
    """A named run folder cannot be resumed (made with another configuration)."""


class StopAfterStage(Exception):
    """Raised by ``Run.stage`` once the stage named by ``stop_after`` has succeeded (a partial run)."""


def run_name(text: str) -> str:
    """A run folder name from free text (e.g. an Airflow run id): characters outside [A-Za-z0-9._-] become '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text.strip()).lstrip("._-")[:200]
    if not RUN_NAME.match(name):
        raise ValueError(f"{text!r} cannot name a run folder")
    return name


def new_run_dir(root: Path) -> Path:
    """A fresh folder named by UTC time to the microsecond; a suffix keeps it unique if taken."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%fZ")
    for n in range(1000):
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run folder under {root}")


def _jsonable(value: Any) -> Any:
    if is_dataclass(value):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Run:
    """Records one training run: stages, timings, outcome; owns the run folder and its log file."""

    LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def __init__(self, artifacts_dir: Path, config_snapshot: dict, *, name: str | None = None,
                 restore: Callable[[str, dict], Any] | None = None, stop_after: str | None = None):
        """A new run folder; or, with ``name``, the folder ``artifacts_dir/name``, resumed if it exists.

        Resuming (how an orchestrator retries one failed stage): stages that succeeded before are not run
        again; their artifacts are rebuilt from run.json by ``restore(stage, recorded)``. The config must be
        the one the folder was made with. ``stop_after`` ends the run (``StopAfterStage``) after that stage.
        """
        self._stage_no = 0
        self._restore, self.stop_after = restore, stop_after
        previous = None
        if name is None:
            self.dir = new_run_dir(artifacts_dir)
        else:
            self.dir = artifacts_dir / run_name(name)
            self.dir.mkdir(parents=True, exist_ok=True)
            if (self.dir / "run.json").is_file():
                previous = json.loads((self.dir / "run.json").read_text())
        self.id = self.dir.name
        if previous is not None and previous.get("config") != json.loads(json.dumps(config_snapshot, default=str)):
            raise RunFolderError(f"run folder {self.dir} was made with another configuration; use a new run name")
        self.record: dict[str, Any] = previous or {
            "run_id": self.id, "status": "running", "started_at": datetime.now(timezone.utc).isoformat(),
            "stages": {}, "metrics": None, "accepted": None, "model_version": None,
            "config": config_snapshot, "packages": package_versions(),
        }
        if previous is not None:
            self.record.update(status="running", resumed_at=datetime.now(timezone.utc).isoformat())
            self.record.pop("error", None)
        self._log_handler: logging.Handler | None = None   # set while logging_to_folder() is open
        self.save()

    @contextmanager
    def logging_to_folder(self) -> Iterator[Run]:
        """While open: this process's ``tabpipe`` log records (INFO and up, unless the caller set a level)
        and Python warnings (convergence, ...) go to ``run.log`` (appended), warnings instead of the
        console. On exit the handler is removed, the two loggers' level and propagation are as they
        were, and warnings are no longer captured."""
        handler = logging.FileHandler(self.dir / "run.log")
        handler.setFormatter(logging.Formatter(self.LOG_FORMAT))
        logger, warnings_logger = logging.getLogger("tabpipe"), logging.getLogger("py.warnings")
        level, propagate = logger.level, warnings_logger.propagate
        if level == logging.NOTSET:  # library use without the CLI: still record the stages
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logging.captureWarnings(True)
        warnings_logger.addHandler(handler)
        warnings_logger.propagate = False
        self._log_handler = handler
        try:
            yield self
        finally:
            self._log_handler = None
            logger.removeHandler(handler)
            warnings_logger.removeHandler(handler)
            warnings_logger.propagate = propagate
            logging.captureWarnings(False)
            logger.setLevel(level)
            handler.close()

    def stage(self, name: str, body: Callable[[Path], T], *, reuse: bool = True) -> T:
        """Run ``body(stage_folder)``; record status, seconds and the artifact it returns. ``reuse=False``:
        run it again even if it succeeded in this folder before (its outputs could not be kept)."""
        self._stage_no += 1
        folder = self.dir / f"{self._stage_no:02d}_{name}"
        done = self.record["stages"].get(name, {})
        if done.get("status") == "succeeded" and self._restore is not None and reuse:
            logging.getLogger("tabpipe").info("stage %s already succeeded in this run folder: reused", name)
            artifact = self._restore(name, done["artifact"])
            self._stop_if_last(name)
            return artifact
        entry = self.record["stages"][name] = {"status": "running", "folder": str(folder)}
        self.save()  # a crash mid-stage leaves run.json saying which stage was running
        logging.getLogger("tabpipe").info("stage %s started", name)
        start = time.perf_counter()
        try:
            artifact = body(folder)
        except BaseException as exc:
            entry.update(status="failed", seconds=round(time.perf_counter() - start, 2), error=f"{type(exc).__name__}: {exc}")
            self.save()
            raise
        entry.update(status="succeeded", seconds=round(time.perf_counter() - start, 2), artifact=_jsonable(artifact))
        logging.getLogger("tabpipe").info("stage %s done in %.1fs", name, entry["seconds"])
        self.save()
        self._stop_if_last(name)
        return artifact

    def _stop_if_last(self, name: str) -> None:
        if name == self.stop_after:
            raise StopAfterStage(name)

    def pause(self) -> None:
        """End a partial run (``stop_after`` reached): status ``partial``, the folder ready to be resumed."""
        self.record["status"] = "partial"
        self.save()

    def finish(self, *, error: BaseException | None = None, **fields: Any) -> None:
        """Record the outcome (succeeded, or failed with the error) and save run.json."""
        self.record.update(_jsonable(fields))
        self.record["status"] = "failed" if error else "succeeded"
        self.record["finished_at"] = datetime.now(timezone.utc).isoformat()
        if error is not None:
            self.record["error"] = f"{type(error).__name__}: {error}"
            # the traceback goes to run.log only; the console gets the one-line message from the CLI
            if self._log_handler is not None:
                self._log_handler.emit(logging.makeLogRecord({
                    "name": "tabpipe.training.run", "levelno": logging.ERROR, "levelname": "ERROR",
                    "msg": "run failed:\n%s", "args": ("".join(traceback.format_exception(error)),)}))
        self.save()

    def save(self) -> None:
        """Write run.json atomically."""
        replace_atomic(self.dir / "run.json", json.dumps(self.record, indent=2, default=str).encode())

"""The run folder: ``artifacts/<UTC timestamp>/`` with one subfolder per stage, ``run.log`` and ``run.json``.

``run.json`` is rewritten (atomically) after every stage, so a crashed run still shows how far it got.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
PACKAGES = ("tabpipe", "pandas", "numpy", "scikit-learn", "imbalanced-learn", "evidently", "dill", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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

    def __init__(self, artifacts_dir: Path, config_snapshot: dict):
        self.dir = new_run_dir(artifacts_dir)
        self.id = self.dir.name
        self._stage_no = 0
        self.record: dict[str, Any] = {
            "run_id": self.id, "status": "running", "started_at": datetime.now(timezone.utc).isoformat(),
            "stages": {}, "metrics": None, "accepted": None, "model_version": None,
            "config": config_snapshot, "packages": package_versions(),
        }
        self._log_handler = logging.FileHandler(self.dir / "run.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("tabpipe")
        if logger.level == logging.NOTSET:  # library use without the CLI: still record the stages
            logger.setLevel(logging.INFO)
        logger.addHandler(self._log_handler)
        # library warnings (convergence, ...) of this process go to run.log instead of the console
        logging.captureWarnings(True)
        self._warnings = logging.getLogger("py.warnings")
        self._warnings.addHandler(self._log_handler)
        self._warnings.propagate = False
        self.save()

    def stage(self, name: str, body: Callable[[Path], T]) -> T:
        """Run ``body(stage_folder)``; record status, seconds and the artifact it returns."""
        self._stage_no += 1
        folder = self.dir / f"{self._stage_no:02d}_{name}"
        entry = self.record["stages"][name] = {"status": "running", "folder": str(folder)}
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
        return artifact

    def finish(self, *, error: BaseException | None = None, **fields: Any) -> None:
        self.record.update(_jsonable(fields))
        self.record["status"] = "failed" if error else "succeeded"
        self.record["finished_at"] = datetime.now(timezone.utc).isoformat()
        if error is not None:
            self.record["error"] = f"{type(error).__name__}: {error}"
            # the traceback goes to run.log only; the console gets the one-line message from the CLI
            self._log_handler.emit(logging.makeLogRecord({
                "name": "tabpipe.run", "levelno": logging.ERROR, "levelname": "ERROR",
                "msg": "run failed:\n%s", "args": ("".join(traceback.format_exception(error)),)}))
        self.save()
        logging.getLogger("tabpipe").removeHandler(self._log_handler)
        self._warnings.removeHandler(self._log_handler)
        logging.captureWarnings(False)
        self._log_handler.close()

    def save(self) -> None:
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=2, default=str))
        os.replace(tmp, self.dir / "run.json")

"""Holds the production model for the web service and swaps it when the registry's pointer moves.

Requests read ``holder.current`` once and use that snapshot to the end, so a swap never disturbs a
request in flight: the old model stays alive until its last request finishes. A daemon thread polls
``registry.production_version()`` (a tiny read) every ``poll_interval_s``; a new model is loaded and
its SHA-256 verified (by the registry) and compiled before it becomes visible.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from tabpipe.errors import RegistryError
from tabpipe.model import TabularModel
from tabpipe.serving.scorer import RecordScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: str
    model: TabularModel
    scorer: RecordScorer
    metadata: dict


class ModelHolder:
    def __init__(self, registry, poll_interval_s: float = 5.0):
        self.registry, self.poll_interval_s = registry, poll_interval_s
        self.current: Loaded | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self.refresh()
        if poll_interval_s > 0:
            threading.Thread(target=self._poll, name="tabpipe-model-poll", daemon=True).start()

    def refresh(self) -> bool:
        """Load the production model if it differs from the one held; True when a swap happened."""
        try:
            version = self.registry.production_version()
            if version is None or (self.current and self.current.version == version):
                return False
            model, metadata = self.registry.load_model(version)
            model.use_all_cores()
            loaded = Loaded(version, model, RecordScorer(model), metadata)
        except Exception as exc:  # noqa: BLE001 — any broken model: keep serving the one we have, keep polling
            self.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RegistryError) else str(exc)
            log.error("model refresh failed: %s", self.last_error)
            return False
        self.current = loaded
        self.last_error = None
        log.info("serving model %s", version)
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()

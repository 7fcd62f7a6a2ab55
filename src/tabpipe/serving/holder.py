"""Holds the production model for the web service and swaps it when the registry's pointer moves.

Requests read ``holder.current`` once and use that snapshot to the end, so a swap never disturbs a
request in flight: the old model stays alive until its last request finishes. A daemon thread polls
``registry.production_version()`` (a tiny read, signature and counter checked) every
``poll_interval_s``; a new model is loaded — signature and SHA-256 verified by the registry before
anything is unpickled — and compiled before it becomes visible.

When a refresh fails, ``error_code`` (stable, one of ``ERROR_MESSAGES``) and its generic message are
what clients may see; the detail (paths, bucket, endpoint, reason) goes to the server log only and
stays in ``last_error`` for operators and tests.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tabpipe.errors import RegistryError
from tabpipe.model import TabularModel
from tabpipe.scoring.compiled import RecordScorer

log = logging.getLogger(__name__)

ERROR_MESSAGES = {
    "no_production_model": "the registry has no production model yet",
    "registry_error": "the production model could not be read or verified from the registry; see the server log",
    "model_load_failed": "the production model could not be loaded; see the server log",
}


@dataclass(frozen=True)
class Loaded:
    """One loaded production model: its version, the model, its compiled scorer and its registry metadata."""
    version: str
    model: TabularModel
    scorer: RecordScorer
    metadata: dict


class ModelHolder:
    """The service's current model (``current``), swapped by a polling thread when production moves.

    ``on_load(version)`` is called after each swap, ``on_failure(code)`` after each failed attempt (metrics)."""
    def __init__(self, registry, poll_interval_s: float = 5.0, *, on_load: Callable[[str], None] | None = None,
                 on_failure: Callable[[str], None] | None = None):
        self.registry, self.poll_interval_s = registry, poll_interval_s
        self.on_load, self.on_failure = on_load, on_failure
        self.current: Loaded | None = None
        self.last_error: str | None = None   # full detail: server log and operators only
        self.error_code: str | None = None   # stable code, safe to show to clients
        self._stop = threading.Event()
        self.refresh()
        if poll_interval_s > 0:
            threading.Thread(target=self._poll, name="tabpipe-model-poll", daemon=True).start()

    @property
    def public_error(self) -> dict | None:
        """``{"code", "message"}`` for clients (no paths, bucket or endpoint), or None."""
        code = self.error_code or (None if self.current else "no_production_model")
        return None if code is None else {"code": code, "message": ERROR_MESSAGES[code]}

    def refresh(self) -> bool:
        """Load the production model if it differs from the one held; True when a swap happened."""
        try:
            version = self.registry.production_version()
            if version is None or (self.current and self.current.version == version):
                self._clear_error()
                return False
            model, metadata = self.registry.load_model(version)
            model.use_all_cores()
            loaded = Loaded(version, model, RecordScorer(model), metadata)
        except Exception as exc:  # noqa: BLE001 — any broken model: keep serving the one we have, keep polling
            rejected = isinstance(exc, RegistryError)  # unreadable, unsigned, forged, rolled back, checksum
            code = "registry_error" if rejected else "model_load_failed"
            detail = str(exc) if rejected else f"{type(exc).__name__}: {exc}"
            if detail != self.last_error:  # once per distinct failure, not every poll
                log.error("model refresh failed (%s): %s", code, detail)
            self.last_error, self.error_code = detail, code
            if self.on_failure is not None:
                self.on_failure(code)
            return False
        self.current = loaded
        self._clear_error()
        if self.on_load is not None:
            self.on_load(version)
        log.info("serving model %s", version)
        return True

    def _clear_error(self) -> None:
        if self.last_error:
            log.info("model refresh recovered")
        self.last_error = self.error_code = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()

    def stop(self) -> None:
        """Stop the polling thread (its wait returns at once)."""
        self._stop.set()

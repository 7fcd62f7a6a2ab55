"""One app's state: what ``create_app`` builds once and every route reads from ``app.extensions["tabpipe"]``.

Nothing here is a module global, so two apps in one process (the tests build many) stay independent.
The state also reads like the mapping it replaced (``app.extensions["tabpipe"]["holder"]``).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from flask import current_app

from tabpipe.config import ServeSection, Settings
from tabpipe.history.predlog import PredictionLog
from tabpipe.serving.holder import Loaded, ModelHolder
from tabpipe.serving.inputs import ApiError
from tabpipe.serving.metrics import ServiceMetrics
from tabpipe.serving.uploads import StoreHandle

EXTENSION = "tabpipe"   # the key in app.extensions


@dataclass(frozen=True, kw_only=True, eq=False)
class ServiceState(Mapping):
    """The settings, the model holder, the prediction log, the upload store, the metrics and the training lock of one app."""

    settings: Settings
    holder: ModelHolder
    prediction_log: PredictionLog | None        # None when monitoring.log_predictions is off
    upload_store: StoreHandle
    environ: Mapping[str, str]                  # the process environment, handed in by the factory (tokens, keys)
    allowed_origins: frozenset[str]
    metrics: ServiceMetrics | None = None       # None when the app was built with metrics=False
    training: threading.Lock = field(default_factory=threading.Lock)   # held while a /train run is in progress

    @property
    def serve(self) -> ServeSection:
        """The ``serve`` section of the settings."""
        return self.settings.pipeline.serve

    def loaded(self) -> Loaded:
        """The model in service; ApiError 503 with a generic message and stable code when there is none."""
        current = self.holder.current
        if current is None:  # the detail is in the server log only
            problem = self.holder.public_error
            raise ApiError(503, f"no production model is loaded: {problem['message']}", code=problem["code"])
        return current

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def current_state() -> ServiceState:
    """The state of the app handling this request."""
    return current_app.extensions[EXTENSION]

"""Building the monitoring objects from validated settings and the environment, once, at the edge.

The CLI and the app factory (``serving/app.py``) call these with ``os.environ``; nothing below them reads the
environment. Rules (documented in the README):

- store URL: the variable named by ``monitoring.store_url_env`` when set, else ``history.sqlite`` in
  the local registry folder (S3 registry: in ``run.artifacts_dir``);
- prediction log: ``monitoring.log.format`` (parquet: files in ``prediction_log`` beside the SQLite
  file, else in the local registry folder / ``run.artifacts_dir``; sql: the ``predictions`` table);
- sensitive columns: HMAC-SHA256 under the key in ``monitoring.hash_key_env``; ``drop`` by config,
  or when that variable is unset.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.history.predlog import PredictionLog, RowFormat
from tabpipe.privacy import Protector
from tabpipe.history.store import HistoryStore, log_folder, store_url

if TYPE_CHECKING:
    from tabpipe.config import Settings


def history_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """The history store URL for these settings."""
    p = settings.pipeline
    return store_url(environ.get(p.monitoring.store_url_env) or None, registry_backend=p.registry.backend,
                     registry_path=p.registry.path, artifacts_dir=p.run.artifacts_dir)


def history_log_dir(settings: Settings, url: str) -> Path | None:
    """The columnar prediction log's folder: beside an SQLite store's file, else ``prediction_log`` in the
    local registry folder (S3 registry: in ``run.artifacts_dir``)."""
    p = settings.pipeline
    return log_folder(url, p.registry.path if p.registry.backend == "local" else p.run.artifacts_dir)


def open_history(settings: Settings, environ: Mapping[str, str]) -> HistoryStore:
    """Open (and migrate) the configured history store, writing the prediction log in the configured format
    (``monitoring.log.format``); StoreError if it cannot be used."""
    return open_store(settings, history_url(settings, environ))


def open_store(settings: Settings, url: str, **options) -> HistoryStore:
    """The history store at ``url`` with the settings' log folder and format (``options``: ``HistoryStore.open``'s)."""
    return HistoryStore.open(url, log_dir=history_log_dir(settings, url),
                             log_format=settings.pipeline.monitoring.log.format, **options)


def protector(settings: Settings, environ: Mapping[str, str]) -> Protector:
    """The sensitive-column rule for the configured schema."""
    section = settings.pipeline.monitoring
    key = environ.get(section.hash_key_env)
    return Protector.for_schema(settings.schema_, mode=section.sensitive, key=key.encode() if key else None)


def row_format(settings: Settings, environ: Mapping[str, str], *, sample_rate: float | None = None) -> RowFormat:
    """How scored rows become log rows (configured sample rate unless given)."""
    rate = settings.pipeline.monitoring.sample_rate if sample_rate is None else sample_rate
    return RowFormat(settings.schema_, protector(settings, environ), rate)


def prediction_log(settings: Settings, environ: Mapping[str, str]) -> PredictionLog | None:
    """The service's background prediction log, or None when ``monitoring.log_predictions`` is off.
    The store is opened lazily by the writer thread, so a store that is down never stops the service."""
    section = settings.pipeline.monitoring
    if section.sample_rate == 0:
        return None
    url = history_url(settings, environ)
    return PredictionLog(lambda: open_store(settings, url), row_format(settings, environ),
                         queue_rows=section.queue_rows, batch_rows=section.batch_rows,
                         flush_interval_s=section.flush_interval_s)

"""read_source: pick the reader for a source config, resolving its URL in the environment passed in."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tabpipe.sources.base import SOURCE_ADAPTER, FileSource, MongoSource, SqlSource, resolve_path, source_url
from tabpipe.sources.files import read_file
from tabpipe.sources.mongodb import read_mongodb
from tabpipe.sources.sql import read_sql


def read_source(cfg: Any, base_dir: Path, *, environ: Mapping[str, str],
                mongo_client_factory: Callable | None = None) -> pd.DataFrame:
    """Read the table described by ``cfg`` (a source model or a plain mapping) into a DataFrame.

    URLs named by ``uri_env``/``url_env`` are looked up in ``environ``, which the edge (CLI, app factory,
    Airflow task) passes down; a file source never reads it.
    """
    if isinstance(cfg, Mapping):
        cfg = SOURCE_ADAPTER.validate_python(dict(cfg))
    if isinstance(cfg, FileSource):
        return read_file(resolve_path(cfg.path, base_dir), format=cfg.format, sep=cfg.sep)
    if isinstance(cfg, MongoSource):
        return read_mongodb(cfg, source_url(cfg, environ), client_factory=mongo_client_factory)
    if isinstance(cfg, SqlSource):
        return read_sql(cfg, source_url(cfg, environ), base_dir)
    raise TypeError(f"not a source config: {type(cfg).__name__}")

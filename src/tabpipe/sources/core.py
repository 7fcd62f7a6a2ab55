"""read_source / read_tables: pick the reader for a source config, resolving its URL in the environment passed in."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tabpipe.sources.base import (
    SOURCE_ADAPTER,
    FileSource,
    JoinSource,
    MongoSource,
    SqlSource,
    resolve_path,
    source_url,
)
from tabpipe.sources.files import read_file
from tabpipe.sources.join import JoinedTable, SourcePart, join_sources
from tabpipe.sources.mongodb import read_mongodb
from tabpipe.sources.sql import read_sql


def read_tables(cfg: Any, base_dir: Path, *, environ: Mapping[str, str],
                mongo_client_factory: Callable | None = None) -> JoinedTable:
    """Read the table described by ``cfg`` (a source model or a plain mapping) and the parts it is made of:
    for a ``join`` source its base and each joined table, otherwise the one table (part ``source``).

    URLs named by ``uri_env``/``url_env`` are looked up in ``environ``, which the edge (CLI, app factory,
    Airflow task) passes down; a file source never reads it.
    """
    if isinstance(cfg, Mapping):
        cfg = SOURCE_ADAPTER.validate_python(dict(cfg))
    if isinstance(cfg, JoinSource):
        return join_sources(cfg, lambda leaf: _read_leaf(leaf, base_dir, environ, mongo_client_factory))
    frame = _read_leaf(cfg, base_dir, environ, mongo_client_factory)
    return JoinedTable(frame, (SourcePart("source", cfg, frame),))


def read_source(cfg: Any, base_dir: Path, *, environ: Mapping[str, str],
                mongo_client_factory: Callable | None = None) -> pd.DataFrame:
    """The table described by ``cfg`` (see :func:`read_tables`) as one DataFrame."""
    return read_tables(cfg, base_dir, environ=environ, mongo_client_factory=mongo_client_factory).frame


def _read_leaf(cfg: Any, base_dir: Path, environ: Mapping[str, str], mongo_client_factory: Callable | None) -> pd.DataFrame:
    """Read one file, MongoDB or SQL source."""
    if isinstance(cfg, FileSource):
        return read_file(resolve_path(cfg.path, base_dir), format=cfg.format, sep=cfg.sep)
    if isinstance(cfg, MongoSource):
        return read_mongodb(cfg, source_url(cfg, environ), client_factory=mongo_client_factory)
    if isinstance(cfg, SqlSource):
        return read_sql(cfg, source_url(cfg, environ), base_dir)
    raise TypeError(f"not a source config: {type(cfg).__name__}")

"""Data sources: where the training table comes from.

Four kinds of source, chosen in YAML by ``type``, one module each:

- ``file``    (:mod:`.files`)   : a CSV or Parquet file (relative paths resolve against the config's folder);
- ``mongodb`` (:mod:`.mongodb`) : a MongoDB collection, URI read from an environment variable (never from YAML);
- ``sql``     (:mod:`.sql`)     : any SQLAlchemy database, URL from an env var (preferred) or inline;
- ``join``    (:mod:`.join`)    : a base table plus tables of the three kinds above joined onto it by key,
  point in time (each row sees only records stamped before its label time) where declared.

:mod:`.base` holds the configs, the one URL redaction rule and the env lookup; :mod:`.core`'s
``read_source`` picks the reader (``read_tables`` also returns the parts of a join); :mod:`.mongo_loader`
seeds a collection from a frame; :mod:`.loan_sample` generates the joined-source example's four tables. Every
reader returns one ``pandas.DataFrame`` and reports expected failures as
:class:`~tabpipe.errors.DataError`, with any password shown as ``***``.
"""
from tabpipe.sources.base import (
    FileSource,
    JoinSource,
    MongoSource,
    SourceConfig,
    SqlSource,
    redact_url,
    redact_urls_in,
)
# The readers import pandas and their drivers (about half a second); configs only need ``base``. So they
# are imported on first use (PEP 562), and a command that only reads a config does not pay for them.
_LAZY = {
    "read_source": "core", "read_tables": "core", "read_file": "files", "JoinedTable": "join",
    "PointInTimeError": "join", "SourcePart": "join", "push_to_mongo": "mongo_loader",
    "read_mongodb": "mongodb", "read_sql": "sql",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FileSource",
    "JoinSource",
    "JoinedTable",
    "MongoSource",
    "PointInTimeError",
    "SourceConfig",
    "SourcePart",
    "SqlSource",
    "push_to_mongo",
    "read_file",
    "read_mongodb",
    "read_source",
    "read_sql",
    "read_tables",
    "redact_url",
    "redact_urls_in",
]

"""Data sources: where the training table comes from.

Three kinds of source, chosen in YAML by ``type``, one reader module each:

- ``file``    (:mod:`.files`)   : a CSV or Parquet file (relative paths resolve against the config's folder);
- ``mongodb`` (:mod:`.mongodb`) : a MongoDB collection, URI read from an environment variable (never from YAML);
- ``sql``     (:mod:`.sql`)     : any SQLAlchemy database, URL from an env var (preferred) or inline.

:mod:`.base` holds the configs, the one URL redaction rule and the env lookup; :mod:`.core`'s
``read_source`` picks the reader; :mod:`.mongo_loader` seeds a collection from a frame. Every
reader returns one ``pandas.DataFrame`` and reports expected failures as
:class:`~tabpipe.errors.DataError`, with any password shown as ``***``.
"""
from tabpipe.sources.base import (
    FileSource,
    MongoSource,
    SourceConfig,
    SqlSource,
    redact_url,
    redact_urls_in,
)
from tabpipe.sources.core import read_source
from tabpipe.sources.files import read_file
from tabpipe.sources.mongo_loader import push_to_mongo
from tabpipe.sources.mongodb import read_mongodb
from tabpipe.sources.sql import read_sql

__all__ = [
    "FileSource",
    "MongoSource",
    "SourceConfig",
    "SqlSource",
    "push_to_mongo",
    "read_file",
    "read_mongodb",
    "read_source",
    "read_sql",
    "redact_url",
    "redact_urls_in",
]

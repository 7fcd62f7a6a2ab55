"""Data sources: where the training table comes from.

Three kinds of source, chosen in YAML by ``type``:

- ``file``    : a CSV or Parquet file (relative paths resolve against the config's folder);
- ``mongodb`` : a MongoDB collection, URI read from an environment variable (never from YAML);
- ``sql``     : any SQLAlchemy database (SQLite, PostgreSQL...), URL inline or from an env var.

Every reader returns one ``pandas.DataFrame`` and reports expected failures (missing file,
unreachable server, bad query, empty result) as :class:`~tabpipe.errors.DataError`, with any
password in a URI replaced by ``REDACTED``. :func:`push_to_mongo` seeds a collection from a frame.

Errors are translated once, at each public reader; the helpers below them do plain I/O.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter, model_validator

from tabpipe.config_base import StrictModel
from tabpipe.errors import DataError

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
]

REDACTED = "REDACTED"

# --------------------------------------------------------------------------- configs


class FileSource(StrictModel):
    """A CSV or Parquet file; ``format: auto`` picks the reader from the extension."""

    type: Literal["file"]
    path: Path
    format: Literal["auto", "csv", "parquet"] = "auto"
    sep: str = ","


class MongoSource(StrictModel):
    """A MongoDB collection; the URI comes from the environment variable named by ``uri_env``."""

    type: Literal["mongodb"]
    uri_env: str = "MONGODB_URI"
    database: str
    collection: str
    filter: dict = Field(default_factory=dict)
    projection: dict | None = None
    batch_size: int = Field(10_000, gt=0)
    max_retries: int = Field(4, ge=0)
    retry_backoff_s: float = Field(0.5, ge=0)
    timeout_ms: int = Field(5000, gt=0)


class SqlSource(StrictModel):
    """A SQL query against a SQLAlchemy URL given inline (``url``) or by env var (``url_env``)."""

    type: Literal["sql"]
    url: str | None = None
    url_env: str | None = None
    query: str
    chunk_size: int = Field(50_000, gt=0)

    @model_validator(mode="after")
    def _exactly_one_url(self) -> SqlSource:
        """Require exactly one of ``url`` and ``url_env``."""
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' (inline) or 'url_env' (name of an env var)")
        return self


SourceConfig = Annotated[FileSource | MongoSource | SqlSource, Field(discriminator="type")]
_SOURCE_ADAPTER: TypeAdapter = TypeAdapter(SourceConfig)

# --------------------------------------------------------------------------- dispatch


def read_source(cfg: Any, base_dir: Path, *, mongo_client_factory: Callable | None = None) -> pd.DataFrame:
    """Read the table described by ``cfg`` (a source model or a plain mapping) into a DataFrame."""
    if isinstance(cfg, Mapping):
        cfg = _SOURCE_ADAPTER.validate_python(dict(cfg))
    if isinstance(cfg, FileSource):
        return read_file(_resolve(cfg.path, base_dir), format=cfg.format, sep=cfg.sep)
    if isinstance(cfg, MongoSource):
        return read_mongodb(cfg, client_factory=mongo_client_factory)
    if isinstance(cfg, SqlSource):
        return read_sql(cfg, base_dir)
    raise TypeError(f"not a source config: {type(cfg).__name__}")


def _resolve(path: Path, base_dir: Path) -> Path:
    """Return ``path`` unchanged if absolute, else joined onto ``base_dir``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def _env_value(name: str, what: str) -> str:
    """Return the non-empty value of environment variable ``name`` or raise DataError."""
    value = os.environ.get(name, "")
    if not value.strip():
        raise DataError(f"environment variable {name} is not set (it should hold the {what})")
    return value


# --------------------------------------------------------------------------- redaction


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its ``user:password@`` part replaced by REDACTED."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority = re.match(r"[^/?#]*", rest).group(0)
    if "@" not in authority:
        return url
    userinfo, host = authority.rsplit("@", 1)
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{REDACTED}@{host}{rest[len(authority):]}"


def _url_password(url: str) -> str | None:
    """Return the password embedded in ``url`` (as written), or None."""
    _, sep, rest = url.partition("://")
    authority = re.match(r"[^/?#]*", rest).group(0) if sep else ""
    userinfo = authority.rsplit("@", 1)[0] if "@" in authority else ""
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def _scrub(text: str, url: str) -> str:
    """Remove every spelling (raw and percent-decoded) of ``url``'s password from ``text``."""
    password = _url_password(url)
    for secret in {password, unquote(password)} if password else ():
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _mongo_hosts(uri: str) -> str:
    """Return ``[user:REDACTED@]host:port[,host:port]`` of a MongoDB URI (no path, no options)."""
    redacted = redact_url(uri)
    rest = redacted.partition("://")[2] or redacted
    return re.match(r"[^/?#]*", rest).group(0)


# --------------------------------------------------------------------------- files

_EXTENSIONS = {
    ".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv", ".csv.xz": "csv", ".csv.zip": "csv",
    ".csv.zst": "csv", ".parquet": "parquet", ".pq": "parquet",
}


def read_file(path: Path, format: str = "auto", sep: str = ",") -> pd.DataFrame:
    """Read a CSV or Parquet file; DataError if it is missing, unreadable, of unknown type or empty."""
    if format not in ("auto", "csv", "parquet"):
        raise ValueError(f"format must be 'auto', 'csv' or 'parquet', not {format!r}")
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        reason = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {reason}: {path}")
    kind = _file_kind(path) if format == "auto" else format
    try:
        frame = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {kind} file {path}: {exc}") from exc
    if frame.empty:
        raise DataError(f"data file has no rows: {path}")
    return frame


def _file_kind(path: Path) -> str:
    """Map a file's extension to ``csv`` or ``parquet``; DataError for anything else."""
    name = path.name.lower()
    for suffix, kind in _EXTENSIONS.items():
        if name.endswith(suffix):
            return kind
    known = ", ".join(_EXTENSIONS)
    raise DataError(f"unknown data file extension for {path} (known: {known}; or set format: csv|parquet)")


# --------------------------------------------------------------------------- MongoDB


def _default_mongo_client() -> Callable:
    """Return ``pymongo.MongoClient`` (imported lazily so file-only users need no driver)."""
    from pymongo import MongoClient

    return MongoClient


def _mongo_errors() -> tuple[type[Exception], type[Exception]]:
    """Return (retryable connection errors, any pymongo error) as exception classes/tuples."""
    from pymongo import errors

    retryable = (errors.ConnectionFailure, errors.ServerSelectionTimeoutError, errors.AutoReconnect)
    return retryable, errors.PyMongoError


def read_mongodb(cfg: MongoSource, *, client_factory: Callable | None = None) -> pd.DataFrame:
    """Read ``cfg.database.cfg.collection`` into a flat DataFrame (``_id`` dropped, nested keys dotted).

    Connection failures are retried ``cfg.max_retries`` times, sleeping
    ``retry_backoff_s * 2**attempt`` in between; then a DataError says the server is unreachable.
    """
    uri = _env_value(cfg.uri_env, "MongoDB URI")
    factory = client_factory or _default_mongo_client()
    retryable, any_mongo_error = _mongo_errors()
    attempts = cfg.max_retries + 1
    where = f"{cfg.database}.{cfg.collection}"
    for attempt in range(attempts):
        try:
            docs = _fetch_documents(factory, uri, cfg)
            break
        except retryable as exc:
            last_error = exc
            if attempt + 1 < attempts:
                time.sleep(cfg.retry_backoff_s * 2**attempt)
        except any_mongo_error as exc:
            raise DataError(f"MongoDB read of {where} at {_mongo_hosts(uri)} failed: "
                            f"{_scrub(str(exc), uri)}") from None
    else:
        raise DataError(f"MongoDB unreachable at {_mongo_hosts(uri)} after {attempts} attempts: "
                        f"{_scrub(str(last_error), uri)}") from None
    if not docs:
        raise DataError(f"MongoDB collection {where} returned no documents for filter "
                        f"{json.dumps(cfg.filter, default=str)}")
    return _documents_to_frame(docs)


def _fetch_documents(factory: Callable, uri: str, cfg: MongoSource) -> list[dict]:
    """Run the find() with filter/projection (``_id`` excluded) and drain the batched cursor."""
    client = factory(uri, serverSelectionTimeoutMS=cfg.timeout_ms)
    try:
        projection = {**(cfg.projection or {}), "_id": 0}
        cursor = client[cfg.database][cfg.collection].find(
            dict(cfg.filter), projection, batch_size=cfg.batch_size)
        return list(cursor)
    finally:
        client.close()


def _documents_to_frame(docs: list[dict]) -> pd.DataFrame:
    """Build one DataFrame from documents, flattening sub-documents into ``a.b`` columns."""
    nested = any(isinstance(value, dict) for doc in docs for value in doc.values())
    frame = pd.json_normalize(docs) if nested else pd.DataFrame.from_records(docs)
    return frame.drop(columns="_id", errors="ignore")


def push_to_mongo(df: pd.DataFrame, uri: str, database: str, collection: str, *,
                  batch_size: int = 10_000, replace: bool = False,
                  client_factory: Callable | None = None) -> int:
    """Insert the rows of ``df`` as documents into ``database.collection``; return rows inserted.

    Missing values (NaN, NaT, NA) are stored as null, numpy scalars as Python numbers and
    Timestamps as ``datetime``. ``replace=True`` drops the collection first. Inserts are
    unordered ``insert_many`` calls of ``batch_size`` documents.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be > 0")
    factory = client_factory or _default_mongo_client()
    _, any_mongo_error = _mongo_errors()
    try:
        return _insert_frame(factory(uri), df, database, collection, batch_size, replace)
    except any_mongo_error as exc:
        raise DataError(f"MongoDB write to {database}.{collection} at {_mongo_hosts(uri)} failed: "
                        f"{_scrub(str(exc), uri)}") from None


def _insert_frame(client: Any, df: pd.DataFrame, database: str, collection: str,
                  batch_size: int, replace: bool) -> int:
    """Drop (if asked) then fill the collection batch by batch; close the client."""
    try:
        coll = client[database][collection]
        if replace:
            coll.drop()
        inserted = 0
        for batch in _batches(_frame_to_documents(df), batch_size):
            inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
        return inserted
    finally:
        client.close()


def _batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Yield lists of at most ``size`` items."""
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _frame_to_documents(df: pd.DataFrame) -> Iterator[dict]:
    """Yield one BSON-ready dict per row (string keys, Python values, None for missing)."""
    keys = [str(column) for column in df.columns]
    columns = [_column_values(df.iloc[:, i]) for i in range(df.shape[1])]
    for row in zip(*columns):
        yield dict(zip(keys, row))


def _column_values(series: pd.Series) -> list:
    """Convert one column to a list of plain Python values (vectorised for numbers and datetimes)."""
    if series.dtype.kind == "M":  # datetime64[*] and datetime64[*, tz]
        values = pd.DatetimeIndex(series).to_pydatetime().tolist()
    elif series.dtype.kind in "biuf" and isinstance(series.dtype, np.dtype):
        values = series.to_numpy().tolist()
    else:
        return [_python_value(v) for v in series.tolist()]
    missing = series.isna().to_numpy()
    return [None if gone else v for v, gone in zip(values, missing)] if missing.any() else values


def _python_value(value: Any) -> Any:
    """Return ``value`` as something BSON can store: None for missing, builtins for numpy/pandas."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)  # BSON has no date-only type
    if isinstance(value, Mapping):
        return {str(k): _python_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_python_value(v) for v in value]
    return value


# --------------------------------------------------------------------------- SQL


def read_sql(cfg: SqlSource, base_dir: Path) -> pd.DataFrame:
    """Run ``cfg.query`` in chunks of ``cfg.chunk_size`` rows and return the concatenated frame."""
    import sqlalchemy

    raw_url = cfg.url if cfg.url is not None else _env_value(cfg.url_env, "SQLAlchemy database URL")
    shown = redact_url(raw_url)
    try:
        url = _resolve_sqlite(sqlalchemy.engine.make_url(raw_url), base_dir)
        shown = _show_url(url)
        frame = _run_query(sqlalchemy.create_engine(url), cfg.query, cfg.chunk_size)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError, ImportError) as exc:
        raise DataError(f"SQL source {shown} failed: {_scrub(_db_message(exc), raw_url)}") from None
    if frame.empty:
        raise DataError(f"SQL query returned no rows on {shown}: {cfg.query}")
    return frame


def _is_sqlite_file(url: Any) -> bool:
    """True for a SQLite URL naming a plain file (not in-memory, not a ``file:`` URI)."""
    database = url.database or ""
    return url.drivername.startswith("sqlite") and database not in ("", ":memory:") and (
        not database.startswith("file:"))


def _resolve_sqlite(url: Any, base_dir: Path) -> Any:
    """Make a relative SQLite path absolute against ``base_dir``; DataError if the file is missing.

    (SQLite would otherwise silently create an empty database and fail later with "no such table".)
    """
    if not _is_sqlite_file(url):
        return url
    path = _resolve(Path(url.database), base_dir).absolute()
    if not path.is_file():
        raise DataError(f"SQLite database file not found: {path}")
    return url.set(database=str(path))


def _show_url(url: Any) -> str:
    """Render a SQLAlchemy URL for messages, the password replaced by REDACTED."""
    return (url.set(password=REDACTED) if url.password else url).render_as_string(hide_password=False)


def _run_query(engine: Any, query: str, chunk_size: int) -> pd.DataFrame:
    """Read the query chunk by chunk on one connection, then dispose of the engine."""
    try:
        with engine.connect() as conn:
            chunks = list(pd.read_sql_query(query, conn, chunksize=chunk_size))
    finally:
        engine.dispose()
    if len(chunks) == 1:
        return chunks[0]
    # A chunk whose column is all NULL comes back as object; re-infer after joining the chunks.
    return pd.concat(chunks, ignore_index=True).infer_objects() if chunks else pd.DataFrame()


def _db_message(exc: BaseException) -> str:
    """Return the database driver's own message, unwrapping pandas' and SQLAlchemy's wrappers."""
    if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ is not None:
        exc = exc.__cause__
    message = str(getattr(exc, "orig", None) or exc).strip()
    return " ".join(line.strip() for line in message.splitlines()[:4] if line.strip())

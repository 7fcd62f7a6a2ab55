"""Run a SQL query through SQLAlchemy into a DataFrame, with connect and statement timeouts.

The URL is passed in (``read_source`` looks it up). Messages show it redacted; a URL SQLAlchemy
cannot parse, or would parse differently from the redactor (an unescaped ``@`` in the password),
is refused before any connection is tried, so no fragment of a password reaches a driver message.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd

from tabpipe.errors import DataError
from tabpipe.sources.base import SqlSource, redact_url, resolve_path, scrub, url_password

log = logging.getLogger(__name__)

_LIBPQ_DRIVERS = ("psycopg", "psycopg2")          # take libpq connection parameters
_MYSQL_DRIVERS = ("pymysql", "mysqldb")


def read_sql(cfg: SqlSource, url: str, base_dir: Path) -> pd.DataFrame:
    """Run ``cfg.query`` on ``url`` in chunks of ``cfg.chunk_size`` rows and return the joined frame."""
    import sqlalchemy

    parsed = _parse(url, sqlalchemy)
    parsed = _resolve_sqlite(parsed, base_dir)
    shown = redact_url(parsed)
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=timeout_connect_args(parsed, cfg))
        frame = _run_query(engine, cfg.query, cfg.chunk_size)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError, ImportError) as exc:
        raise DataError(f"SQL source {shown} failed: {scrub(_db_message(exc), url)}") from None
    if frame.empty:
        raise DataError(f"SQL query returned no rows on {shown}: {cfg.query}")
    return frame


def _parse(url: str, sqlalchemy: Any) -> Any:
    """``make_url(url)``, or a DataError that never repeats the URL's password."""
    hint = ("a SQLAlchemy URL is dialect+driver://user:password@host:port/database; percent-encode "
            "'@ : / ? #' in the user name and password (urllib.parse.quote_plus)")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise DataError(f"SQL source URL {redact_url(url)} is not valid: {hint}") from None
    written = url_password(url)
    if written is not None and parsed.password != unquote(written):
        raise DataError(f"SQL source URL {redact_url(url)} is ambiguous: {hint}")
    return parsed


def timeout_connect_args(url: Any, cfg: SqlSource) -> dict[str, Any]:
    """Driver arguments enforcing ``cfg``'s connect and statement timeouts, where the driver has them.

    PostgreSQL (psycopg/psycopg2): libpq ``connect_timeout``, ``options=-c statement_timeout=...``
    (kept after any ``options`` already in the URL) and TCP keepalives, so a dead server is noticed.
    MySQL (pymysql/mysqlclient): ``connect_timeout`` and ``read_timeout``. SQLite is a local file.
    Any other driver: none (logged; see docs/deploy.md).
    """
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "postgresql" and driver in _LIBPQ_DRIVERS:
        statement = f"-c statement_timeout={max(1, round(cfg.statement_timeout_s * 1000))}"
        options = url.query.get("options")
        options = options if isinstance(options, str) else " ".join(options or ())
        return {"connect_timeout": cfg.connect_timeout_s,
                "options": f"{options} {statement}".strip(),
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    if backend in ("mysql", "mariadb") and driver in _MYSQL_DRIVERS:
        return {"connect_timeout": cfg.connect_timeout_s, "read_timeout": max(1, round(cfg.statement_timeout_s))}
    if backend != "sqlite":
        log.warning("SQL source %s: connect/statement timeouts are not enforced for %s+%s; set them on the "
                    "server or in the URL", redact_url(url), backend, driver)
    return {}


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
    path = resolve_path(Path(url.database), base_dir).absolute()
    if not path.is_file():
        raise DataError(f"SQLite database file not found: {path}")
    return url.set(database=str(path))


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

"""The history store: runs, data quality, model metrics, drift, alerts and the prediction log.

One SQLAlchemy 2.x Core schema (``METADATA``, migrated only by the shipped Alembic revisions) behind
``HistoryStore``; every write one short transaction; times naive UTC inside, aware UTC outside;
every database failure a ``StoreError`` with the password redacted.
Design notes: docs/monitoring_store.md#the-stores-invariants
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tabpipe.errors import TabpipeError
from tabpipe.jsonable import to_json_ready

HISTORY_FILE = "history.sqlite"
BUSY_TIMEOUT_S = 30
MIGRATION_LOCK_KEY = 0x7AB9_1CE5   # PostgreSQL advisory lock id held while migrating
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD_REVISION = "0006"             # the newest migration's revision (a test checks it against Alembic's head)
CHUNK = 5000                       # ids per IN (...) list: below every database's parameter limit
RUN_KINDS = ("train", "predict", "monitor", "outcomes")
SCORE_FEATURE = "__score__"        # the drift row of the predicted probabilities (not a feature)
LOG_FOLDER = "prediction_log"      # the columnar log's folder (beside the SQLite file, or given)
LOG_FORMATS = ("parquet", "sql")


class StoreError(TabpipeError):
    """The history store could not be opened, migrated, read or written."""


# --------------------------------------------------------------------------- schema (head revision)

METADATA = MetaData()

RUNS = Table(
    "runs", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),           # train | predict | monitor | outcomes
    Column("status", String(16), nullable=False),         # running | succeeded | failed
    Column("error", Text),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("stage_seconds", JSON),                        # {"ingestion": 1.2, ...}
    Column("rows", Integer),
    Column("model_version", String(32)),
    Column("data_fingerprint", String(128)),
    Column("source", Text),                               # source description, credentials redacted
    Column("config_ref", Text),                           # where the config snapshot lives (run.json)
    Column("trigger_run_id", String(64)),                 # revision 0004: the monitoring run that started this one
    Index("ix_runs_kind_started", "kind", "started_at"),
    Index("ix_runs_model_version", "model_version"),
)

DATA_QUALITY = Table(
    "data_quality", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("column_name", String(255)),                   # NULL: the overall row, with ``score``
    Column("null_rate", Float),
    Column("duplicate_rate", Float),
    Column("rule_violation_rate", Float),                 # hard rules (refused rows)
    Column("expectation_violation_rate", Float),          # inferred expectations (warned, kept)
    Column("score", Float),                               # overall quality score in [0, 1]
    Index("ix_data_quality_run", "run_id"),
)

MODEL_METRICS = Table(
    "model_metrics", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", String(32), nullable=False),
    Column("run_id", String(64)),
    Column("window_start", DateTime),                     # NULL window: the training-time test split
    Column("window_end", DateTime),
    Column("metric", String(64), nullable=False),
    Column("value", Float),
    Column("estimated", Boolean, nullable=False),         # True: label-free estimate; False: realised
    Column("rows", Integer),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_model_metrics_version_window", "model_version", "window_start"),
)

DRIFT = Table(
    "drift", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("model_version", String(32), nullable=False),
    Column("window_start", DateTime),
    Column("window_end", DateTime),
    Column("feature", String(255), nullable=False),       # SCORE_FEATURE: the PSI of the predicted probabilities
    Column("psi", Float),                                 # NULL when the window is too small to mean anything
    Column("method", String(64)),
    Column("verdict", String(32)),                        # e.g. ok | watch | drift | too_few_rows
    Column("rows", Integer),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_drift_version_window", "model_version", "window_start"),
)

ALERTS = Table(
    "alerts", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("rule", String(128), nullable=False),
    Column("model_version", String(32)),
    Column("observed", Float),
    Column("threshold", Float),
    Column("window_start", DateTime),
    Column("window_end", DateTime),
    Column("rows", Integer),
    Column("message", Text),
    Column("status", String(16), nullable=False),         # pending | delivered | failed | suppressed | logged
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
    Index("ix_alerts_rule_version_created", "rule", "model_version", "created_at"),
)

PREDICTIONS = Table(
    "predictions", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("row_id", String(255)),                        # revision 0002: what outcomes join on
    Column("logged_at", DateTime, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("inputs", JSON),                               # sensitive columns hashed or dropped
    Column("probability", Float),
    Column("prediction", String(255)),
    Column("warnings", JSON),
    Column("outcome", String(255)),
    Column("outcome_at", DateTime),
    Index("ix_predictions_logged_at", "logged_at"),
    Index("ix_predictions_version_logged_at", "model_version", "logged_at"),
    Index("ix_predictions_request", "request_id", "row_index"),
    Index("ix_predictions_row_id", "row_id"),
)


LOG_FILES = Table(
    "log_files", METADATA,                                # revision 0005: the columnar log's Parquet files
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),                 # absolute path of the file
    Column("hour", DateTime, nullable=False),             # the partition: logged_at floored to the hour
    Column("model_version", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("first_logged_at", DateTime, nullable=False),
    Column("last_logged_at", DateTime, nullable=False),
    Column("written_at", DateTime, nullable=False),
    Index("ix_log_files_version_hour", "model_version", "hour"),
    Index("ix_log_files_hour", "hour"),
)

LOG_FILES_RETIRED = Table(
    "log_files_retired", METADATA,                        # revision 0006: files a compaction replaced
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),                 # absolute path of the replaced file
    Column("retired_at", DateTime, nullable=False),       # when the index stopped naming it
    Index("ix_log_files_retired_at", "retired_at"),
)

LOG_OUTCOMES = Table(
    "log_outcomes", METADATA,                             # revision 0005: outcomes of the columnar log's rows
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("row_id", String(255), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("hour", DateTime, nullable=False),             # the hour partition of the labelled rows
    Column("rows", Integer, nullable=False),              # log rows of that hour and version carrying row_id
    Column("outcome", String(255), nullable=False),
    Column("outcome_at", DateTime, nullable=False),
    Index("ix_log_outcomes_hour", "hour", "model_version"),
    Index("ix_log_outcomes_row", "row_id", "model_version", "hour", unique=True),
)


TRAINING_ROWS = Table(
    "training_rows", METADATA,                            # revision 0003: rows uploaded with POST /data
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upload_id", String(64), nullable=False),      # the request id of the upload
    Column("row_index", Integer, nullable=False),         # the row's position in that upload
    Column("uploaded_at", DateTime, nullable=False),
    Column("record", JSON, nullable=False),               # {column: value} as uploaded (schema columns + target)
    Index("ix_training_rows_upload", "upload_id"),
)


# --------------------------------------------------------------------------- URL rule


def store_url(env_url: str | None, *, registry_backend: str, registry_path: Path, artifacts_dir: Path) -> str:
    """The history store URL: ``env_url`` when given, else an SQLite file ``history.sqlite`` in the
    local registry folder, or in the artifacts folder when the registry is on S3."""
    if env_url:
        return env_url
    folder = registry_path if registry_backend == "local" else artifacts_dir
    return f"sqlite:///{Path(folder).resolve() / HISTORY_FILE}"


def log_folder(url: str, fallback: Path | None = None) -> Path | None:
    """Where the columnar prediction log's files live: ``prediction_log`` beside an SQLite store's file,
    else in ``fallback`` (None: no columnar log, e.g. an in-memory database)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        return Path(database).resolve().parent / LOG_FOLDER if database and database != ":memory:" else None
    return Path(fallback) / LOG_FOLDER if fallback is not None else None


def redacted(url: str | URL) -> str:
    """The URL for messages: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


# --------------------------------------------------------------------------- helpers


def utc(value: datetime | str | pd.Timestamp | None) -> datetime | None:
    """Naive UTC datetime for storage; naive inputs are taken to be UTC already."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


_LOG_COLUMNS = ("request_id", "row_index", "row_id", "logged_at", "model_version", "inputs", "probability",
                "prediction", "warnings")
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime text (compares correctly as text)
_plain = partial(to_json_ready, inf_as_null=False)    # a stored value: NaN as None, ±inf kept as sent
_ENCODE = partial(to_json_ready, nan_as_null=False, inf_as_null=False, strict=True)   # json.dumps' default=


def _naive_utc(value) -> datetime | None:
    """``utc`` with a fast path for datetime objects (no pandas per row)."""
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value
    return utc(value)


def _json_text(value: Any) -> str | None:
    """JSON text of a log value; NaN becomes null, ±inf stays as sent (the C encoder first, the careful path if needed)."""
    if value is None:
        return None
    try:
        return json.dumps(value, allow_nan=False, default=_ENCODE, separators=(",", ":"))
    except (ValueError, TypeError):
        return json.dumps(_plain(value), separators=(",", ":"))


def _aware(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_localize("UTC")


def now_utc() -> datetime:
    """The current time as naive UTC (how the store keeps times)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _frame(result, time_columns: Iterable[str]) -> pd.DataFrame:
    frame = pd.DataFrame(result.mappings().all(), columns=list(result.keys()))
    for name in time_columns:
        if name in frame:
            frame[name] = pd.to_datetime(frame[name]).dt.tz_localize("UTC")
    return frame


def _switch_to_wal(cursor: sqlite3.Cursor, *, deadline: float) -> None:
    """Put the database in WAL mode, waiting for other processes as long as the busy timeout.

    Two processes switching the same new file at once each hold a shared lock and want an
    exclusive one; SQLite then fails one of them at once with "database is locked" instead of
    calling its busy handler (deadlock avoidance). That is a wait, not an error: retry.
    """
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.25)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of history store {redacted(url)}: {exc}") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, issues BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        _switch_to_wal(cursor, deadline=time.monotonic() + BUSY_TIMEOUT_S)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock now: no deadlock on upgrade

    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the store's connection settings (SQLite: WAL, busy timeout)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"history store URL is not a valid SQLAlchemy URL: {exc}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot use history store {redacted(parsed)}: {exc}") from None


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` with the shipped Alembic migrations, one process at a time."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def at_head(engine: Engine) -> bool:
    """Whether the database is already at ``HEAD_REVISION``, read with one query (no Alembic import: opening a
    store that needs no upgrade costs milliseconds, not a quarter of a second). False when it cannot tell (an
    empty database has no ``alembic_version`` table): the caller migrates, as before."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD_REVISION]
    except SQLAlchemyError:
        return False


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --------------------------------------------------------------------------- the store


class _Replaced(Exception):
    """Another process replaced or removed a log file first (``replace_log_files`` rolls back)."""


class HistoryStore:
    """Read and write the history; every method is one short transaction.

    Safe to share between threads (SQLAlchemy's pool); open one per process.
    """

    def __init__(self, engine: Engine, *, log_dir: Path | None = None, log_format: str = "sql"):
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {LOG_FORMATS}, not {log_format!r}")
        if log_format == "parquet" and log_dir is None:
            raise StoreError(f"history store {redacted(engine.url)}: the Parquet prediction log needs a folder")
        self.engine = engine
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.log_format = log_format

    @classmethod
    def open(cls, url: str, *, migrate_to: str | None = "head", log_dir: Path | None = None,
             log_format: str = "sql") -> HistoryStore:
        """Connect to ``url`` and bring its schema to ``migrate_to`` (None: do not migrate).

        ``log_format``: where ``log_predictions`` writes — ``sql`` (the ``predictions`` table) or
        ``parquet`` (hour-partitioned files in ``log_dir``, indexed in ``log_files``). Reads cover both.
        ``log_dir`` default: ``log_folder(url)`` (beside an SQLite file)."""
        store = cls(make_engine(url), log_dir=log_dir if log_dir is not None else log_folder(url),
                    log_format=log_format)
        if migrate_to is not None and not (migrate_to in ("head", HEAD_REVISION) and at_head(store.engine)):
            with store._translated("migrate"):
                migrate(store.engine, migrate_to)
        return store

    @property
    def url(self) -> str:
        """The database URL with its password redacted."""
        return redacted(self.engine.url)

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"history store {self.url}: {what} failed: {detail}") from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        with self._translated(what), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with self._translated(what), self.engine.connect() as conn:
            yield conn

    # ---- runs

    def record_run(self, *, kind: str, run_id: str | None = None, status: str = "running",
                   started_at: datetime | str | None = None, model_version: str | None = None,
                   data_fingerprint: str | None = None, source: str | None = None,
                   config_ref: str | None = None, rows: int | None = None, trigger_run_id: str | None = None) -> str:
        """Insert a run (``kind``: train | predict | monitor | outcomes); returns its id (new uuid if not given).
        ``trigger_run_id``: the monitoring run whose decision started this run (``monitor --retrain``)."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {RUN_KINDS}, not {kind!r}")
        run_id = run_id or uuid.uuid4().hex
        with self._write("record_run") as conn:
            conn.execute(RUNS.insert().values(
                run_id=run_id, kind=kind, status=status, started_at=utc(started_at) or now_utc(),
                model_version=model_version, data_fingerprint=data_fingerprint, source=source,
                config_ref=config_ref, rows=rows, trigger_run_id=trigger_run_id))
        return run_id

    def finish_run(self, run_id: str, *, status: str, error: str | None = None,
                   finished_at: datetime | str | None = None, stage_seconds: Mapping[str, float] | None = None,
                   rows: int | None = None, model_version: str | None = None) -> None:
        """Close a run: status (succeeded | failed), error, per-stage seconds; unset fields keep their value."""
        values: dict[str, Any] = {"status": status, "finished_at": utc(finished_at) or now_utc()}
        for name, value in (("error", error), ("rows", rows), ("model_version", model_version),
                            ("stage_seconds", _plain(stage_seconds))):
            if value is not None:
                values[name] = value
        with self._write("finish_run") as conn:
            done = conn.execute(update(RUNS).where(RUNS.c.run_id == run_id).values(**values))
        if done.rowcount == 0:
            raise StoreError(f"history store {self.url}: no run {run_id!r} to finish")

    def run(self, run_id: str) -> dict | None:
        """One run as a dict (times as aware UTC), or None."""
        with self._read("run") as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        record = dict(row)
        for name in ("started_at", "finished_at"):
            if record[name] is not None:
                record[name] = record[name].replace(tzinfo=timezone.utc)
        return record

    def runs(self, *, kind: str | None = None, model_version: str | None = None, limit: int = 50) -> pd.DataFrame:
        """The newest runs first."""
        query = select(RUNS).order_by(RUNS.c.started_at.desc()).limit(limit)
        if kind:
            query = query.where(RUNS.c.kind == kind)
        if model_version:
            query = query.where(RUNS.c.model_version == model_version)
        with self._read("runs") as conn:
            return _frame(conn.execute(query), ("started_at", "finished_at"))

    # ---- data quality

    def record_quality(self, run_id: str, columns: Mapping[str, Mapping[str, float]], *, score: float) -> None:
        """Per-column rates (keys: null_rate, duplicate_rate, rule_violation_rate,
        expectation_violation_rate) plus one overall score for the run."""
        allowed = {"null_rate", "duplicate_rate", "rule_violation_rate", "expectation_violation_rate"}
        rows = []
        for name, rates in columns.items():
            unknown = set(rates) - allowed
            if unknown:
                raise ValueError(f"unknown data-quality measures for column {name!r}: {sorted(unknown)}")
            rows.append({"run_id": run_id, "column_name": name, "score": None,
                         **{key: _plain(rates.get(key)) for key in allowed}})
        rows.append({"run_id": run_id, "column_name": None, "score": float(score),
                     **dict.fromkeys(allowed)})
        with self._write("record_quality") as conn:
            conn.execute(DATA_QUALITY.insert(), rows)

    def quality(self, run_id: str) -> pd.DataFrame:
        """Per-column rows, then the overall row (``column_name`` None, ``score`` set)."""
        query = (select(DATA_QUALITY).where(DATA_QUALITY.c.run_id == run_id)
                 .order_by(DATA_QUALITY.c.column_name.is_(None), DATA_QUALITY.c.id))
        with self._read("quality") as conn:
            return _frame(conn.execute(query), ())

    # ---- prediction log

    def log_predictions(self, rows: list[Mapping[str, Any]]) -> int:
        """Append scored rows. Keys: request_id, row_index, model_version, probability, prediction,
        and optionally row_id (default ``request_id:row_index``), logged_at (default now), inputs (dict), warnings (list).
        Inputs must already have sensitive columns protected (see ``monitoring.sensitive``).
        Written to the ``predictions`` table or, with ``log_format="parquet"``, to Parquet files indexed in ``log_files``."""
        if self.log_format == "parquet":
            return self._log_columnar(rows)
        return self._log_sql(rows)

    def _log_columnar(self, rows: list[Mapping[str, Any]]) -> int:
        """The rows as Parquet files (one per hour and version), then their index rows: a file the index
        names always exists whole; a file written but not indexed (the store failed) is never read."""
        if not rows:
            return 0
        from tabpipe.history.columnar import rows_table, write_partitions

        stamp = now_utc()
        table = rows_table(
            rows, row_id=lambda r: str(r["row_id"]) if r.get("row_id") is not None else f"{r['request_id']}:{r['row_index']}",
            logged_at=lambda r: _naive_utc(r.get("logged_at")) or stamp, number=_plain, text=_json_text)
        return self.index_log_files(write_partitions(self.log_dir, table))

    def log_columns(self, columns: Mapping[str, Sequence], inputs: Mapping[str, Sequence]) -> int:
        """Append rows to the Parquet log given column by column, already in their stored form
        (``predlog.LogColumns``: the ``columnar.META`` columns, ``logged_at`` naive UTC, the protected inputs):
        what ``log_predictions`` writes for the same rows, without a dict per row."""
        if self.log_format != "parquet":
            raise ValueError("log_columns writes the Parquet log; the SQL log takes rows (log_predictions)")
        if len(columns["row_id"]) == 0:
            return 0
        from tabpipe.history.columnar import log_table, write_partitions

        return self.index_log_files(write_partitions(self.log_dir, log_table(columns, inputs)))

    def index_log_files(self, files) -> int:
        """Record written log files (``columnar.WrittenFile``) in ``log_files``; returns their rows."""
        values = [{"path": str(self.log_dir.resolve() / f.path), "hour": f.hour, "model_version": f.model_version, "rows": f.rows,
                   "first_logged_at": f.first_logged_at, "last_logged_at": f.last_logged_at, "written_at": now_utc()}
                  for f in files]
        if values:
            with self._write("log_predictions") as conn:
                conn.execute(LOG_FILES.insert(), values)
        return sum(f.rows for f in files)

    def _log_sql(self, rows: list[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        stamp = now_utc()
        values = [(
            str(row["request_id"]), int(row["row_index"]),
            str(row["row_id"]) if row.get("row_id") is not None else f"{row['request_id']}:{row['row_index']}",
            _naive_utc(row.get("logged_at")) or stamp, str(row["model_version"]), _json_text(row.get("inputs")),
            _plain(row.get("probability")),
            None if row.get("prediction") is None else str(_plain(row["prediction"])),
            _json_text(row.get("warnings") or []),
        ) for row in rows]
        with self._write("log_predictions") as conn:
            # the hot path of the service's writer: one executemany straight to the driver, values
            # already converted (SQLAlchemy's per-row bind processing costs ~10x more)
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                values = [(*v[:3], v[3].strftime(SQLITE_TIME), *v[4:]) for v in values]
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(
                f"INSERT INTO predictions ({', '.join(_LOG_COLUMNS)}) VALUES ({', '.join([mark] * len(_LOG_COLUMNS))})",  # nosec B608 -- constant column names, values bound
                values)
        return len(values)

    def replace_log_files(self, old: list[dict], new, *, at: datetime | None = None) -> bool:
        """In one transaction: stop indexing the ``old`` files (``log_files`` rows), index the ``new`` ones
        (``columnar.WrittenFile``, written under ``log_dir``) and record the old paths as retired (deleted later
        by ``retired_log_files`` / ``forget_retired``: a reader that listed them may still be reading), stamped
        ``at`` (default now). False, and nothing changed, when another process replaced or removed any of the old
        files first."""
        from sqlalchemy import delete

        stamp = utc(at) if at is not None else now_utc()
        try:
            with self._write("replace log files") as conn:
                gone = conn.execute(delete(LOG_FILES).where(LOG_FILES.c.id.in_([f["id"] for f in old])))
                if gone.rowcount != len(old):
                    raise _Replaced
                if new:
                    conn.execute(LOG_FILES.insert(), [
                        {"path": str(self.log_dir.resolve() / f.path), "hour": f.hour, "model_version": f.model_version,
                         "rows": f.rows, "first_logged_at": f.first_logged_at, "last_logged_at": f.last_logged_at,
                         "written_at": stamp} for f in new])
                if old:
                    conn.execute(LOG_FILES_RETIRED.insert(), [{"path": str(f["path"]), "retired_at": stamp}
                                                              for f in old])
        except _Replaced:       # rolled back
            return False
        return True

    def retired_log_files(self, before: datetime) -> list[dict]:
        """Retired files (``replace_log_files``) retired before ``before``: ``{"id", "path"}``, oldest first."""
        query = select(LOG_FILES_RETIRED.c.id, LOG_FILES_RETIRED.c.path).where(
            LOG_FILES_RETIRED.c.retired_at < utc(before)).order_by(LOG_FILES_RETIRED.c.id)
        with self._read("retired log files") as conn:
            return [{"id": row.id, "path": Path(row.path)} for row in conn.execute(query)]

    def forget_retired(self, ids: list[int]) -> None:
        """Drop the records of retired files already deleted from disk."""
        from sqlalchemy import delete

        if ids:
            with self._write("forget retired log files") as conn:
                conn.execute(delete(LOG_FILES_RETIRED).where(LOG_FILES_RETIRED.c.id.in_(ids)))

    def indexed_paths(self) -> set[str]:
        """Every path the log's index names, current or retired (a file of the log folder outside them is unindexed)."""
        with self._read("log files") as conn:
            return ({row[0] for row in conn.execute(select(LOG_FILES.c.path))}
                    | {row[0] for row in conn.execute(select(LOG_FILES_RETIRED.c.path))})

    def log_files(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
                  version: str | None = None) -> list[dict]:
        """The indexed log files that may hold rows with ``since <= logged_at < until`` (of ``version``),
        oldest first: dicts of the ``log_files`` columns (``path`` absolute: any process can read them)."""
        query = select(LOG_FILES).order_by(LOG_FILES.c.first_logged_at, LOG_FILES.c.id)
        if since is not None:
            query = query.where(LOG_FILES.c.last_logged_at >= utc(since))
        if until is not None:
            query = query.where(LOG_FILES.c.first_logged_at < utc(until))
        if version is not None:
            query = query.where(LOG_FILES.c.model_version == version)
        with self._read("log_files") as conn:
            files = [dict(row) for row in conn.execute(query).mappings()]
        for f in files:
            f["path"] = Path(f["path"])
        return files

    def hour_outcomes(self, hour: datetime, version: str) -> dict[str, str]:
        """{row_id: outcome} attached to the columnar log's rows of one hour partition and version."""
        return dict(self._hour_outcome_rows(hour, version))

    def _hour_outcome_rows(self, hour: datetime, version: str) -> list[tuple[str, str]]:
        """(row_id, outcome) pairs of one hour partition and version, as the driver returns them: both columns
        are text, so there is nothing for SQLAlchemy to convert, and a million labels come back in a second,
        not in four."""
        query = select(LOG_OUTCOMES.c.row_id, LOG_OUTCOMES.c.outcome).where(
            LOG_OUTCOMES.c.hour == hour, LOG_OUTCOMES.c.model_version == version)
        with self._read("hour_outcomes") as conn:
            return conn.execute(query).cursor.fetchall()

    def _hour_outcome_times(self, hour: datetime, version: str) -> dict[str, datetime]:
        query = select(LOG_OUTCOMES.c.row_id, LOG_OUTCOMES.c.outcome_at).where(
            LOG_OUTCOMES.c.hour == hour, LOG_OUTCOMES.c.model_version == version)
        with self._read("hour_outcomes") as conn:
            return dict(conn.execute(query).all())

    def columnar_chunks(self, inputs: Iterable[str], *, since: datetime | str | None = None,
                        until: datetime | str | None = None, version: str | None = None, chunk_rows: int = 65_536,
                        dictionary: bool = False, files: list[dict] | None = None,
                        ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """The columnar log's rows of a window, file by file in batches of at most ``chunk_rows``: (an Arrow table
        of the input columns ``inputs`` that the file has, ``probability`` as float64, ``outcome`` as an object
        array, None where no label arrived). Only the files of the window and only those columns are read.
        ``dictionary``: text input columns as Arrow dictionaries (``columnar.read_batches``); ``files``: only these
        of the window's files (``log_files`` rows, in their order)."""
        from tabpipe.history.columnar import INPUT, read_batches

        import pyarrow as pa
        import pyarrow.compute as pc

        since, until = utc(since), utc(until)
        wanted = [INPUT + name for name in inputs]
        cached: dict[tuple, tuple] = {}
        for f in self.log_files(since=since, until=until, version=version) if files is None else files:
            key = (f["hour"], f["model_version"])
            if key not in cached:                             # files come hour by hour: keep one hour's outcomes
                pairs = self._hour_outcome_rows(*key)
                cached = {key: (bool(pairs), pa.array([p[0] for p in pairs], pa.string()),
                                np.array([p[1] for p in pairs], dtype=object))}
                del pairs
            labels, ids, texts = cached[key]
            columns = [*wanted, "probability", *(["row_id"] if labels else [])]
            inner = (since is None or f["first_logged_at"] >= since) and (until is None or f["last_logged_at"] < until)
            for table in read_batches(f["path"], columns, since=None if inner else since, until=None if inner else until,
                                      batch_rows=chunk_rows, dictionary=dictionary):
                if table.num_rows == 0:
                    continue
                proba = table.column("probability").to_numpy(zero_copy_only=False).astype(float)
                if labels:                # each row's outcome text by its row_id (Arrow's hash lookup), else None
                    at = pc.fill_null(pc.index_in(table.column("row_id"), value_set=ids), -1).to_numpy()
                    outcome = np.full(table.num_rows, None, dtype=object)
                    outcome[at >= 0] = texts[at[at >= 0]]
                else:
                    outcome = np.full(table.num_rows, None, dtype=object)
                keep = [c for c in table.column_names if c.startswith(INPUT)]
                yield (table.select(keep).rename_columns([c[len(INPUT):] for c in keep]), proba, outcome)

    def _columnar_frame(self, since, until, version, with_inputs: bool) -> pd.DataFrame:
        """The columnar log's rows of a window as ``predictions`` gives them (``id`` None)."""
        from tabpipe.history.columnar import INPUT, read_batches

        since, until = utc(since), utc(until)
        frames = []
        for f in self.log_files(since=since, until=until, version=version):
            tables = list(read_batches(f["path"], pq_columns(f["path"]), since=since, until=until))
            if not tables:
                continue
            import pyarrow as pa

            table = pa.concat_tables(tables)
            meta = table.select([c for c in table.column_names if not c.startswith(INPUT)]).to_pandas()
            if with_inputs:
                names = [c for c in table.column_names if c.startswith(INPUT)]
                records = table.select(names).rename_columns([c[len(INPUT):] for c in names]).to_pylist()
                meta["inputs"] = records
                meta["warnings"] = [json.loads(w) if w is not None else None for w in meta["warnings"]]
            else:
                meta = meta.drop(columns=["warnings"])
            labels = self.hour_outcomes(f["hour"], f["model_version"])
            times = self._hour_outcome_times(f["hour"], f["model_version"]) if labels else {}
            meta["outcome"] = meta["row_id"].map(labels) if labels else None
            meta["outcome_at"] = meta["row_id"].map(times) if times else None
            frames.append(meta)
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        frame["logged_at"] = pd.to_datetime(frame["logged_at"]).dt.tz_localize("UTC")
        frame["outcome_at"] = pd.to_datetime(frame["outcome_at"]).dt.tz_localize("UTC")
        frame["outcome"] = frame["outcome"].astype(object).where(frame["outcome"].notna(), None)
        frame.insert(0, "id", None)
        return frame

    def predictions(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
                    version: str | None = None, labelled: bool | None = None,
                    limit: int | None = None, with_inputs: bool = True) -> pd.DataFrame:
        """Logged predictions with ``since <= logged_at < until`` (oldest first); ``labelled``: only rows
        with (True) or without (False) an outcome. ``inputs``/``warnings`` come back parsed (left out,
        with the cost of parsing them, when ``with_inputs`` is false). Rows of the columnar log have ``id`` None."""
        columns = PREDICTIONS.c if with_inputs else [c for c in PREDICTIONS.c if c.name not in ("inputs", "warnings")]
        query = _window(select(*columns), since, until, version)
        if labelled is not None:
            query = query.where(PREDICTIONS.c.outcome.isnot(None) if labelled else PREDICTIONS.c.outcome.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self._read("predictions") as conn:
            frame = _frame(conn.execute(query), ("logged_at", "outcome_at"))
        columnar = self._columnar_frame(since, until, version, with_inputs)
        if columnar.empty:
            return frame
        if labelled is not None:
            columnar = columnar[columnar["outcome"].notna() == labelled]
        both = pd.concat([frame.astype(object), columnar[frame.columns].astype(object)], ignore_index=True)
        both["logged_at"] = pd.to_datetime(both["logged_at"], utc=True)
        both["outcome_at"] = pd.to_datetime(both["outcome_at"], utc=True)
        both = both.sort_values("logged_at", kind="stable").reset_index(drop=True)
        for name in ("row_index", "probability"):
            both[name] = pd.to_numeric(both[name])
        return both.head(limit) if limit is not None else both

    def prediction_chunks(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
                          version: str | None = None, chunk_rows: int = 100_000, columnar: bool = True,
                          ) -> Iterator[tuple[list[str | None], np.ndarray, list[str | None]]]:
        """The logged predictions of a window (as ``predictions`` selects and orders them), streamed in
        chunks of ``chunk_rows``: (``inputs`` as the stored JSON text, ``probability`` as float64, ``outcome``).
        The JSON is not parsed here: ``monitoring.logread`` turns the text into columns in bulk. The rows of
        the columnar log follow (their inputs made JSON text; ``columnar=False`` leaves them out — read them
        with ``columnar_chunks``)."""
        query = _window(select(cast(PREDICTIONS.c.inputs, Text), PREDICTIONS.c.probability, PREDICTIONS.c.outcome),
                        since, until, version)
        with self._read("prediction_chunks") as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            for part in result.partitions():
                texts, proba, outcomes = zip(*part)
                yield list(texts), np.asarray(proba, dtype=float), list(outcomes)
        if not columnar:
            return
        names: list[str] = []
        for f in self.log_files(since=since, until=until, version=version):
            names.extend(c[len("inputs."):] for c in pq_columns(f["path"]) if c.startswith("inputs."))
        for table, proba, outcome in self.columnar_chunks(list(dict.fromkeys(names)), since=since, until=until,
                                                          version=version, chunk_rows=chunk_rows):
            texts = [_json_text(record) for record in table.to_pylist()]
            yield texts, proba, list(outcome)

    def has_sql_rows(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
                     version: str | None = None) -> bool:
        """Whether the SQL ``predictions`` table holds rows of the window (a store that logged before the
        columnar log existed, or logs with ``format: sql``)."""
        query = _window(select(PREDICTIONS.c.id), since, until, version).order_by(None).limit(1)
        with self._read("has_sql_rows") as conn:
            return conn.execute(query).first() is not None

    def reopen_args(self) -> tuple[str, Path | None]:
        """(URL with its password, log folder): what ``HistoryStore.open(url, migrate_to=None, log_dir=...)`` in
        another process of this machine needs to read this store. Never to be written or shown."""
        return self.engine.url.render_as_string(hide_password=False), self.log_dir

    def prediction_summary(self, *, version: str | None = None) -> dict:
        """{"logged", "labelled", "first", "last"} over the log (of ``version``), computed in the database."""
        query = select(func.count(), func.count(PREDICTIONS.c.outcome), func.min(PREDICTIONS.c.logged_at),
                       func.max(PREDICTIONS.c.logged_at))
        files = select(func.coalesce(func.sum(LOG_FILES.c.rows), 0), func.min(LOG_FILES.c.first_logged_at),
                       func.max(LOG_FILES.c.last_logged_at))
        outcomes = select(func.coalesce(func.sum(LOG_OUTCOMES.c.rows), 0))
        if version is not None:
            query = query.where(PREDICTIONS.c.model_version == version)
            files = files.where(LOG_FILES.c.model_version == version)
            outcomes = outcomes.where(LOG_OUTCOMES.c.model_version == version)
        with self._read("prediction_summary") as conn:
            logged, labelled, first, last = conn.execute(query).one()
            file_rows, file_first, file_last = conn.execute(files).one()
            file_labelled = conn.execute(outcomes).scalar_one()
        firsts = [t for t in (first, file_first) if t is not None]
        lasts = [t for t in (last, file_last) if t is not None]
        return {"logged": int(logged) + int(file_rows), "labelled": int(labelled) + int(file_labelled),
                "first": _aware(min(firsts)) if firsts else None, "last": _aware(max(lasts)) if lasts else None}

    def count_predictions(self, *, version: str | None = None) -> int:
        """Number of logged predictions (of model ``version`` only, when given)."""
        query = select(func.count()).select_from(PREDICTIONS)
        files = select(func.coalesce(func.sum(LOG_FILES.c.rows), 0))
        if version is not None:
            query = query.where(PREDICTIONS.c.model_version == version)
            files = files.where(LOG_FILES.c.model_version == version)
        with self._read("count_predictions") as conn:
            return int(conn.execute(query).scalar_one()) + int(conn.execute(files).scalar_one())

    def _columnar_matches(self, row_ids: list[str], version: str | None,
                          since: datetime | None = None) -> dict[tuple, int]:
        """{(row_id, model_version, hour): rows} of the columnar log's rows whose ``row_id`` is in ``row_ids``
        (a scan of the ``row_id`` column of every indexed file of ``version`` holding rows logged at or after
        ``since``)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        found: dict[tuple, int] = {}
        if not row_ids:
            return found
        wanted = pa.array(row_ids, pa.string())
        for f in self.log_files(version=version, since=since):
            ids = pq.read_table(f["path"], columns=["row_id"]).column("row_id")
            hits = ids.filter(pc.is_in(ids, value_set=wanted))
            if len(hits):
                counted = pc.value_counts(hits)
                for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
                    key = (value, f["model_version"], f["hour"])
                    found[key] = found.get(key, 0) + int(count)
        return found

    def attach_outcomes(self, outcomes: Mapping[str, Any], *, at: datetime | str | None = None,
                        version: str | None = None) -> int:
        """Set ``outcome`` (as text) on every logged prediction whose ``row_id`` is a key of ``outcomes``
        (restricted to ``version`` if given). Returns the number of prediction rows updated. Rows of the
        columnar log get theirs in ``log_outcomes`` (one row per row id, version and hour; a later label replaces
        an earlier one), joined when the log is read."""
        if not outcomes:
            return 0
        stamp = utc(at) or now_utc()
        statement = (update(PREDICTIONS).where(PREDICTIONS.c.row_id == bindparam("rid"))
                     .values(outcome=bindparam("label"), outcome_at=stamp))
        if version is not None:
            statement = statement.where(PREDICTIONS.c.model_version == version)
        params = [{"rid": str(key), "label": str(_plain(label))} for key, label in outcomes.items()]
        labels = {p["rid"]: p["label"] for p in params}
        columnar = self._columnar_matches(list(labels), version)
        matched = sum(columnar.values())
        with self._write("attach_outcomes") as conn:
            for start in range(0, len(params), CHUNK):
                chunk = params[start:start + CHUNK]
                counted = (select(func.count()).select_from(PREDICTIONS)
                           .where(PREDICTIONS.c.row_id.in_([p["rid"] for p in chunk])))
                if version is not None:
                    counted = counted.where(PREDICTIONS.c.model_version == version)
                matched += conn.execute(counted).scalar_one()
                conn.execute(statement, chunk)
            if columnar:
                conn.execute(_upsert_outcomes(conn.dialect.name), [
                    {"row_id": r, "model_version": v, "hour": h, "rows": n, "outcome": labels[r], "outcome_at": stamp}
                    for (r, v, h), n in columnar.items()])
        return int(matched)

    def logged_row_ids(self, row_ids: Iterable[str], *, since: datetime | str | None = None,
                       files: bool = True) -> set[str]:
        """The ``row_ids`` that at least one logged prediction carries (what outcomes can attach to).
        The columnar log's files are scanned (their ``row_id`` column only). ``since``: only rows logged at or
        after it are looked at (a caller that knows none of its rows can be older, e.g. the stream consumer
        from its messages' ids, keeps the scan to the newest files). ``files=False``: the ``predictions``
        table only (a caller keeping the files' ids itself: ``logged_ids.LoggedIds``)."""
        wanted = sorted({str(key) for key in row_ids})
        since = utc(since)
        found: set[str] = set()
        with self._read("logged_row_ids") as conn:
            if since is not None and wanted and conn.execute(   # nothing logged in the table since then: no lookup
                    select(PREDICTIONS.c.id).where(PREDICTIONS.c.logged_at >= since).limit(1)).first() is None:
                wanted_in_table: list[str] = []
            else:
                wanted_in_table = wanted
            for start in range(0, len(wanted_in_table), CHUNK):
                query = select(PREDICTIONS.c.row_id).distinct().where(
                    PREDICTIONS.c.row_id.in_(wanted_in_table[start:start + CHUNK]))
                if since is not None:
                    query = query.where(PREDICTIONS.c.logged_at >= since)
                found.update(conn.execute(query).scalars())
        if files:
            found.update(row_id for row_id, _, _ in self._columnar_matches(wanted, None, since))
        return found

    # ---- uploaded training rows

    def add_training_rows(self, upload_id: str, rows: Iterable[tuple[int, Mapping[str, Any]]],
                          *, at: datetime | str | None = None) -> tuple[int, int | None]:
        """Append validated training rows ``(row_index, {column: value})`` of one upload in one transaction;
        returns (rows written, id of the last one). An ``upload_id`` already stored writes nothing and
        returns (0, the id of its last row): a client retrying an upload under the same id adds no duplicates."""
        stamp = utc(at) or now_utc()
        values = [{"upload_id": str(upload_id), "row_index": int(index), "uploaded_at": stamp,
                   "record": _plain(dict(record))} for index, record in rows]
        if not values:
            return 0, None
        last_of_upload = select(func.max(TRAINING_ROWS.c.id)).where(TRAINING_ROWS.c.upload_id == str(upload_id))
        with self._write("add_training_rows") as conn:
            earlier = conn.execute(last_of_upload).scalar_one()
            if earlier is not None:
                return 0, int(earlier)
            conn.execute(TRAINING_ROWS.insert(), values)
            last = conn.execute(last_of_upload).scalar_one()
        return len(values), int(last)

    def training_rows(self, *, through_id: int | None = None) -> pd.DataFrame:
        """Uploaded training rows in upload order, one column per uploaded field; the index (``upload_row``)
        is the row's store id, so ``frame.index.max()`` is the "through id" a training run records."""
        query = select(TRAINING_ROWS.c.id, TRAINING_ROWS.c.record).order_by(TRAINING_ROWS.c.id)
        if through_id is not None:
            query = query.where(TRAINING_ROWS.c.id <= int(through_id))
        with self._read("training_rows") as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame([record for _, record in rows], index=pd.Index([i for i, _ in rows], name="upload_row"))
        return frame

    # ---- model metrics

    def record_window_metrics(self, version: str, metrics: Mapping[str, float], *, estimated: bool,
                              window_start: datetime | str | None = None, window_end: datetime | str | None = None,
                              rows: int | None = None, run_id: str | None = None) -> None:
        """Metrics of ``version`` over one window: ``estimated`` (label-free) or realised (from outcomes).
        A window of None/None is the training-time test split."""
        stamp = now_utc()
        values = [{"model_version": version, "run_id": run_id, "window_start": utc(window_start),
                   "window_end": utc(window_end), "metric": name, "value": _plain(value),
                   "estimated": bool(estimated), "rows": rows, "recorded_at": stamp}
                  for name, value in metrics.items()]
        if values:
            with self._write("record_window_metrics") as conn:
                conn.execute(MODEL_METRICS.insert(), values)

    def metrics(self, version: str | None = None) -> pd.DataFrame:
        """Every recorded metric row (oldest window first)."""
        query = select(MODEL_METRICS).order_by(MODEL_METRICS.c.window_start, MODEL_METRICS.c.id)
        if version is not None:
            query = query.where(MODEL_METRICS.c.model_version == version)
        with self._read("metrics") as conn:
            return _frame(conn.execute(query), ("window_start", "window_end", "recorded_at"))

    def metric_trend(self, version: str, metric: str | None = None) -> pd.DataFrame:
        """One row per (window, metric): ``estimated`` and ``realised`` side by side (the latest value of
        each), with their row counts; windows oldest first. Empty frame if nothing was recorded."""
        frame = self.metrics(version)
        columns = ["window_start", "window_end", "metric", "estimated", "realised", "estimated_rows", "realised_rows"]
        if metric is not None:
            frame = frame[frame["metric"] == metric]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame = frame.assign(kind=frame["estimated"].map({True: "estimated", False: "realised"}))
        latest = frame.sort_values("id").groupby(["window_start", "window_end", "metric", "kind"], dropna=False).last()
        value = latest["value"].unstack("kind")
        counts = latest["rows"].unstack("kind").add_suffix("_rows")
        trend = value.join(counts).reset_index()
        trend.columns.name = None
        for name in columns:
            if name not in trend:
                trend[name] = None
        return trend[columns].sort_values(["window_start", "metric"], na_position="first").reset_index(drop=True)

    # ---- drift

    def record_drift(self, version: str, features: Iterable[Mapping[str, Any]], *,
                     window_start: datetime | str | None = None, window_end: datetime | str | None = None,
                     rows: int | None = None, run_id: str | None = None) -> None:
        """One row per feature: keys ``feature``, ``psi`` (None allowed), ``method``, ``verdict``."""
        stamp = now_utc()
        values = [{"model_version": version, "run_id": run_id, "window_start": utc(window_start),
                   "window_end": utc(window_end), "feature": str(item["feature"]), "psi": _plain(item.get("psi")),
                   "method": item.get("method"), "verdict": item.get("verdict"), "rows": rows,
                   "recorded_at": stamp} for item in features]
        if values:
            with self._write("record_drift") as conn:
                conn.execute(DRIFT.insert(), values)

    def drift(self, *, version: str | None = None, run_id: str | None = None) -> pd.DataFrame:
        """The stored PSI rows, oldest window first (of model ``version`` / run ``run_id`` only, when given)."""
        query = select(DRIFT).order_by(DRIFT.c.window_start, DRIFT.c.id)
        if version is not None:
            query = query.where(DRIFT.c.model_version == version)
        if run_id is not None:
            query = query.where(DRIFT.c.run_id == run_id)
        with self._read("drift") as conn:
            return _frame(conn.execute(query), ("window_start", "window_end", "recorded_at"))

    # ---- alerts

    def record_alert(self, *, rule: str, version: str | None, observed: float | None, threshold: float | None,
                     status: str = "pending", attempts: int = 0, message: str | None = None,
                     window_start: datetime | str | None = None, window_end: datetime | str | None = None,
                     rows: int | None = None, run_id: str | None = None,
                     created_at: datetime | str | None = None) -> int:
        """Store an alert; returns its id (to update its delivery later)."""
        with self._write("record_alert") as conn:
            result = conn.execute(ALERTS.insert().values(
                run_id=run_id, rule=rule, model_version=version, observed=_plain(observed),
                threshold=_plain(threshold), window_start=utc(window_start), window_end=utc(window_end),
                rows=rows, message=message, status=status, attempts=attempts,
                created_at=utc(created_at) or now_utc()))
            return int(result.inserted_primary_key[0])

    def update_alert(self, alert_id: int, *, status: str, attempts: int) -> None:
        """Record the delivery outcome of an alert."""
        delivered_at = now_utc() if status == "delivered" else None
        with self._write("update_alert") as conn:
            conn.execute(update(ALERTS).where(ALERTS.c.id == alert_id)
                         .values(status=status, attempts=attempts, delivered_at=delivered_at))

    def last_alert(self, rule: str, version: str | None, *, status: str | None = None) -> dict | None:
        """The newest alert for (rule, version) — optionally only with ``status`` — or None (for cool-downs)."""
        query = select(ALERTS).where(ALERTS.c.rule == rule)
        query = query.where(ALERTS.c.model_version.is_(None) if version is None else ALERTS.c.model_version == version)
        if status is not None:
            query = query.where(ALERTS.c.status == status)
        with self._read("last_alert") as conn:
            row = conn.execute(query.order_by(ALERTS.c.created_at.desc(), ALERTS.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        record = dict(row)
        for name in ("created_at", "delivered_at", "window_start", "window_end"):
            if record[name] is not None:
                record[name] = record[name].replace(tzinfo=timezone.utc)
        return record

    def alerts(self, *, version: str | None = None, run_id: str | None = None, limit: int = 100) -> pd.DataFrame:
        """The newest alerts first (of ``version`` / raised by ``run_id`` when given)."""
        query = select(ALERTS).order_by(ALERTS.c.created_at.desc(), ALERTS.c.id.desc()).limit(limit)
        if version is not None:
            query = query.where(ALERTS.c.model_version == version)
        if run_id is not None:
            query = query.where(ALERTS.c.run_id == run_id)
        with self._read("alerts") as conn:
            return _frame(conn.execute(query), ("window_start", "window_end", "created_at", "delivered_at"))


def _upsert_outcomes(dialect: str):
    """INSERT into ``log_outcomes`` replacing the row of the same (row_id, model_version, hour)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StoreError(f"the columnar prediction log supports SQLite and PostgreSQL stores, not {dialect}")
    statement = insert(LOG_OUTCOMES)
    return statement.on_conflict_do_update(
        index_elements=["row_id", "model_version", "hour"],
        set_={"rows": statement.excluded.rows, "outcome": statement.excluded.outcome,
              "outcome_at": statement.excluded.outcome_at})


def pq_columns(path: Path) -> list[str]:
    """The column names of one Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _window(query, since, until, version):
    """``query`` limited to logged predictions with ``since <= logged_at < until`` (of ``version``), oldest first."""
    query = query.order_by(PREDICTIONS.c.logged_at, PREDICTIONS.c.id)
    if since is not None:
        query = query.where(PREDICTIONS.c.logged_at >= utc(since))
    if until is not None:
        query = query.where(PREDICTIONS.c.logged_at < utc(until))
    if version is not None:
        query = query.where(PREDICTIONS.c.model_version == version)
    return query

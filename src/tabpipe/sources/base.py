"""Source configs, URL redaction and the one environment lookup of the sources package.

Invariants:

- A password in a URL never leaves this package in clear: messages show :func:`redact_url`'s form
  (``scheme://user:***@host/...``) and driver messages pass through :func:`scrub` first. A URL that
  cannot be parsed is never echoed at all.
- Readers take their URL/URI as an argument; only :func:`source_url` looks one up, in the environment
  mapping its caller passes in (:func:`tabpipe.sources.core.read_source`, whose callers get it from the
  CLI, the app factory or the Airflow task); nothing here reads ``os.environ``.
- Every network read is bounded in time: connect, server-selection and per-reply (socket/statement)
  timeouts have safe defaults, and MongoDB retries are bounded in count and in total time.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, quote_plus, unquote

from pydantic import Field, TypeAdapter, field_validator, model_validator

from tabpipe.config_base import StrictModel
from tabpipe.errors import DataError

log = logging.getLogger(__name__)

HIDDEN = "***"                     # what a password becomes (SQLAlchemy's own hide_password marker)
MALFORMED = "<malformed URL, not shown>"

# --------------------------------------------------------------------------- configs


class FileSource(StrictModel):
    """A CSV or Parquet file; ``format: auto`` picks the reader from the extension."""

    type: Literal["file"]
    path: Path
    format: Literal["auto", "csv", "parquet"] = "auto"
    sep: str = ","


class MongoSource(StrictModel):
    """A MongoDB collection; the URI comes from the environment variable named by ``uri_env``.

    Timeouts bound every wait: ``timeout_ms`` to find a server, ``connect_timeout_ms`` to open a
    connection, ``socket_timeout_ms`` for any one reply (so a stalled cursor fails instead of hanging).
    Connection failures and timeouts are retried at most ``max_retries`` times, sleeping
    ``retry_backoff_s * 2**attempt`` in between, and no retry starts after ``max_retry_time_s``.
    """

    type: Literal["mongodb"]
    uri_env: str = "MONGODB_URI"
    database: str
    collection: str
    filter: dict = Field(default_factory=dict)
    projection: dict | None = None
    batch_size: int = Field(10_000, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    retry_backoff_s: float = Field(0.5, ge=0, le=60)
    max_retry_time_s: float = Field(120.0, gt=0)
    timeout_ms: int = Field(5000, gt=0)               # server selection
    connect_timeout_ms: int = Field(10_000, gt=0)
    socket_timeout_ms: int = Field(120_000, gt=0)     # longest wait for one batch of the cursor


class SqlSource(StrictModel):
    """A SQL query against a SQLAlchemy URL given by env var (``url_env``, preferred) or inline (``url``).

    ``connect_timeout_s`` bounds opening the connection and ``statement_timeout_s`` the query
    (enforced by the server on PostgreSQL and MySQL; see docs/deploy.md for other databases).
    An inline ``url`` holding a password is accepted with a warning (it is redacted from run.json
    and every message, but it sits in the YAML file): put such URLs in an env var named by ``url_env``.
    """

    type: Literal["sql"]
    url: str | None = None
    url_env: str | None = None
    query: str
    chunk_size: int = Field(50_000, gt=0)
    connect_timeout_s: int = Field(10, gt=0)
    statement_timeout_s: float = Field(1800.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one_url(self) -> SqlSource:
        """Require exactly one of ``url`` and ``url_env``; warn about a password written inline."""
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' (inline) or 'url_env' (name of an env var)")
        if self.url is not None and url_password(self.url):
            log.warning("source.url %s holds a password in the config file; put the URL in an environment "
                        "variable and name it with source.url_env instead", redact_url(self.url))
        return self


LeafSource = Annotated[FileSource | MongoSource | SqlSource, Field(discriminator="type")]

# --------------------------------------------------------------------------- joined sources

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|min|s)\s*$")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "s": 1}
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "last")


def parse_duration(text: str) -> timedelta:
    """``"90d"`` -> 90 days; units ``w d h min s`` (no months or years: their length varies)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"bad duration {text!r}: write a number and one of the units w, d, h, min, s "
                         "(e.g. '90d', '12h', '30min')")
    value = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if value <= timedelta(0):
        raise ValueError(f"bad duration {text!r}: must be more than zero")
    return value


class AsOf(StrictModel):
    """Point in time: each base row gets only joined records stamped before its label time.

    ``column``: the time column of the joined table; ``label_time``: the base's time column (default:
    the join source's ``label_time``); ``tolerance``: how far back a record may lie (``"90d"``; none:
    any age); ``exact_matches``: whether a record stamped exactly at the label time counts (default
    false: strictly earlier, since a record written at the decision instant may be its consequence).
    """

    column: str
    label_time: str | None = None
    tolerance: str | None = None
    exact_matches: bool = False

    @field_validator("tolerance")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def window(self) -> timedelta | None:
        """The tolerance as a timedelta (None: unbounded)."""
        return None if self.tolerance is None else parse_duration(self.tolerance)


class JoinSpec(StrictModel):
    """One table joined onto the base on the key columns ``on`` (same names on both sides).

    Without ``aggregate`` each base row gets at most one record: the latest one before its label time
    with ``as_of``, else the one with its keys (the joined table must then be unique on ``on``).
    ``aggregate`` (column -> functions among count, sum, mean, min, max, last) summarises all the records
    of the key (with ``as_of``: those in the window before the label time) into ``<name>_<column>_<fn>``
    columns, plus ``<name>_count``, the number of records.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: LeafSource
    on: list[str] = Field(min_length=1)
    how: Literal["left", "inner"] = "left"
    as_of: AsOf | None = None
    aggregate: dict[str, list[Literal["count", "sum", "mean", "min", "max", "last"]]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> JoinSpec:
        if len(set(self.on)) != len(self.on):
            raise ValueError(f"'on' names a key column twice: {self.on}")
        if self.as_of is not None and self.as_of.column in self.on:
            raise ValueError(f"as_of.column {self.as_of.column!r} is also a key in 'on'")
        if self.aggregate is not None:
            if not self.aggregate or any(not fns for fns in self.aggregate.values()):
                raise ValueError("aggregate needs at least one column with at least one function")
            keys = [c for c in self.aggregate if c in self.on]
            if keys:
                raise ValueError(f"aggregate names key column(s) {keys}; keys are not aggregated")
            if self.as_of is None and any("last" in fns for fns in self.aggregate.values()):
                raise ValueError("aggregate 'last' needs as_of (the time column that orders the records)")
        return self


class JoinSource(StrictModel):
    """Several sources joined into one training table: ``base`` (one row per training row, with the
    target and, for point-in-time joins, ``label_time``) then each of ``joins`` in order.

    Columns of a joined table that clash with columns already in the table are prefixed ``<name>_``.
    """

    type: Literal["join"]
    base: LeafSource
    label_time: str | None = None
    joins: list[JoinSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> JoinSource:
        names = [j.name for j in self.joins]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"join names must be unique; repeated: {twice}")
        if "base" in names:
            raise ValueError("'base' is the base table's name; give the join another name")
        for index, join in enumerate(self.joins):
            if join.as_of is not None and join.as_of.label_time is None and self.label_time is None:
                raise ValueError(f"joins[{index}] ({join.name}) has as_of but no label time: set source.label_time "
                                 "(the base's time column) or as_of.label_time")
        return self

    def label_time_of(self, join: JoinSpec) -> str | None:
        """The base column whose time bounds ``join`` (None: not a point-in-time join)."""
        if join.as_of is None:
            return None
        return join.as_of.label_time or self.label_time


SourceConfig = Annotated[FileSource | MongoSource | SqlSource | JoinSource, Field(discriminator="type")]
SOURCE_ADAPTER: TypeAdapter = TypeAdapter(SourceConfig)


def describe_source(source: Any) -> str:
    """A one-line description of a source config, never containing credentials."""
    kind = getattr(source, "type", "?")
    if kind == "file":
        return f"file {source.path}"
    if kind == "mongodb":
        return (f"mongodb {source.database}.{source.collection} (URI from ${source.uri_env}) "
                f"filter={json.dumps(source.filter, default=str)}")
    if kind == "sql":
        where = f"URL from ${source.url_env}" if source.url_env else redact_url(source.url or "")
        return f"sql {where}: {source.query}"
    if kind == "join":
        parts = [f"base = {describe_source(source.base)}"]
        parts += [f"{join.name} = {describe_source(join.source)}" for join in source.joins]
        return "join of " + "; ".join(parts)
    return str(kind)


# --------------------------------------------------------------------------- environment


def env_value(name: str, what: str, environ: Mapping[str, str]) -> str:
    """Return the non-empty value of environment variable ``name`` in ``environ`` or raise DataError."""
    value = environ.get(name, "")
    if not value.strip():
        raise DataError(f"environment variable {name} is not set (it should hold the {what})")
    return value


def source_url(cfg: MongoSource | SqlSource, environ: Mapping[str, str]) -> str:
    """Return the URL/URI ``cfg`` points at: inline, or the value in ``environ`` of the variable it names."""
    if isinstance(cfg, MongoSource):
        return env_value(cfg.uri_env, "MongoDB URI", environ)
    if cfg.url is not None:
        return cfg.url
    return env_value(cfg.url_env, "SQLAlchemy database URL", environ)


# --------------------------------------------------------------------------- redaction


def _split_credentials(url: str) -> tuple[str, str, str | None, str] | None:
    """Split ``scheme://user:password@rest`` into (scheme, user, password or None, rest).

    The credentials end at the LAST ``@`` of the URL, so a password holding unescaped ``@ : / ? #``
    is still cut out whole (an ``@`` later in the URL only widens what is hidden). None when the
    URL has no ``://``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return scheme, "", None, rest
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, hosts


def redact_url(url: Any) -> str:
    """Return ``url`` fit for messages and files: the password replaced by ``***``.

    ``url`` is a string or a SQLAlchemy ``URL`` (rendered with ``hide_password=True``). A string that
    is not ``scheme://...`` is not shown at all (it could be a password-bearing URL missing its ``//``).
    """
    if hasattr(url, "render_as_string"):
        return url.render_as_string(hide_password=True)
    parts = _split_credentials(str(url))
    if parts is None:
        return MALFORMED
    scheme, user, password, hosts = parts
    if password is None:
        return str(url)
    return f"{scheme}://{user}:{HIDDEN}@{hosts}"


def url_password(url: str) -> str | None:
    """Return the password written in ``url`` (as written), or None."""
    parts = _split_credentials(url)
    return parts[2] if parts else None


def scrub(text: str, url: str) -> str:
    """Remove ``url`` and every spelling of its password (raw, percent-decoded/encoded) from ``text``."""
    secrets = {url}
    password = url_password(url)
    if _split_credentials(url) is None and "@" in url:
        password = url.rpartition("@")[0]  # unparseable: hide everything before the host
    if password:
        secrets |= {password, unquote(password), quote(password, safe=""), quote_plus(password)}
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, redact_url(url) if secret == url else HIDDEN)
    return text


def redact_urls_in(value: Any, *, key: str | None = None) -> Any:
    """Return a copy of a parsed config with every URL redacted (for run.json and logs).

    Strings under a key named ``url``/``uri`` (or ending in ``_url``/``_uri``) and any string holding
    ``://`` go through :func:`redact_url`.
    """
    if isinstance(value, Mapping):
        return {k: redact_urls_in(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_urls_in(v) for v in value]
    if isinstance(value, str):
        named = key is not None and (key in ("url", "uri") or key.endswith(("_url", "_uri")))
        if "://" in value or (named and "@" in value):
            return redact_url(value)
    return value


def mongo_location(uri: str) -> str:
    """Return ``[user:***@]host:port[,host:port]`` of a MongoDB URI (no database, no options)."""
    parts = _split_credentials(uri)
    if parts is None:
        return MALFORMED
    _, user, password, hosts = parts
    hosts = hosts.split("/", 1)[0].split("?", 1)[0]
    if password is not None:
        return f"{user}:{HIDDEN}@{hosts}"
    return f"{user}@{hosts}" if user else hosts


def resolve_path(path: Path, base_dir: Path) -> Path:
    """Return ``path`` unchanged if absolute, else joined onto ``base_dir``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path

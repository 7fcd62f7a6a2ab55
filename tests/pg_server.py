"""A throwaway PostgreSQL server for tests: ``initdb`` into a temp dir, ``pg_ctl start``, yield a URL, stop.

Use the context manager directly::

    with postgres_server() as server:
        engine = sqlalchemy.create_engine(server.url)

or the ready-made session fixture named ``postgres_url`` (a SQLAlchemy URL string)::

    from pg_server import postgres_url_fixture  # noqa: F401  (registers fixture `postgres_url`)

    def test_x(postgres_url): ...

To share ONE server between several test modules, do that import in ``tests/conftest.py`` instead
of in each module (pytest makes one session fixture per module that imports it: one server each).

The binaries are found via ``$TABPIPE_PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``
or ``PATH``. ``initdb`` refuses to run as root, so under root every binary runs as the ``postgres``
system user (``runuser -u postgres --``). Missing binaries or user make the fixture FAIL, not skip:
CI is expected to have ``postgresql-15`` installed.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "tabpipe"
INSTALL_HINT = ("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql-15 "
                "(e.g. `apt-get install postgresql-15`) or set TABPIPE_PG_BINDIR")


class PostgresUnavailable(RuntimeError):
    """The throwaway server could not be set up (binaries, user or startup problem)."""


@dataclass(frozen=True)
class PgServer:
    """A running throwaway server."""

    url: str          # postgresql+psycopg://tabpipe@127.0.0.1:<port>/postgres
    host: str
    port: int
    user: str
    data_dir: Path
    startup_s: float  # seconds taken by initdb + start


def find_bindir() -> Path:
    """Return the folder holding ``initdb`` and ``pg_ctl``; PostgresUnavailable if none."""
    candidates: list[Path] = []
    if os.environ.get("TABPIPE_PG_BINDIR"):
        candidates.append(Path(os.environ["TABPIPE_PG_BINDIR"]))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0], reverse=True)
    candidates.extend(versions)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable(INSTALL_HINT)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """Return the command prefix that runs a binary as a non-root user, and that user (None if not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root, and initdb cannot run as root, but there is no "
                                  "'postgres' system user to run it as (install postgresql-15, which "
                                  "creates it, or run the tests as a non-root user)") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root but `runuser` (util-linux) is missing; cannot run initdb")
    return [runuser, "-u", "postgres", "--"], account


def _run(cmd: list[str], cwd: Path, what: str, log: Path | None = None) -> None:
    """Run one setup command; PostgresUnavailable with its output (and the server log) on failure."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        raise PostgresUnavailable(f"{what} failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}\n{tail}")


@contextmanager
def postgres_server() -> Iterator[PgServer]:
    """Start a private PostgreSQL cluster (trust auth, user ``tabpipe``) and stop + delete it on exit."""
    started = time.perf_counter()
    bindir = find_bindir()
    prefix, account = _as_server_user()
    # Under root, pytest's tmp dirs are 0700 root; use /tmp (world-traversable) and hand the dir over.
    root = Path(tempfile.mkdtemp(prefix="tabpipe-pg-", dir="/tmp" if account and Path("/tmp").is_dir() else None))
    data_dir, sock_dir, log = root / "data", root / "sock", root / "server.log"
    sock_dir.mkdir()
    if account is not None:
        for path in (root, sock_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
    try:
        _run([*prefix, str(bindir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", USER,
              "-E", "UTF8", "--locale=C", "--no-sync"], root, "initdb")
        for attempt in range(3):
            port = free_port()
            options = f"-p {port} -k {sock_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options,
                      "-w", "-t", "60", "start"], root, "pg_ctl start", log)
                break
            except PostgresUnavailable as exc:  # another process took the port since free_port(): pick again
                if "could not bind" not in str(exc) or attempt == 2:
                    raise
        url = f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
        yield PgServer(url, "127.0.0.1", port, USER, data_dir, time.perf_counter() - started)
    finally:
        if (data_dir / "postmaster.pid").exists():  # also after a start that timed out
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                           cwd=root, capture_output=True, check=False, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", name="postgres_url")
def postgres_url_fixture() -> Iterator[str]:
    """Session fixture: SQLAlchemy URL ``postgresql+psycopg://tabpipe@127.0.0.1:<port>/postgres``.

    FAILS (never skips) when the server cannot be started, e.g. postgresql-15 is not installed.
    """
    context = postgres_server()
    try:
        server, problem = context.__enter__(), None
    except PostgresUnavailable as exc:
        server, problem = None, str(exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield server.url
    finally:
        context.__exit__(None, None, None)


def fresh_database(server_url: str, prefix: str = "t") -> str:
    """A new empty database on the test server; returns its URL."""
    import uuid

    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"], name="empty_url")
def empty_url_fixture(request, tmp_path) -> str:
    """URL of an empty database: an SQLite file, or a fresh database on the real PostgreSQL server
    (import ``empty_url_fixture`` with ``postgres_url_fixture``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_url"))

"""Source outages: every wait is bounded, retries are bounded in count and time, errors are clear.

MongoDB: a loopback server that accepts and never answers (down/hung host), a wire-protocol fake
whose cursor stalls after its first batch (real pymongo, socket timeout), mongomock patched to fail.
PostgreSQL: the real cluster of tests/pg_server.py (statement_timeout, a backend killed mid-query,
connect timeout against a hung host). ``tabpipe train`` on a dead source exits 1 and publishes nothing.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

import mongomock
import pytest
import sqlalchemy
import yaml
from fault_servers import FIRST_BATCH, stalled_tcp_server, stalling_mongo
from helpers import TABPIPE_BIN, make_project, read_run_json, registry_of, run_dirs
from mongomock.store import ServerStore
from pg_server import postgres_server, postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)
from pymongo import MongoClient
from pymongo.errors import NetworkTimeout

from tabpipe.errors import DataError
from tabpipe.sources import MongoSource, SqlSource, read_mongodb, read_source
from tabpipe.sources import mongodb as mongodb_reader
from tabpipe.sources.sql import timeout_connect_args

pytestmark = pytest.mark.faults
SECRET = "Zk4#Pw/9?Qm@v"  # the message must not show any part of it
ENCODED = quote_plus(SECRET)  # as a valid URI carries it


def in_thread(fn, limit_s: float = 120):
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it has not returned within ``limit_s``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 — handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still waiting after {limit_s} s: the read is not bounded"
    return box


def mongo_cfg(**extra) -> MongoSource:
    return MongoSource(type="mongodb", uri_env="TABPIPE_TEST_OUTAGE_URI", database="shop", collection="orders",
                       **extra)


FAST = {"timeout_ms": 300, "connect_timeout_ms": 200, "socket_timeout_ms": 300, "retry_backoff_s": 0.0}


# --------------------------------------------------------------------------- MongoDB, real driver


def test_hung_mongodb_host_fails_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    with stalled_tcp_server() as server:
        uri = f"mongodb://alice:{ENCODED}@127.0.0.1:{server.port}/?authSource=admin"
        box = in_thread(lambda: read_mongodb(mongo_cfg(max_retries=2, **FAST), uri, client_factory=MongoClient))
        assert server.connections >= 1  # it really connected, and got no answer
    error = box.get("error")
    assert isinstance(error, DataError), box
    message = str(error)
    assert f"MongoDB source shop.orders at alice:***@127.0.0.1:{server.port}" in message
    assert "after 3 attempt(s)" in message and "max_retries=2" in message
    assert "Zk4" not in message and "Qm" not in message


def test_stalled_cursor_times_out_instead_of_hanging() -> None:
    """First batch arrives, the getMore never does: socketTimeoutMS turns the hang into a retry, then an error."""
    with stalling_mongo() as server:
        uri = f"mongodb://127.0.0.1:{server.port}/"
        cfg = mongo_cfg(max_retries=1, batch_size=len(FIRST_BATCH), **FAST)
        box = in_thread(lambda: read_mongodb(cfg, uri, client_factory=MongoClient))
        assert server.commands.count("find") == 2 and server.commands.count("getMore") == 2
    error = box.get("error")
    assert isinstance(error, DataError), box
    assert "after 2 attempt(s)" in str(error) and "NetworkTimeout" in str(error)


def test_client_gets_every_timeout_from_the_config() -> None:
    seen: list[dict] = []

    def factory(uri, **options):
        seen.append(options)
        return mongomock.MongoClient(uri, _store=store, **options)

    store = ServerStore()
    mongomock.MongoClient("mongodb://h", _store=store).shop.orders.insert_one({"a": 1})
    cfg = mongo_cfg(timeout_ms=1234, connect_timeout_ms=2345, socket_timeout_ms=3456)
    assert read_mongodb(cfg, "mongodb://h", client_factory=factory)["a"].tolist() == [1]
    assert seen == [{"serverSelectionTimeoutMS": 1234, "connectTimeoutMS": 2345, "socketTimeoutMS": 3456}]


# --------------------------------------------------------------------------- MongoDB, mongomock failing


class StallingCursorClient(mongomock.MongoClient):
    """mongomock whose find() yields one document and then raises NetworkTimeout, ``stalls`` times."""

    def __init__(self, *args, stalls: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self._stalls = stalls

    def __getitem__(self, name):
        database = super().__getitem__(name)
        stalls = self._stalls

        class Collection:
            def __init__(self, inner):
                self.inner = inner

            def find(self, *args, **kwargs):
                docs = list(self.inner.find(*args, **kwargs))
                if stalls[0] > 0:
                    stalls[0] -= 1
                    return iter_then_fail(docs[:1])
                return iter(docs)

        return {"orders": Collection(database["orders"])}


def iter_then_fail(docs):
    yield from docs
    raise NetworkTimeout("127.0.0.1:27017: timed out (configured timeouts: socketTimeoutMS: 300.0ms)")


def test_stall_then_recovery_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    store, stalls = ServerStore(), [2]
    mongomock.MongoClient("mongodb://h", _store=store).shop.orders.insert_many([{"a": i} for i in range(5)])
    sleeps: list[float] = []
    monkeypatch.setattr(mongodb_reader.time, "sleep", sleeps.append)
    factory = functools.partial(StallingCursorClient, _store=store, stalls=stalls)
    got = read_mongodb(mongo_cfg(max_retries=3, retry_backoff_s=0.25), "mongodb://h", client_factory=factory)
    assert got["a"].tolist() == [0, 1, 2, 3, 4] and sleeps == [0.25, 0.5] and stalls == [0]


def test_retries_stop_at_the_count_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    store, stalls = ServerStore(), [100]
    mongomock.MongoClient("mongodb://h", _store=store).shop.orders.insert_one({"a": 1})
    monkeypatch.setattr(mongodb_reader.time, "sleep", lambda s: None)
    factory = functools.partial(StallingCursorClient, _store=store, stalls=stalls)
    with pytest.raises(DataError, match=r"after 5 attempt\(s\)"):
        read_mongodb(mongo_cfg(max_retries=4), "mongodb://h", client_factory=factory)
    assert stalls == [95]


def test_retries_stop_at_the_time_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff 1, 2, 4... s under max_retry_time_s=5: attempts at t=0, 1, 3; the next would start at 7 > 5."""
    clock = [0.0]
    monkeypatch.setattr(mongodb_reader.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(mongodb_reader.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    store, stalls = ServerStore(), [100]
    mongomock.MongoClient("mongodb://h", _store=store).shop.orders.insert_one({"a": 1})
    factory = functools.partial(StallingCursorClient, _store=store, stalls=stalls)
    with pytest.raises(DataError, match=r"after 3 attempt\(s\).*max_retry_time_s=5"):
        read_mongodb(mongo_cfg(max_retries=20, retry_backoff_s=1, max_retry_time_s=5), "mongodb://h",
                     client_factory=factory)
    assert stalls == [97] and clock[0] == 3.0


def test_retry_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        mongo_cfg(max_retries=1000)
    with pytest.raises(ValueError, match="socket_timeout_ms"):
        mongo_cfg(socket_timeout_ms=0)


# --------------------------------------------------------------------------- PostgreSQL (real cluster)


def test_pg_statement_timeout_cancels_a_slow_query(postgres_url: str) -> None:
    cfg = SqlSource(type="sql", url=postgres_url, query="SELECT pg_sleep(30) AS slept", statement_timeout_s=0.5)
    box = in_thread(lambda: read_source(cfg, Path("."), environ=os.environ))
    assert isinstance(box.get("error"), DataError), box
    assert "canceling statement due to statement timeout" in str(box["error"])


def test_pg_timeouts_are_session_settings_and_keep_url_options(postgres_url: str) -> None:
    url = f"{postgres_url}?options=-c%20search_path%3Dtabpipe_s"
    cfg = SqlSource(type="sql", url=url, statement_timeout_s=1.5,
                    query="SELECT current_setting('statement_timeout') AS st, current_setting('search_path') AS sp")
    row = read_source(cfg, Path("."), environ=os.environ).iloc[0]
    assert row["st"] == "1500ms" and row["sp"] == "tabpipe_s"


def test_pg_backend_killed_mid_query(postgres_url: str) -> None:
    """The server ends the query's backend (as a crash or failover would): a clear DataError, promptly."""
    url = f"{postgres_url}?application_name=tabpipe_victim"
    cfg = SqlSource(type="sql", url=url, query="SELECT pg_sleep(60) AS slept")
    admin = sqlalchemy.create_engine(postgres_url)
    killed: list[int] = []

    def kill_when_running() -> None:
        for _ in range(200):
            with admin.connect() as conn:
                pids = conn.execute(sqlalchemy.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'tabpipe_victim' "
                    "AND query LIKE 'SELECT pg_sleep%'")).scalars().all()
                for pid in pids:
                    conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                    killed.append(pid)
            if killed:
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    box = in_thread(lambda: read_source(cfg, Path("."), environ=os.environ))
    killer.join(30)
    admin.dispose()
    assert killed, "the query never showed up in pg_stat_activity"
    assert isinstance(box.get("error"), DataError), box
    assert "terminating connection due to administrator command" in str(box["error"])


def test_pg_server_killed_mid_query() -> None:
    """SIGKILL the postmaster of a private cluster while a query runs: a clear DataError, then refusal."""
    with postgres_server() as server:
        cfg = SqlSource(type="sql", url=f"{server.url}?application_name=tabpipe_crash",
                        query="SELECT pg_sleep(60) AS slept")
        admin = sqlalchemy.create_engine(server.url)
        box: dict = {}
        reader = threading.Thread(target=lambda: box.update(result=_catch(lambda: read_source(cfg, Path("."), environ=os.environ))),
                                  daemon=True)
        reader.start()
        for _ in range(200):  # wait until the query runs
            with admin.connect() as conn:
                if conn.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                                "'tabpipe_crash' AND query LIKE 'SELECT pg_sleep%'")).scalar():
                    break
            time.sleep(0.05)
        admin.dispose()
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        reader.join(60)
        assert not reader.is_alive(), "the read did not notice the server's death"
        error = box["result"]
        assert isinstance(error, DataError), error
        assert f"SQL source postgresql+psycopg://tabpipe@127.0.0.1:{server.port}/postgres" in str(error)
        assert "closed the connection" in str(error) or "terminating connection" in str(error)
        # and while it is down: refused at once, the same clear message shape
        again = _catch(lambda: read_source(cfg, Path("."), environ=os.environ))
        assert isinstance(again, DataError) and "refused" in str(again).lower()


def _catch(fn):
    """Return ``fn()``'s exception (or its result)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 — handed back to the test
        return exc


def test_pg_connect_timeout_on_a_hung_host() -> None:
    with stalled_tcp_server() as server:
        url = f"postgresql+psycopg://tabpipe:{ENCODED}@127.0.0.1:{server.port}/postgres"
        cfg = SqlSource(type="sql", url=url, query="SELECT 1", connect_timeout_s=2)
        box = in_thread(lambda: read_source(cfg, Path("."), environ=os.environ))
    error = box.get("error")
    assert isinstance(error, DataError), box
    assert f"tabpipe:***@127.0.0.1:{server.port}" in str(error) and "timeout" in str(error).lower()
    assert "Zk4" not in str(error)


def test_other_dialects_get_no_driver_args_but_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = SqlSource(type="sql", url_env="X", query="SELECT 1", connect_timeout_s=7, statement_timeout_s=9)
    mysql = sqlalchemy.engine.make_url("mysql+pymysql://u@h/db")
    assert timeout_connect_args(mysql, cfg) == {"connect_timeout": 7, "read_timeout": 9}
    assert timeout_connect_args(sqlalchemy.engine.make_url("sqlite:///x.db"), cfg) == {}
    assert timeout_connect_args(sqlalchemy.engine.make_url("mssql+pyodbc://u:pw@h/db"), cfg) == {}
    assert "not enforced for mssql+pyodbc" in caplog.text and "u:***@h" in caplog.text


# --------------------------------------------------------------------------- tabpipe train on a dead source


def _project_with_source(root: Path, source: dict) -> Path:
    config = make_project(root, rows=50)
    doc = yaml.safe_load(config.read_text())
    doc["source"] = source
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def _assert_failed_cleanly(config: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    (run_dir,) = run_dirs(config)
    record = read_run_json(run_dir)
    assert record["status"] == "failed" and record["stages"]["ingestion"]["status"] == "failed"
    assert record["model_version"] is None and registry_of(config).list_versions() == []


def test_train_against_hung_mongodb_exits_1_and_publishes_nothing(tmp_path: Path) -> None:
    with stalled_tcp_server() as server:
        config = _project_with_source(tmp_path, {
            "type": "mongodb", "uri_env": "TABPIPE_TEST_OUTAGE_URI", "database": "shop", "collection": "orders",
            "max_retries": 1, **FAST})
        env = {**os.environ,
               "TABPIPE_TEST_OUTAGE_URI": f"mongodb://alice:{ENCODED}@127.0.0.1:{server.port}/?authSource=admin"}
        proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)
    _assert_failed_cleanly(config, proc)
    assert f"MongoDB source shop.orders at alice:***@127.0.0.1:{server.port}" in proc.stderr
    everything = proc.stderr + proc.stdout + "".join(p.read_text() for p in run_dirs(config)[0].glob("run.*"))
    assert "Zk4" not in everything and "Qm" not in everything


def test_train_with_pg_statement_timeout_exits_1_and_publishes_nothing(tmp_path: Path, postgres_url: str) -> None:
    config = _project_with_source(tmp_path, {"type": "sql", "url": postgres_url, "statement_timeout_s": 0.5,
                                             "query": "SELECT pg_sleep(30) AS slept"})
    proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    _assert_failed_cleanly(config, proc)
    assert "statement timeout" in proc.stderr

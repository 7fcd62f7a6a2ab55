"""Passwords in source URLs never reach a message, a log or run.json (tabpipe.sources.base redaction).

Covers the one redaction rule (``redact_url``) on MongoDB and SQL URLs whose password holds
unescaped ``# ? / @ :``, malformed URLs, the readers' error messages, and ``tabpipe train`` end to
end against the real PostgreSQL cluster with an inline password in ``source.url``.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import sqlalchemy
import yaml
from helpers import TABPIPE_BIN, make_project, run_dirs
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_server import free_port, postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)
from pymongo import MongoClient

from tabpipe.errors import DataError
from tabpipe.sources.sample import generate
from tabpipe.sources import MongoSource, SqlSource, read_source, redact_url, redact_urls_in
from tabpipe.sources.base import MALFORMED, mongo_location, scrub

# Each fragment is distinctive, so finding any of them in a message means part of the password leaked.
FRAGMENTS = ("Qx7Lm", "Rt3Vz", "Wp9Kd", "Hs2Jn", "Yc5Bf")
NASTY = [
    "Qx7Lm#Rt3Vz", "Qx7Lm?Rt3Vz", "Qx7Lm/Rt3Vz", "Qx7Lm@Rt3Vz", "Qx7Lm:Rt3Vz",
    "Qx7Lm#Rt3Vz?Wp9Kd/Hs2Jn@Yc5Bf:", "@Qx7Lm", "Qx7Lm@", "/Qx7Lm?", "Qx7Lm@@Rt3Vz//Wp9Kd",
]


def assert_no_fragment(text: str, password: str) -> None:
    assert password not in text
    for fragment in FRAGMENTS:
        assert fragment not in text, f"{fragment!r} of the password leaked in {text!r}"


@pytest.mark.parametrize("password", NASTY)
@pytest.mark.parametrize("scheme", ["mongodb", "mongodb+srv", "postgresql+psycopg", "mysql+pymysql"])
def test_redact_url_hides_whole_password(scheme: str, password: str) -> None:
    url = f"{scheme}://alice:{password}@db1.example.net:27017,db2.example.net/shop?authSource=admin"
    shown = redact_url(url)
    assert_no_fragment(shown, password)
    assert shown == f"{scheme}://alice:***@db1.example.net:27017,db2.example.net/shop?authSource=admin"


@pytest.mark.parametrize("password", NASTY)
def test_mongo_location_hides_whole_password(password: str) -> None:
    # the old _mongo_hosts cut the authority at the first '/', '?' or '#': it showed part of these
    uri = f"mongodb://alice:{password}@127.0.0.1:27017/shop?authSource=admin"
    assert mongo_location(uri) == "alice:***@127.0.0.1:27017"


def test_urls_without_password_are_unchanged() -> None:
    for url in ("sqlite:///data/x.db", "mongodb://localhost:27017/?replicaSet=rs0", "postgresql://bob@h/db",
                "http://localhost:9000"):
        assert redact_url(url) == url
    assert mongo_location("mongodb://h1:1,h2:2/db?x=y") == "h1:1,h2:2"


@pytest.mark.parametrize("url", ["postgres//alice:Qx7Lm@h/db", "alice:Qx7Lm@h", "Qx7Lm"])
def test_malformed_url_is_never_shown(url: str) -> None:
    assert redact_url(url) == MALFORMED


@pytest.mark.parametrize("password", ["Qx7Lm#Rt3Vz?Wp9Kd/Hs2Jn:Yc5Bf", "Qx7Lm@Rt3Vz", "plain-Qx7Lm"])
def test_agrees_with_sqlalchemy_on_well_formed_urls(password: str) -> None:
    url = f"postgresql+psycopg://alice:{quote_plus(password)}@127.0.0.1:5432/db?sslmode=require"
    assert redact_url(url) == sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    assert redact_url(sqlalchemy.engine.make_url(url)) == redact_url(url)


@settings(max_examples=300, deadline=None)
@given(password=st.text(alphabet="abcXYZ019#?/@:%+!$&", min_size=1, max_size=24),
       user=st.text(alphabet="abcdef", min_size=1, max_size=6),
       scheme=st.sampled_from(["mongodb", "postgresql+psycopg"]))
def test_redaction_property(password: str, user: str, scheme: str) -> None:
    url = f"{scheme}://{user}:{password}@host.example:1234/db?x=1"
    shown = redact_url(url)
    assert shown == f"{scheme}://{user}:***@host.example:1234/db?x=1"
    assert mongo_location(url) == f"{user}:***@host.example:1234"
    message = scrub(f"driver said: cannot log in as {user} with {password} ({quote_plus(password)})", url)
    assert password not in message and quote_plus(password) not in message


def test_snapshot_redaction_walks_the_config() -> None:
    raw = {"pipeline": {"source": {"type": "sql", "url": "postgresql://u:Qx7Lm@h/db", "query": "SELECT 1"},
                        "registry": {"endpoint_url": "http://minio:Rt3Vz@h:9000", "items": ["mongodb://a:Wp9Kd@h"]},
                        "other": {"url": "postgres//u:Hs2Jn@h"}, "path": "data.csv"}}
    redacted = redact_urls_in(raw)
    assert redacted["pipeline"]["source"]["url"] == "postgresql://u:***@h/db"
    assert redacted["pipeline"]["path"] == "data.csv" and raw["pipeline"]["source"]["url"].endswith("Qx7Lm@h/db")
    assert_no_fragment(repr(redacted), "Qx7Lm")


# --------------------------------------------------------------------------- readers' messages


@pytest.mark.parametrize("password", NASTY)
def test_unreachable_mongodb_message_hides_nasty_password(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("TABPIPE_TEST_NASTY_URI", f"mongodb://alice:{password}@127.0.0.1:{free_port()}/?authSource=admin")
    cfg = MongoSource(type="mongodb", uri_env="TABPIPE_TEST_NASTY_URI", database="shop", collection="orders",
                      timeout_ms=100, connect_timeout_ms=100, max_retries=0)
    with pytest.raises(DataError, match=r"MongoDB source shop\.orders") as err:
        read_source(cfg, Path("."), mongo_client_factory=MongoClient, environ=os.environ)
    assert_no_fragment(str(err.value), password)


@pytest.mark.parametrize("uri", ["alice:Qx7Lm@127.0.0.1:1", "mongodb:/alice:Qx7Lm@h", "mongodb://alice:Qx7Lm/Rt3Vz@h:1/",
                                 "mongodb://alice:Qx7Lm@h:notaport/"])
def test_malformed_mongodb_uri_is_refused_without_echo(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.setenv("TABPIPE_TEST_BAD_URI", uri)
    cfg = MongoSource(type="mongodb", uri_env="TABPIPE_TEST_BAD_URI", database="shop", collection="orders",
                      timeout_ms=100, max_retries=0)
    with pytest.raises(DataError, match=r"MongoDB source shop\.orders") as err:
        read_source(cfg, Path("."), mongo_client_factory=MongoClient, environ=os.environ)
    assert "$TABPIPE_TEST_BAD_URI" in str(err.value)
    assert_no_fragment(str(err.value), "Qx7Lm")


@pytest.mark.parametrize("url", [
    "postgres//alice:Qx7Lm-secret@127.0.0.1/db",         # missing ':' after the scheme
    "postgresql+psycopg://alice:Qx7Lm@127.0.0.1:port/db",  # port is not a number
    "postgresql+psycopg://alice:Qx7Lm@Rt3Vz@127.0.0.1/db",  # unescaped '@': SQLAlchemy would split it
])
def test_bad_sql_url_is_refused_without_echo(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpipe"):
        cfg = SqlSource(type="sql", url=url, query="SELECT 1")
        with pytest.raises(DataError, match="percent-encode") as err:
            read_source(cfg, Path("."), environ=os.environ)
    assert_no_fragment(str(err.value) + caplog.text, "Qx7Lm")


def test_inline_password_warns_and_url_env_does_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpipe"):
        SqlSource(type="sql", url="postgresql://u:Qx7Lm@h/db", query="SELECT 1")
    assert "url_env" in caplog.text and "u:***@h/db" in caplog.text
    assert_no_fragment(caplog.text, "Qx7Lm")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tabpipe"):
        SqlSource(type="sql", url="sqlite:///x.db", query="SELECT 1")
        SqlSource(type="sql", url_env="DATABASE_URL", query="SELECT 1")
    assert caplog.text == ""


# --------------------------------------------------------------------------- tabpipe train, end to end


def _sql_project(root: Path, url: str, query: str) -> Path:
    """A cheap project whose source is ``{type: sql, url, query}`` (make_project writes a file source)."""
    config = make_project(root, rows=50)
    doc = yaml.safe_load(config.read_text())
    doc["source"] = {"type": "sql", "url": url, "query": query}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def _run_train(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                          cwd=config.parent, timeout=400)


def _everything_written(config: Path, proc: subprocess.CompletedProcess) -> str:
    texts = [proc.stdout, proc.stderr]
    for run_dir in run_dirs(config):
        texts += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file() and
                  p.suffix in (".json", ".log", ".txt", ".yaml", ".html")]
    return "\n".join(texts)


def test_train_with_inline_pg_password_keeps_it_out_of_run_folder(tmp_path: Path, postgres_url: str) -> None:
    """The issue's reproduction: an inline password used to land in every run.json."""
    table = "kpis_redaction"
    engine = sqlalchemy.create_engine(postgres_url)
    generate(600, seed=3).to_sql(table, engine, index=False, if_exists="replace")
    engine.dispose()
    password = "Qx7Lm#Rt3Vz?Wp9Kd/Hs2Jn:Yc5Bf"  # trust auth: the server ignores it, the run must hide it
    url = postgres_url.replace("tabpipe@", f"tabpipe:{quote_plus(password)}@", 1)
    config = _sql_project(tmp_path, url, f"SELECT * FROM {table}")
    proc = _run_train(config)
    assert proc.returncode == 0, proc.stderr
    written = _everything_written(config, proc)
    assert "run.json" in "".join(str(p) for p in run_dirs(config)[0].iterdir())
    assert "tabpipe:***@" in written  # the snapshot keeps the URL, password hidden
    assert_no_fragment(written, password)
    assert quote_plus(password) not in written


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_failed_train_with_inline_password_leaks_nothing(tmp_path: Path, scheme: str) -> None:
    password = "Qx7Lm@Rt3Vz#Wp9Kd"
    url = f"{scheme}://alice:{quote_plus(password)}@127.0.0.1:{free_port()}/shop"
    config = _sql_project(tmp_path, url, "SELECT 1")
    proc = _run_train(config)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"SQL source .*alice:\*\*\*@127\.0\.0\.1", proc.stderr)
    written = _everything_written(config, proc)
    assert len(run_dirs(config)) == 1 and "alice:***@" in (run_dirs(config)[0] / "run.json").read_text()
    assert_no_fragment(written, password)
    assert quote_plus(password) not in written

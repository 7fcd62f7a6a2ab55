"""Tests of tabpipe.sources: files, MongoDB (mongomock + a real unreachable port), SQLite and a real PostgreSQL.

Redaction and timeouts/outages have their own modules: test_source_redaction.py, test_source_outages.py.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import re
import uuid
from pathlib import Path

import mongomock
import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from mongomock.store import ServerStore
from pg_server import free_port, postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)
from pydantic import TypeAdapter, ValidationError
from pymongo import MongoClient
from pymongo.errors import AutoReconnect

from tabpipe.sources import mongodb as mongodb_reader
from tabpipe.errors import DataError
from tabpipe.sources import (
    FileSource,
    MongoSource,
    SourceConfig,
    SqlSource,
    push_to_mongo,
    read_file,
    read_mongodb,
    read_source,
    read_sql,
)

MOCK_URI = "mongodb://alice:Mock-Pw-123@localhost:27017/"


def sample_frame() -> pd.DataFrame:
    """A small table with ints, floats with NaN, strings with None, bools and timestamps with NaT."""
    return pd.DataFrame({
        "id": [1, 2, 3, 4],
        "amount": [10.5, np.nan, 3.25, 0.0],
        "city": ["Paris", None, "Lyon", "Nice"],
        "flag": [True, False, True, False],
        "seen": pd.to_datetime(["2024-01-02 03:04:05", None, "2024-02-03 00:00:00", "2023-12-31 23:59:59"]),
        "label": [1, 0, 1, 0],
    })


# --------------------------------------------------------------------------- files


def test_csv_round_trip_relative_to_base_dir(tmp_path: Path) -> None:
    df = sample_frame().drop(columns="seen")
    (tmp_path / "data").mkdir()
    df.to_csv(tmp_path / "data" / "train.csv", index=False)
    got = read_source(FileSource(type="file", path=Path("data/train.csv")), tmp_path, environ={})
    pd.testing.assert_frame_equal(got, df, check_dtype=False)
    assert got["city"].isna().tolist() == [False, True, False, False]


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    df = sample_frame()
    df.to_parquet(tmp_path / "train.parquet", index=False)
    got = read_source({"type": "file", "path": "train.parquet"}, tmp_path, environ={})
    pd.testing.assert_frame_equal(got, df)


def test_explicit_format_and_separator(tmp_path: Path) -> None:
    (tmp_path / "t.dat").write_text("a;b\n1;x\n2;y\n")
    got = read_file(tmp_path / "t.dat", format="csv", sep=";")
    assert got["a"].tolist() == [1, 2] and got["b"].tolist() == ["x", "y"]


def test_missing_file_names_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="data file not found: ") as err:
        read_file(Path("nope.csv"))
    assert str(tmp_path / "nope.csv") in str(err.value)


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unknown data file extension"):
        read_file(tmp_path / "t.xlsx")


@pytest.mark.parametrize(("text", "message"), [("", "empty"), ("a,b\n", "no rows")])
def test_empty_csv(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_file(tmp_path / "e.csv")


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read parquet file"):
        read_file(tmp_path / "bad.parquet")


# --------------------------------------------------------------------------- configs


def test_source_config_is_discriminated_and_strict() -> None:
    adapter = TypeAdapter(SourceConfig)
    cfg = adapter.validate_python({"type": "mongodb", "database": "d", "collection": "c"})
    assert isinstance(cfg, MongoSource) and cfg.uri_env == "MONGODB_URI" and cfg.filter == {}
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "file", "path": "x.csv", "typo": 1})
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "mongodb", "database": "d", "collection": "c", "batch_size": 0})


@pytest.mark.parametrize("urls", [{}, {"url": "sqlite:///x.db", "url_env": "X"}])
def test_sql_source_needs_exactly_one_url(urls: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        SqlSource(type="sql", query="SELECT 1", **urls)


# --------------------------------------------------------------------------- MongoDB (mongomock)


@pytest.fixture
def mock_factory() -> functools.partial:
    """A ``mongomock.MongoClient`` factory whose clients share one in-memory server."""
    return functools.partial(mongomock.MongoClient, _store=ServerStore())


@pytest.fixture
def mongo_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put the mock URI in an env var and return the var's name."""
    monkeypatch.setenv("TABPIPE_TEST_MOCK_URI", MOCK_URI)
    return "TABPIPE_TEST_MOCK_URI"


def mongo_cfg(uri_env: str, **extra) -> MongoSource:
    return MongoSource(type="mongodb", uri_env=uri_env, database="shop", collection="orders", **extra)


def test_push_then_read_round_trip(mock_factory, mongo_env) -> None:
    df = sample_frame()
    assert push_to_mongo(df, MOCK_URI, "shop", "orders", batch_size=3, client_factory=mock_factory) == 4

    raw = mock_factory(MOCK_URI).shop.orders.find_one({"id": 2})
    assert raw["amount"] is None and raw["city"] is None and raw["seen"] is None  # missing -> null
    assert type(raw["id"]) is int and type(raw["flag"]) is bool

    got = read_source(mongo_cfg(mongo_env), Path("."), mongo_client_factory=mock_factory, environ=os.environ)
    assert "_id" not in got.columns
    assert list(got.columns) == list(df.columns)
    pd.testing.assert_frame_equal(got, df, check_dtype=False)


def test_filter_and_projection_applied(mock_factory, mongo_env) -> None:
    push_to_mongo(sample_frame(), MOCK_URI, "shop", "orders", client_factory=mock_factory)
    cfg = mongo_cfg(mongo_env, filter={"label": 1, "amount": {"$gt": 5}}, projection={"id": 1, "amount": 1})
    got = read_source(cfg, Path("."), mongo_client_factory=mock_factory, environ=os.environ)
    assert list(got.columns) == ["id", "amount"]
    assert got.to_dict("records") == [{"id": 1, "amount": 10.5}]


def test_nested_documents_are_flattened(mock_factory, mongo_env) -> None:
    mock_factory(MOCK_URI).shop.orders.insert_many([
        {"id": 1, "customer": {"age": 31, "address": {"city": "Paris"}}},
        {"id": 2, "customer": {"age": 45}},
    ])
    got = read_mongodb(mongo_cfg(mongo_env), MOCK_URI, client_factory=mock_factory)
    assert set(got.columns) == {"id", "customer.age", "customer.address.city"}
    assert got["customer.address.city"].iloc[0] == "Paris" and pd.isna(got["customer.address.city"].iloc[1])


def test_push_replace_drops_collection_first(mock_factory) -> None:
    push_to_mongo(sample_frame(), MOCK_URI, "shop", "orders", client_factory=mock_factory)
    push_to_mongo(sample_frame(), MOCK_URI, "shop", "orders", client_factory=mock_factory, replace=True)
    assert mock_factory(MOCK_URI).shop.orders.count_documents({}) == 4


def test_push_converts_numpy_and_timestamps_in_batches() -> None:
    calls: list[tuple[list[dict], bool]] = []

    class FakeCollection:
        def insert_many(self, docs, ordered=True):
            calls.append((docs, ordered))
            return type("R", (), {"inserted_ids": list(range(len(docs)))})()

    class FakeClient:
        closed = False

        def __getitem__(self, name):
            return {"orders": FakeCollection()}

        def close(self):
            FakeClient.closed = True

    df = pd.DataFrame({"n": np.arange(5, dtype=np.int32), "obj": [np.int64(7), np.float32(0.5), pd.NA, "s", None],
                       "when": pd.to_datetime(["2024-01-01"] * 4 + [None], utc=True)})
    count = push_to_mongo(df, "mongodb://x", "shop", "orders", batch_size=2, client_factory=lambda uri, **options: FakeClient())
    assert count == 5 and [len(docs) for docs, _ in calls] == [2, 2, 1]
    assert all(ordered is False for _, ordered in calls) and FakeClient.closed
    first, last = calls[0][0][0], calls[-1][0][0]
    assert type(first["n"]) is int and type(first["obj"]) is int and first["obj"] == 7
    assert type(calls[0][0][1]["obj"]) is float
    assert type(first["when"]) is dt.datetime and first["when"].tzinfo is not None
    assert last == {"n": 4, "obj": None, "when": None}


def test_uri_env_unset(monkeypatch: pytest.MonkeyPatch, mock_factory) -> None:
    monkeypatch.delenv("TABPIPE_NO_SUCH_URI", raising=False)
    with pytest.raises(DataError, match="TABPIPE_NO_SUCH_URI"):
        read_source(mongo_cfg("TABPIPE_NO_SUCH_URI"), Path("."), mongo_client_factory=mock_factory, environ=os.environ)


def test_empty_result_names_collection_and_filter(mock_factory, mongo_env) -> None:
    push_to_mongo(sample_frame(), MOCK_URI, "shop", "orders", client_factory=mock_factory)
    with pytest.raises(DataError, match=r"shop\.orders.*\"label\": 7"):
        read_mongodb(mongo_cfg(mongo_env, filter={"label": 7}), MOCK_URI, client_factory=mock_factory)


def test_retries_with_exponential_backoff(monkeypatch: pytest.MonkeyPatch, mock_factory, mongo_env) -> None:
    push_to_mongo(sample_frame(), MOCK_URI, "shop", "orders", client_factory=mock_factory)
    sleeps: list[float] = []
    monkeypatch.setattr(mongodb_reader.time, "sleep", sleeps.append)
    failures = iter([AutoReconnect("blip"), AutoReconnect("blip")])

    def flaky(uri, **kwargs):
        error = next(failures, None)
        if error is not None:
            raise error
        return mock_factory(uri, **kwargs)

    got = read_mongodb(mongo_cfg(mongo_env, max_retries=3, retry_backoff_s=0.5), MOCK_URI, client_factory=flaky)
    assert len(got) == 4 and sleeps == [0.5, 1.0]


def test_unreachable_server_is_reported_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("TABPIPE_TEST_DEAD_URI", f"mongodb://alice:Sup3r-Secret@127.0.0.1:{port}/?authSource=admin")
    cfg = mongo_cfg("TABPIPE_TEST_DEAD_URI", timeout_ms=150, retry_backoff_s=0, max_retries=1)
    with pytest.raises(DataError, match="unreachable") as err:
        read_source(cfg, Path("."), mongo_client_factory=MongoClient, environ=os.environ)
    message = str(err.value)
    assert "Sup3r-Secret" not in message
    assert f"alice:***@127.0.0.1:{port}" in message and "after 2 attempt(s)" in message


@pytest.mark.skipif(not os.environ.get("TABPIPE_TEST_MONGODB_URI"),
                    reason="set TABPIPE_TEST_MONGODB_URI to run against a real MongoDB server")
def test_real_mongodb_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = os.environ["TABPIPE_TEST_MONGODB_URI"]
    collection = f"tabpipe_test_{uuid.uuid4().hex}"
    monkeypatch.setenv("TABPIPE_TEST_REAL_URI", uri)
    try:
        assert push_to_mongo(sample_frame(), uri, "tabpipe_test", collection) == 4
        cfg = MongoSource(type="mongodb", uri_env="TABPIPE_TEST_REAL_URI", database="tabpipe_test",
                          collection=collection, timeout_ms=3000, max_retries=1)
        got = read_source(cfg, Path("."), environ=os.environ).sort_values("id", ignore_index=True)
        pd.testing.assert_frame_equal(got, sample_frame(), check_dtype=False)
    finally:
        client = MongoClient(uri, serverSelectionTimeoutMS=3000)
        client["tabpipe_test"].drop_collection(collection)
        client.close()


# --------------------------------------------------------------------------- SQL: SQLite


def test_sqlite_round_trip_relative_path_and_chunks(tmp_path: Path) -> None:
    df = sample_frame().drop(columns="seen")
    (tmp_path / "data").mkdir()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'data' / 'x.db'}")
    df.to_sql("orders", engine, index=False)
    engine.dispose()
    cfg = SqlSource(type="sql", url="sqlite:///data/x.db", query="SELECT * FROM orders ORDER BY id", chunk_size=3)
    got = read_source(cfg, tmp_path, environ=os.environ)
    pd.testing.assert_frame_equal(got, df, check_dtype=False)


def test_sqlite_bad_query(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    pd.DataFrame({"a": [1]}).to_sql("t", engine, index=False)
    engine.dispose()
    cfg = SqlSource(type="sql", url="sqlite:///x.db", query="SELECT * FROM missing_table")
    with pytest.raises(DataError, match="no such table: missing_table"):
        read_sql(cfg, cfg.url, tmp_path)


def test_sqlite_missing_file_is_not_created(tmp_path: Path) -> None:
    cfg = SqlSource(type="sql", url="sqlite:///nope.db", query="SELECT 1")
    with pytest.raises(DataError, match=re.escape(f"SQLite database file not found: {tmp_path / 'nope.db'}")):
        read_source(cfg, tmp_path, environ=os.environ)
    assert not (tmp_path / "nope.db").exists()


def test_sql_url_env_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TABPIPE_NO_SUCH_DB_URL", raising=False)
    with pytest.raises(DataError, match="TABPIPE_NO_SUCH_DB_URL"):
        read_source(SqlSource(type="sql", url_env="TABPIPE_NO_SUCH_DB_URL", query="SELECT 1"), tmp_path, environ=os.environ)


# --------------------------------------------------------------------------- SQL: real PostgreSQL


@pytest.mark.parametrize("chunk_size", [1, 3, 50_000])
def test_postgres_round_trip_with_nulls_and_timestamps(postgres_url: str, monkeypatch: pytest.MonkeyPatch,
                                                       chunk_size: int) -> None:
    df = sample_frame()
    engine = sqlalchemy.create_engine(postgres_url)
    df.to_sql("orders_rt", engine, index=False, if_exists="replace")
    engine.dispose()
    monkeypatch.setenv("TABPIPE_TEST_PG_URL", postgres_url)
    cfg = SqlSource(type="sql", url_env="TABPIPE_TEST_PG_URL", query="SELECT * FROM orders_rt ORDER BY id",
                    chunk_size=chunk_size)
    got = read_source(cfg, Path("."), environ=os.environ)
    assert pd.api.types.is_datetime64_any_dtype(got["seen"])
    assert got["seen"].isna().tolist() == [False, True, False, False]
    assert got["amount"].isna().tolist() == [False, True, False, False]
    assert got["city"].isna().tolist() == [False, True, False, False]
    pd.testing.assert_frame_equal(got, df, check_dtype=False)


def test_postgres_bad_sql_reports_db_message(postgres_url: str) -> None:
    cfg = SqlSource(type="sql", url=postgres_url, query="SELEC oops")
    with pytest.raises(DataError, match="syntax error"):
        read_source(cfg, Path("."), environ=os.environ)


def test_postgres_unknown_database_redacts_password(postgres_url: str) -> None:
    url = postgres_url.replace("tabpipe@", "tabpipe:Pg-Secret-42@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(DataError, match='database "no_such_db" does not exist') as err:
        read_source(SqlSource(type="sql", url=url, query="SELECT 1"), Path("."), environ=os.environ)
    assert "Pg-Secret-42" not in str(err.value) and "tabpipe:***@" in str(err.value)


def test_postgres_unreachable_redacts_password() -> None:
    url = f"postgresql+psycopg://tabpipe:Pg-Secret-42@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(DataError) as err:
        read_source(SqlSource(type="sql", url=url, query="SELECT 1"), Path("."), environ=os.environ)
    message = str(err.value)
    assert "Pg-Secret-42" not in message and "tabpipe:***@" in message
    assert "refused" in message.lower() or "failed" in message.lower()

"""Read a MongoDB collection into a flat DataFrame, with bounded timeouts and bounded retries.

The URI is passed in (``read_source`` looks it up); every message shows it through
:func:`~tabpipe.sources.base.mongo_location` (password hidden) and driver text through ``scrub``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from tabpipe.errors import DataError
from tabpipe.sources.base import MongoSource, mongo_location, scrub


def default_client_factory() -> Callable:
    """Return ``pymongo.MongoClient`` (imported lazily so file-only users need no driver)."""
    from pymongo import MongoClient

    return MongoClient


def mongo_errors() -> tuple[tuple[type[Exception], ...], type[Exception]]:
    """Return (retryable connection/timeout errors, any pymongo error)."""
    from pymongo import errors

    # NetworkTimeout (a stalled socket) and ServerSelectionTimeoutError are both AutoReconnect /
    # ConnectionFailure subclasses; spelled out so the intent is visible.
    retryable = (errors.ConnectionFailure, errors.ServerSelectionTimeoutError, errors.AutoReconnect,
                 errors.NetworkTimeout)
    return retryable, errors.PyMongoError


def client_options(cfg: MongoSource) -> dict[str, Any]:
    """The pymongo client keyword arguments that bound every wait of a read."""
    return {"serverSelectionTimeoutMS": cfg.timeout_ms, "connectTimeoutMS": cfg.connect_timeout_ms,
            "socketTimeoutMS": cfg.socket_timeout_ms}


def read_mongodb(cfg: MongoSource, uri: str, *, client_factory: Callable | None = None) -> pd.DataFrame:
    """Read ``cfg.database.cfg.collection`` from ``uri`` (``_id`` dropped, nested keys dotted).

    Connection failures and timeouts are retried at most ``cfg.max_retries`` times, sleeping
    ``retry_backoff_s * 2**attempt`` in between; no retry starts once ``cfg.max_retry_time_s`` would
    be exceeded. Then a DataError names the collection and server (password hidden).
    """
    factory = client_factory or default_client_factory()
    retryable, any_mongo_error = mongo_errors()
    where = f"MongoDB source {cfg.database}.{cfg.collection} at {mongo_location(uri)}"
    deadline = time.monotonic() + cfg.max_retry_time_s
    attempt = 0
    while True:
        attempt += 1
        try:
            docs = _fetch_documents(factory, uri, cfg)
            break
        except retryable as exc:
            pause = cfg.retry_backoff_s * 2 ** (attempt - 1)
            if attempt > cfg.max_retries or time.monotonic() + pause > deadline:
                raise DataError(f"{where} unreachable or not answering after {attempt} attempt(s) "
                                f"(max_retries={cfg.max_retries}, max_retry_time_s={cfg.max_retry_time_s:g}): "
                                f"{_message(exc, uri)}") from None
            time.sleep(pause)
        except (any_mongo_error, ValueError, TypeError) as exc:
            # ValueError/TypeError: pymongo's URI and option parsing
            raise DataError(f"{where} (URI from ${cfg.uri_env}) failed: {_message(exc, uri)}") from None
    if not docs:
        raise DataError(f"MongoDB collection {cfg.database}.{cfg.collection} returned no documents for filter "
                        f"{json.dumps(cfg.filter, default=str)}")
    return _documents_to_frame(docs)


def _message(exc: BaseException, uri: str) -> str:
    """``Type: message`` scrubbed of the URI's password, then cut to its first line and 300 characters
    (pymongo's can describe every server of the topology)."""
    text = scrub(str(exc), uri).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _fetch_documents(factory: Callable, uri: str, cfg: MongoSource) -> list[dict]:
    """Run the find() with filter/projection (``_id`` excluded) and drain the batched cursor."""
    client = factory(uri, **client_options(cfg))
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

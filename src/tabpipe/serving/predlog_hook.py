"""The service's one hook into the prediction log: call ``log_request`` once per request after scoring.

It takes the request id from the client's ``X-Request-ID`` header (letters, digits, ``-_.:``, up to 64
characters) or makes one, remembers it for the ``X-Request-ID`` response header (``add_request_id``,
registered as an ``after_request`` handler), and queues the rows. Endpoints pass what they scored:
a list of record dicts or a DataFrame, the positive-class probabilities, the labels and optional
per-row warnings; rows that were not scored carry a NaN probability and are skipped.
"""
from __future__ import annotations

import re

from flask import g, request

from tabpipe.monitoring.predlog import PredictionLog, new_request_id

_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def request_id() -> str:
    """This request's id (the client's X-Request-ID when well-formed, else a new one)."""
    if "request_id" not in g:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _CLIENT_ID.fullmatch(given) else new_request_id()
    return g.request_id


def log_request(prediction_log: PredictionLog | None, version: str, rows, proba, labels, warnings=None) -> None:
    """Queue one request's scored rows (``rows``: list of dicts or a DataFrame); no-op when logging is off."""
    if prediction_log is None:
        return
    if hasattr(rows, "to_dict"):
        prediction_log.submit_frame(request_id(), version, rows, proba, labels, warnings)
    else:
        prediction_log.submit(request_id(), version, rows, proba, labels, warnings)


def add_request_id(response):
    """after_request: tell the client the id its rows were logged under."""
    if "request_id" in g:
        response.headers["X-Request-ID"] = g.request_id
    return response

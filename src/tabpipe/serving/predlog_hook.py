"""The service's one hook into the prediction log: call ``log_request`` once per request after scoring.

It takes the request id from the client's ``X-Request-ID`` header (letters, digits, ``-_.:``, up to 64
characters) or makes one, remembers it for the ``X-Request-ID`` response header (``add_request_id``,
registered as an ``after_request`` handler), and queues the rows. Endpoints pass what they scored:
a list of record dicts or a DataFrame, the positive-class probabilities, the labels and optional
per-row warnings; rows that were not scored carry a NaN probability and are skipped.
"""
from __future__ import annotations

import re

from flask import request

from tabpipe.history.predlog import PredictionLog, new_request_id
from tabpipe.serving.logs import REQUEST_ID_KEY

_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def request_id() -> str:
    """This request's id (the client's X-Request-ID when well-formed, else a new one)."""
    environ = request.environ
    current = environ.get(REQUEST_ID_KEY)
    if current is None:
        given = environ.get("HTTP_X_REQUEST_ID")
        current = environ[REQUEST_ID_KEY] = given if given and _CLIENT_ID.fullmatch(given) else new_request_id()
    return current


def assign_request_id() -> None:
    """before_request (JSON logs): give every request its id up front, so each of its log lines has it."""
    request_id()


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
    current = request.environ.get(REQUEST_ID_KEY)
    if current is not None:
        response.headers.add("X-Request-ID", current)
    return response

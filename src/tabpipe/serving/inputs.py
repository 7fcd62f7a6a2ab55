"""What the service accepts from a request, checked before any work: JSON records, the origin of a
browser request, and a bounded list of row-level details for the answer.

Design notes: docs/serving.md#what-a-request-is-checked-for
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

CONTAINER_SLACK = 64   # objects/arrays allowed beyond two per record (the wrapper, braces inside strings)


class ApiError(Exception):
    """An answer other than 200: status, one-line error and optional row/field details."""

    def __init__(self, status: int, error: str, details: list | None = None, extra: dict | None = None,
                 code: str | None = None):
        self.status, self.error, self.details, self.extra, self.code = status, error, details, extra or {}, code


def _not_json_constant(name: str) -> str:
    return name   # NaN / Infinity / -Infinity stay text: the field's type rule names them


def records_from_json(body: bytes, max_records: int, options: frozenset = frozenset()) -> tuple[list, bool, dict]:
    """(records, is_batch, options) from a ``{...}`` or ``{"records": [...], <option>: ...}`` body; ApiError
    400/413 otherwise. ``options``: the keys a request may set next to ``records`` (or, for one record, among
    its fields, where a key of the record's own is never taken as an option); returned as sent."""
    limit = 2 * max_records + CONTAINER_SLACK
    containers = body.count(b"{") + body.count(b"[")
    if containers > limit:
        raise ApiError(413, f"the body holds {containers} JSON objects/arrays; a request may carry at most "
                            f"serve.max_records={max_records} records")
    try:
        payload = json.loads(body, parse_constant=_not_json_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {str(exc)[:200]}") from None
    if isinstance(payload, dict) and "records" in payload and set(payload) <= {"records", *options}:
        records = payload["records"]
        if not isinstance(records, list):
            raise ApiError(400, "'records' must be a list of objects")
        if not records:
            raise ApiError(400, "'records' is empty")
        if len(records) > max_records:
            raise ApiError(413, f"{len(records)} records in one request; the limit is serve.max_records={max_records}")
        return records, True, {k: v for k, v in payload.items() if k != "records"}
    if isinstance(payload, dict):
        return [payload], False, {k: payload.pop(k) for k in options if k in payload}
    raise ApiError(400, "expected one record (a JSON object) or {\"records\": [...]}")


MAX_EXPLAIN = 1000   # reasons per row a request may ask for (a model has at most this many columns to name)


def explain_count(value, where: str) -> int:
    """The number of reasons per row asked for (0: none); ApiError 400 naming ``where`` unless a whole number
    in [0, MAX_EXPLAIN]."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EXPLAIN:
        raise ApiError(400, f"{where} must be a whole number of reasons per row from 0 to {MAX_EXPLAIN}, "
                            f"got {str(value)[:40]!r}")
    return value


def cross_site_refusal(headers: Mapping[str, str], own_origin: str, allowed: Iterable[str]) -> str | None:
    """Why a browser request from another site is refused, or None when it may proceed."""
    origin = headers.get("Origin")
    if origin is not None and origin in allowed:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site in ("cross-site", "same-site") or (site is None and origin is not None and origin != own_origin):
        return (f"cross-site request refused (Origin {origin or 'not sent'}, Sec-Fetch-Site {site or 'not sent'}); "
                "list the origin under serve.allowed_origins to allow it")
    return None


class Details:
    """Row-level details for an answer: the first error of every failed row, then at most ``budget`` more."""

    def __init__(self, budget: int):
        self.budget, self.truncated = budget, False

    def take(self, items: list[dict], first_free: bool = False) -> list[dict]:
        """The items that fit (the first one always when ``first_free``)."""
        free = 1 if first_free and items else 0
        room = free + max(0, min(self.budget, len(items) - free))
        self.budget -= room - free
        if room < len(items):
            self.truncated = True
        return items[:room]

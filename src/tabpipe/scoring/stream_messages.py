"""Redis Stream entries as rows to score, and the entries ``tabpipe stream`` writes back: the pure half of
``scoring/redis_stream.py`` (no I/O here).

An input entry's fields take one of three shapes (docs/streaming.md):

- ``rows``: a JSON array of row objects — several rows in one message;
- ``row``: one JSON object — one row;
- anything else: every field is a column and its value the value's text — one row (an empty value is missing).

Redis hands fields over as bytes; text must be UTF-8. What cannot be read is refused alone, with its reason:
a message that is not UTF-8, not JSON or not row objects (the whole message: ``Refusal.row`` is None), a
row lacking a feature column of the schema (that row only; the message's other rows are scored). Rows
the schema check refuses (an unreadable value, a hard rule) are refused after scoring, with its text,
which names the field.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tabpipe.jsonable import to_json_ready

PAYLOAD_CHARS = 10_000   # a dead letter keeps at most this much of the refused message or row


@dataclass(frozen=True)
class Refusal:
    """A message (``row`` None) or one of its rows that is not scored, why, and what it held (JSON text)."""
    message_id: str
    row: int | None
    reason: str
    payload: str

    def fields(self) -> dict[str, str]:
        """The dead-letter entry's fields."""
        return {"message": self.message_id, "row": "" if self.row is None else str(self.row),
                "reason": self.reason, "payload": self.payload}


@dataclass
class Decoded:
    """The readable rows of a batch of messages, in order, with their origin, and the refusals."""
    records: list[dict] = field(default_factory=list)
    frame: Any = None   # the records as a DataFrame, when decoding made it (flat messages): what from_records gives
    origins: list[tuple[str, int]] = field(default_factory=list)   # (message id, row index in the message)
    refusals: list[Refusal] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)           # every message of the batch, readable or not

    def first_added(self) -> datetime | None:
        """When the oldest message of the batch entered the stream (a Redis stream id starts with its
        milliseconds since the epoch, on the Redis server's clock); None for an empty batch."""
        if not self.message_ids:
            return None
        first = min(int(message_id.split("-", 1)[0]) for message_id in self.message_ids)
        return datetime.fromtimestamp(first / 1000, tz=timezone.utc)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _loose_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _payload(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= PAYLOAD_CHARS else text[:PAYLOAD_CHARS] + "…"


class _Unreadable(ValueError):
    """A message that yields no row; its text is the reason."""


def _not_json_constant(name: str) -> str:
    return name   # NaN / Infinity stay text: the schema check names the field that holds one


def _json_field(name: str, raw: bytes | str) -> Any:
    try:
        return json.loads(_text(raw), parse_constant=_not_json_constant)
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"field {name!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise _Unreadable(f"field {name!r} is not JSON: {str(exc)[:200]}") from None


def message_rows(fields: Mapping[bytes | str, bytes | str]) -> list[Any]:
    """The rows of one entry (each a dict when readable; a non-dict item is refused by ``decode_batch``),
    or ``_Unreadable`` naming the field."""
    if b"rows" not in fields and b"row" not in fields:
        try:   # the common flat message in one pass; anything unusual takes the path below, which names the field
            row = {key.decode("utf-8"): value.decode("utf-8") or None for key, value in fields.items()}
            if row and "rows" not in row and "row" not in row:
                return [row]
        except (UnicodeDecodeError, AttributeError):
            pass
    names = {}
    for key, value in fields.items():
        try:
            names[_text(key)] = value
        except UnicodeDecodeError:
            raise _Unreadable(f"field name {_loose_text(key)!r} is not UTF-8 text") from None
    if "rows" in names:
        rows = _json_field("rows", names["rows"])
        if not isinstance(rows, list):
            raise _Unreadable("field 'rows' must be a JSON array of row objects")
        if not rows:
            raise _Unreadable("field 'rows' is an empty array")
        return rows
    if "row" in names:
        return [_json_field("row", names["row"])]
    if not names:
        raise _Unreadable("the message has no fields")
    row = {}
    for name, value in names.items():
        try:
            text = _text(value)
        except UnicodeDecodeError as exc:
            raise _Unreadable(f"field {name!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        row[name] = None if text == "" else text
    return [row]


def _flat_batch(messages: Sequence[tuple[bytes | str, Mapping | None]], features: Sequence[str]) -> Decoded | None:
    """``decode_batch`` of a batch of flat messages that all have the same fields, every feature among them, and
    hold UTF-8 text: every value decoded in one pass (one join, one decode, one split) and the DataFrame made
    column by column; None for any other batch (``decode_batch`` then reads message by message)."""
    import numpy as np
    import pandas as pd

    first = messages[0][1]
    if not first or not all(type(k) is bytes for k in first):
        return None
    keys = tuple(first)
    if b"rows" in first or b"row" in first:
        return None
    for _, fields in messages:
        if fields is None or tuple(fields) != keys:
            return None
    try:
        names = [key.decode("utf-8") for key in keys]
        values = [value for _, fields in messages for value in fields.values()]
        parts = b"\x00".join(values).decode("utf-8").split("\x00")
    except (UnicodeDecodeError, TypeError):   # not UTF-8, or not all bytes
        return None
    if len(parts) != len(values) or any(name not in names for name in features):
        return None   # a value holding NUL: read message by message
    parts = [part or None for part in parts]
    k = len(names)
    out = Decoded()
    out.message_ids = [_text(raw_id) for raw_id, _ in messages]
    out.records = [dict(zip(names, parts[at:at + k])) for at in range(0, len(parts), k)]
    out.origins = [(message_id, 0) for message_id in out.message_ids]
    grid = np.empty(len(parts), dtype=object)
    grid[:] = parts
    grid = grid.reshape(len(messages), k)
    out.frame = pd.DataFrame({name: grid[:, j] for j, name in enumerate(names)})
    return out


def decode_batch(messages: Iterable[tuple[bytes | str, Mapping | None]], features: Sequence[str]) -> Decoded:
    """The rows of ``messages`` (``(id, fields)`` as XREADGROUP returns them) that can go to the scorer, in
    order, and a ``Refusal`` for each message or row that cannot: unreadable, not an object, or lacking
    one of ``features`` (the schema's feature columns; a present field holding null is a missing value)."""
    messages = list(messages)
    if messages:
        flat = _flat_batch(messages, features)
        if flat is not None:
            return flat
    out = Decoded()
    for raw_id, fields in messages:
        message_id = _text(raw_id)
        out.message_ids.append(message_id)
        if fields is None:   # deleted from the stream while pending: nothing left to score
            continue
        try:
            rows = message_rows(fields)
        except _Unreadable as exc:
            shown = {_loose_text(k): _loose_text(v) for k, v in fields.items()}
            out.refusals.append(Refusal(message_id, None, str(exc), _payload(shown)))
            continue
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                out.refusals.append(Refusal(message_id, index, f"row {index} is not a JSON object but "
                                            f"{type(row).__name__}", _payload(row)))
                continue
            absent = [name for name in features if name not in row]
            if absent:
                shown = ", ".join(absent[:5]) + (f" (+{len(absent) - 5} more)" if len(absent) > 5 else "")
                out.refusals.append(Refusal(message_id, index, f"row {index}: field{'s' if len(absent) > 1 else ''} "
                                            f"{shown} missing (every feature of the schema is needed; "
                                            "send null for a missing value)", _payload(row)))
                continue
            out.records.append(row)
            out.origins.append((message_id, index))
    return out


def given_up(message_id: bytes | str, fields: Mapping | None, deliveries: int) -> Refusal:
    """The refusal of a message delivered ``deliveries`` times and never acknowledged: every consumer that took it
    stopped before finishing its batch (a message that crashes or exhausts the consumer is not retried forever)."""
    shown = {_loose_text(k): _loose_text(v) for k, v in (fields or {}).items()}
    return Refusal(_text(message_id), None, f"delivered {deliveries} times and never acknowledged: the consumers that "
                   "took it stopped before finishing its batch", _payload(shown))


def refused_rows(decoded: Decoded, errors: Sequence[str | None]) -> list[Refusal]:
    """A ``Refusal`` for each scored record whose schema-check ``errors`` text is set (``Scored.errors``)."""
    return [Refusal(message_id, index, f"row {index}: {errors[i]}", _payload(to_json_ready(decoded.records[i])))
            for i, (message_id, index) in enumerate(decoded.origins) if errors[i] is not None]


def result_entries(decoded: Decoded, version: str, proba: Sequence[float], labels: Sequence[Any],
                   warnings: Sequence[str | None]) -> list[dict[str, str]]:
    """One output entry per message with scored rows: ``message`` (the input id), ``model_version`` and
    ``results``, a JSON array of {index, prediction, probability, warnings} (rows of the message not scored
    are in the dead-letter stream instead). The text is ``json.dumps``'s for that array, written row by row
    from the JSON of each distinct prediction (a float's JSON is its ``repr``)."""
    import numpy as np

    proba = np.asarray(proba, dtype=float)
    scored = np.flatnonzero(~np.isnan(proba)).tolist()
    label_list = np.asarray(labels, dtype=object).tolist()
    label_json: dict[Any, str] = {}
    by_message: dict[str, list[str]] = {}
    origins = decoded.origins
    for i in scored:
        message_id, index = origins[i]
        p = float(proba[i])
        label = label_list[i]
        key = (type(label), label)
        try:
            prediction = label_json[key]
        except (KeyError, TypeError):
            prediction = json.dumps(to_json_ready(labels[i]))
            if isinstance(label, (str, int, float, bool)):
                label_json[key] = prediction
        warning = warnings[i]
        number = repr(p) if math.isfinite(p) else json.dumps(p)
        text = (f'{{"index": {index}, "prediction": {prediction}, "probability": {number}, "warnings": '
                f'{"null" if warning is None else json.dumps(warning)}}}')
        by_message.setdefault(message_id, []).append(text)
    return [{"message": message_id, "model_version": version, "results": "[" + ", ".join(results) + "]"}
            for message_id, results in by_message.items()]

"""Uploads to the service: outcomes of logged predictions (``POST /outcomes``) and new labelled
training rows (``POST /data``), written to the history store.

Off unless ``serve.allow_uploads``, then token-guarded; rows are checked one by one (bad rows refused
with their ``Problem``s, good rows written), answered with exact counts.
Design notes: docs/uploads.md
"""
from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

import pandas as pd
import pyarrow as pa

from tabpipe.scoring.batch import MissingColumns, TooManyRows, read_csv_bytes
from tabpipe.errors import TabpipeError
from tabpipe.monitoring.outcomes import record_outcomes
from tabpipe.privacy import Protector, canonical
from tabpipe.history.store import HistoryStore, StoreError
from tabpipe.schema import ABSENT, Problem, Schema, coerce_frame, is_missing
from tabpipe.serving.answers import MAX_DETAILS, details_of, not_an_object
from tabpipe.serving.inputs import ApiError, Details, records_from_json

ID_FIELD, LABEL_FIELD = "id", "label"


def authorize(serve, environ: Mapping[str, str], authorization: str | None) -> None:
    """404 when uploads are off, 503 when the token variable is unset, 401 for a missing or wrong token."""
    if not serve.allow_uploads:
        raise ApiError(404, "uploads are disabled (serve.allow_uploads: false)")
    token = environ.get(serve.upload_token_env)
    if not token:
        raise ApiError(503, f"serve.allow_uploads is on but {serve.upload_token_env} is not set")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token")


class StoreHandle:
    """The service's history store for uploads: opened (and migrated) on first use, once per process."""

    def __init__(self, open_store: Callable[[], HistoryStore]):
        self._open, self._lock = open_store, threading.Lock()
        self._store: HistoryStore | None = None
        self._pid = os.getpid()

    def get(self) -> HistoryStore:
        """The store, opened on first use in this process (503 when it cannot be opened)."""
        with self._lock:
            if self._store is None or self._pid != os.getpid():   # a forked worker opens its own engine
                try:
                    self._store, self._pid = self._open(), os.getpid()
                except TabpipeError as exc:
                    raise ApiError(503, f"the history store is not available: {exc}") from None
            return self._store


@contextmanager
def store_errors() -> Iterator[None]:
    """A history store that fails while an upload is written: 503 (the upload can be sent again)."""
    try:
        yield
    except StoreError as exc:
        raise ApiError(503, f"the upload was not stored: {exc}") from None


def read_upload(request, serve, required: tuple[str, ...]) -> list | pd.DataFrame:
    """JSON records (a list, items not yet checked) or the uploaded CSV as a DataFrame."""
    if request.is_json:
        records, _, _ = records_from_json(request.get_data(), serve.max_records)
        return records
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "send Content-Type: application/json ({\"records\": [...]}) "
                            "or a multipart/form-data upload with a CSV in the field 'file'")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "no file field named 'file' in the upload")
    try:
        frame = read_csv_bytes(upload.read(), max_rows=serve.max_csv_rows, required=required)
    except MissingColumns as exc:
        raise ApiError(422, str(exc), details_of(Problem(name, "missing_column", ABSENT) for name in exc.columns)) from None
    except TooManyRows as exc:
        raise ApiError(413, f"the CSV has {exc.rows} rows; the limit is serve.max_csv_rows={exc.limit}") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise ApiError(400, f"could not read the CSV: {str(exc)[:300]}") from None
    if frame.empty:
        raise ApiError(400, "the CSV has a header but no rows")
    return frame


def _class_check(known: tuple) -> Callable[[object], str | None]:
    """A label -> None when it is one of the model's classes, else the message."""
    texts = {canonical(value) for value in known}
    shown = ", ".join(repr(canonical(value)) for value in known)

    def check(value) -> str | None:
        return None if canonical(value) in texts else f"{canonical(value)!r} is not one of the model's classes {shown}"
    return check


def _row(problem: Problem) -> int:
    """The one row an upload's problem names."""
    return problem.rows[0]


def _answer(rows: int, errors: list[Problem], warnings: list[Problem] | None = None) -> dict:
    """Counts plus the bounded details: the first error of every refused row, then at most MAX_DETAILS more."""
    details = Details(MAX_DETAILS)
    by_row: dict[int, list[Problem]] = {}
    for e in errors:
        by_row.setdefault(_row(e), []).append(e)
    kept = [p for row in sorted(by_row) for p in details.take(by_row[row], first_free=True)]
    body = {"rows": rows, "refused": len(by_row), "errors": details_of(kept)}
    if warnings is not None:
        body["rows_with_warnings"] = len({_row(w) for w in warnings})
        body["warnings"] = details_of(details.take(sorted(warnings, key=_row)))
    body["details_truncated"] = details.truncated
    return body


# --------------------------------------------------------------------------- POST /outcomes


def accept_outcomes(store: HistoryStore, upload: list | pd.DataFrame, *, schema: Schema, classes: tuple,
             protector: Protector, upload_id: str) -> tuple[int, dict]:
    """Attach the valid labels to the logged predictions; (HTTP status, answer)."""
    records = upload.to_dict("records") if isinstance(upload, pd.DataFrame) else upload
    check_label = _class_check(classes)
    errors: list[Problem] = []
    valid: dict[int, tuple[str, str]] = {}          # row -> (id text, label text)
    first_label: dict[str, tuple[int, str]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            errors.append(not_an_object(i))
            continue
        row_errors = []
        row_id, label = record.get(ID_FIELD), record.get(LABEL_FIELD)
        if is_missing(row_id):
            row_errors.append(Problem(ID_FIELD, "missing", "is missing (the logged prediction's id)", (i,)))
        if is_missing(label):
            row_errors.append(Problem(LABEL_FIELD, "missing", "is missing", (i,)))
        elif (message := check_label(label)) is not None:
            row_errors.append(Problem(LABEL_FIELD, "classes", message, (i,)))
        if not row_errors:
            key, text = canonical(row_id), canonical(label)
            seen = first_label.setdefault(key, (i, text))
            if seen[1] != text:
                row_errors.append(Problem(ID_FIELD, "conflict", f"id {key!r} has label {seen[1]!r} in row {seen[0]} "
                                                                f"and {text!r} here", (i,)))
        errors += row_errors
        if not row_errors:
            valid[i] = (key, text)
    # the id stands for the schema's id column: hashed like the log hashes it when that column is sensitive
    id_column = next((name for name, spec in schema.columns.items() if spec.role == "id"), ID_FIELD)
    hashed = protector.mode == "hash" and id_column in protector.columns
    candidates = {key for key, _ in valid.values()}
    tokens = {key: protector.token(key) for key in candidates} if hashed else {}
    logged = store.logged_row_ids(candidates | set(tokens.values()))
    for i, (key, _) in list(valid.items()):
        if key not in logged and tokens.get(key) not in logged:
            errors.append(Problem(ID_FIELD, "unknown_id", f"no logged prediction has the id {key!r}", (i,)))
            del valid[i]
    errors.sort(key=_row)
    body = {"upload_id": upload_id, **_answer(len(records), errors), "accepted": len(valid), "matched": 0}
    if not valid:
        return 422, {"error": f"none of the {len(records)} outcomes could be attached", **body}
    labels = pd.DataFrame([valid[i] for i in sorted(valid)], columns=[id_column, LABEL_FIELD])
    run_id = store.record_run(kind="outcomes", source=f"POST /outcomes upload {upload_id}", rows=len(records))
    try:
        result = record_outcomes(store, labels, id_column=id_column, label_column=LABEL_FIELD,
                                 positive=schema.target.positive, protector=protector, where=f"upload {upload_id}",
                                 run_id=run_id)
    except TabpipeError as exc:
        store.finish_run(run_id, status="failed", error=str(exc))
        raise
    store.finish_run(run_id, status="succeeded", rows=result.matched)
    body.update(matched=result.matched, windows=result.windows)
    return 200, body


# --------------------------------------------------------------------------- POST /data


def _private(schema: Schema, name: str) -> bool:
    """A sensitive column training does not use (id/ignore): never stored. Sensitive features are stored
    as uploaded, like the source rows they join (training needs their values)."""
    spec = schema.columns.get(name)
    return spec is not None and spec.sensitive and spec.role != "feature"


def accept_training_rows(store: HistoryStore, upload: list | pd.DataFrame, *, schema: Schema, classes: tuple,
                  upload_id: str) -> tuple[int, dict]:
    """Validate new labelled rows with the schema's rules and append the good ones; (HTTP status, answer)."""
    target = schema.target.name
    wanted = [*schema.columns, target]
    errors: list[Problem] = []
    if isinstance(upload, pd.DataFrame):
        frame, positions = upload.reset_index(drop=True), list(range(len(upload)))
        n = len(frame)
    else:
        n, kept, positions = len(upload), [], []
        required = [*schema.features, target]
        for i, record in enumerate(upload):
            if not isinstance(record, dict):
                errors.append(not_an_object(i))
                continue
            absent = [name for name in required if name not in record]
            errors += [Problem(name, "missing_column", ABSENT, (i,)) for name in absent]
            if not absent:
                kept.append(record)
                positions.append(i)
        frame = pd.DataFrame(kept, columns=[c for c in wanted if any(c in r for r in kept)] or None)
    warnings: list[Problem] = []
    refused = {_row(e) for e in errors}
    if len(frame):
        _, problems = coerce_frame(frame, schema, with_target=True)
        for p in problems:
            for r in p.rows:      # frame-level target rules (two classes in the data) do not apply to an upload
                (errors if p.hard else warnings).append(replace(p, rows=(positions[r],)))
        check_label = _class_check(classes)
        for r, value in enumerate(frame[target].tolist()):
            if not is_missing(value) and (message := check_label(value)) is not None:
                errors.append(Problem(target, "classes", message, (positions[r],)))
        refused = {_row(e) for e in errors}
    errors.sort(key=_row)
    stored = [c for c in wanted if c in frame.columns and not _private(schema, c)]
    accepted = [(positions[r], record) for r, record in enumerate(frame[stored].to_dict("records"))
                if positions[r] not in refused]
    warnings = [w for w in warnings if _row(w) not in refused]
    body = {"upload_id": upload_id, **_answer(n, errors, warnings), "accepted": len(accepted)}
    if not accepted:
        return 422, {"error": f"none of the {n} rows could be accepted", **body}
    written, last_id = store.add_training_rows(upload_id, accepted)
    if written == 0:
        return 409, {"error": f"upload {upload_id!r} is already stored (store ids up to {last_id}); "
                              "send new rows under a new X-Request-ID", **body, "accepted": 0, "last_row_id": last_id}
    body.update(accepted=written, last_row_id=last_id)
    return 200, body

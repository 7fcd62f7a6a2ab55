"""Uploads: ``POST /outcomes`` (labels for logged predictions) and ``POST /data`` (new labelled training rows).

The access check, reading and per-row rules are in ``serving/uploads.py`` (docs/uploads.md); these routes
check the token before reading the body, need a loaded model (its classes) and write to the history store.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from tabpipe.history.open import protector
from tabpipe.serving import uploads
from tabpipe.serving.predlog_hook import request_id
from tabpipe.serving.state import current_state

blueprint = Blueprint("uploads", __name__)


@blueprint.post("/outcomes")
def post_outcomes():
    """Labels for logged predictions: ``{"records": [{"id": ..., "label": ...}]}`` or a CSV (id, label)."""
    state = current_state()
    uploads.authorize(state.serve, state.environ, request.headers.get("Authorization"))
    current = state.loaded()
    upload = uploads.read_upload(request, state.serve, (uploads.ID_FIELD, uploads.LABEL_FIELD))
    with uploads.store_errors():
        status, body = uploads.accept_outcomes(state.upload_store.get(), upload, schema=state.settings.schema_,
                                               classes=tuple(current.model.labels),
                                               protector=protector(state.settings, state.environ), upload_id=request_id())
    return jsonify(body), status


@blueprint.post("/data")
def post_data():
    """New labelled training rows (the schema's columns and the target), JSON records or a CSV."""
    state = current_state()
    uploads.authorize(state.serve, state.environ, request.headers.get("Authorization"))
    current = state.loaded()
    schema = state.settings.schema_
    upload = uploads.read_upload(request, state.serve, (*schema.features, schema.target.name))
    with uploads.store_errors():
        status, body = uploads.accept_training_rows(state.upload_store.get(), upload, schema=schema,
                                                    classes=tuple(current.model.labels), upload_id=request_id())
    return jsonify(body), status

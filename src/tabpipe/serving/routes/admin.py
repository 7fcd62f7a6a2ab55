"""Operating the service: ``GET /health``, ``GET /openapi.json``, ``GET /model``, ``GET /model/card``,
``GET /dashboard`` and
``POST /train`` (off unless ``serve.allow_train``; then a Bearer token equal to the environment variable
named by ``serve.train_token_env``; one run at a time, in the background, and the new model is served
once the registry promotes it).
"""
from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Mapping

from flask import Blueprint, jsonify, request, send_file

from tabpipe.config import Settings
from tabpipe.serving.holder import ModelHolder
from tabpipe.serving.inputs import ApiError
from tabpipe.serving.openapi import openapi_document
from tabpipe.serving.state import current_state

log = logging.getLogger(__name__)
blueprint = Blueprint("admin", __name__)


@blueprint.get("/health")
def health():
    """The loaded model's version, the last refresh problem (generic message and code) and the log's stats."""
    state = current_state()
    current, problem = state.holder.current, state.holder.public_error  # never paths, bucket or endpoint
    if current is None:
        return jsonify({"status": "no_model", "model_loaded": False, "model_version": None,
                        "error": problem["message"], "error_code": problem["code"]}), 503
    body = {"status": "ok", "model_loaded": True, "model_version": current.version}
    if problem:  # still serving the model it has; the newer one failed to load
        body["refresh_error"], body["refresh_error_code"] = problem["message"], problem["code"]
    if state.prediction_log is not None:
        body["prediction_log"] = state.prediction_log.stats()
    return jsonify(body)


@blueprint.get("/openapi.json")
def openapi():
    """The OpenAPI document for the loaded model's schema (any JSON object as a record without a model)."""
    state = current_state()
    current = state.holder.current
    return jsonify(openapi_document(None if current is None else current.model.schema,
                                    max_records=state.serve.max_records, train_enabled=state.serve.allow_train))


@blueprint.get("/model")
def model_info():
    """The loaded model: version, training run, candidate, metrics, threshold, labels and schema."""
    current = current_state().loaded()
    meta, schema = current.metadata, current.model.schema
    return jsonify({
        "model_version": current.version, "trained_at": meta.get("created_at"), "run_id": meta.get("run_id"),
        "candidate": meta.get("candidate"), "metrics": meta.get("metrics"), "threshold": current.model.threshold,
        "labels": list(current.model.labels),
        "model_card": "/model/card" if "model_card.json" in meta.get("files", {}) else None,
        "schema": {"target": schema.target.name, "positive": schema.target.positive,
                   "features": {n: schema.columns[n].model_dump(exclude_none=True, exclude={"role"}) for n in schema.features}},
    })


@blueprint.get("/model/card")
def model_card():
    """The loaded version's model card: HTML by default, its JSON with ``?format=json``; both verified
    against the version's signature when read (404 for a version published without a card)."""
    from tabpipe.errors import RegistryError

    current = current_state().loaded()
    as_json = request.args.get("format", "html") == "json"
    name = "model_card.json" if as_json else "model_card.html"
    if name not in current.metadata.get("files", {}):
        raise ApiError(404, f"{current.version} has no model card (published before model cards existed)")
    try:
        path = current_state().holder.registry.fetch(current.version, name)
    except RegistryError:
        log.exception("model card of %s refused", current.version)
        raise ApiError(500, f"the model card of {current.version} could not be read or verified; see the server log",
                       code="registry_error") from None
    return send_file(path, mimetype="application/json" if as_json else "text/html", max_age=0)


@blueprint.get("/dashboard")
def dashboard():
    """The newest dashboard: the last monitoring run's HTML report (PNG embedded), else the last training run's."""
    from tabpipe.monitoring.monitor import latest_dashboard

    state = current_state()
    page = latest_dashboard(state.settings, state.environ)
    if page is None:
        raise ApiError(404, "no dashboard yet: run `tabpipe train` or `tabpipe monitor` first")
    return send_file(page, mimetype="text/html", max_age=0)


@blueprint.post("/train")
def train():
    """Start one training run in the background (202); 404 when disabled, 401/503 for the token, 409 when busy."""
    state = current_state()
    serve = state.serve
    if not serve.allow_train:
        raise ApiError(404, "training over HTTP is disabled (serve.allow_train: false)")
    token = state.environ.get(serve.train_token_env)
    if not token:
        raise ApiError(503, f"serve.allow_train is on but {serve.train_token_env} is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token")
    if not state.training.acquire(blocking=False):
        raise ApiError(409, "a training run is already in progress")
    threading.Thread(target=_train_in_background, args=(state.settings, state.training, state.holder, state.environ),
                     daemon=True).start()
    return jsonify({"status": "started"}), 202


def _train_in_background(settings: Settings, lock: threading.Lock, holder: ModelHolder,
                         environ: Mapping[str, str]) -> None:
    from tabpipe.training.pipeline import TrainingPipeline

    try:
        TrainingPipeline(settings, holder.registry, environ=environ).run()
        holder.refresh()
    except Exception:  # recorded in the run folder; the service keeps serving
        log.exception("training run started over HTTP failed")
    finally:
        lock.release()

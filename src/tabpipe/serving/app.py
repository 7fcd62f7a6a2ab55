"""The prediction service: a Flask app factory.

``create_app`` reads the settings and the environment once, builds the app's ``ServiceState``
(``serving/state.py``) and registers the error handlers, the request hooks and the endpoints
(``serving/routes/``: predict, admin, uploads, probes), the Prometheus metrics (``serving/metrics.py``)
and, with ``TABPIPE_LOG_FORMAT=json``, a request id for every request (``serving/logs.py``). Errors are
JSON with the right status: 400 malformed, 403 cross-site browser request, 413 too large, 415 wrong
content type, 422 nothing could be scored (with row/field details), 503 no model. README "Prediction
service" shows the endpoints and answers.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from tabpipe.config import load_settings
from tabpipe.history.open import open_history
from tabpipe.history.open import prediction_log as build_prediction_log
from tabpipe.registry import ModelRegistry, open_registry
from tabpipe.serving.answers import CSV_SUMMARY_HEADERS
from tabpipe.serving.holder import ModelHolder
from tabpipe.serving.inputs import ApiError, cross_site_refusal
from tabpipe.serving.logs import json_logs_wanted, use_json_logs
from tabpipe.serving.metrics import ServiceMetrics
from tabpipe.serving.predlog_hook import add_request_id, assign_request_id
from tabpipe.serving.routes import BLUEPRINTS
from tabpipe.serving.state import EXTENSION, ServiceState, current_state
from tabpipe.serving.uploads import StoreHandle

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"


def create_app(config: str | Path | None = None, registry: ModelRegistry | None = None, *, metrics: bool = True) -> Flask:
    """Build the app for ``config`` (default: $TABPIPE_CONFIG or config/pipeline.yaml).

    ``metrics=False`` leaves out ``/metrics`` and the per-request bookkeeping (benchmarks compare both;
    under gunicorn: ``'tabpipe.serving.app:create_app(metrics=False)'``).

    Keys and the cache folder are read here, once, from the environment (or the configured key
    files): the verify key only, plus the signing key when ``serve.allow_train`` makes this host a
    publisher. With ``registry.require_signature`` on and no key this raises: the service refuses
    to start rather than serve models it cannot verify.
    """
    environ = os.environ   # the one place the service names the environment; routes get it from the state
    settings = load_settings(config or environ.get("TABPIPE_CONFIG", "config/pipeline.yaml"))
    serve = settings.pipeline.serve
    registry = registry or open_registry(settings.pipeline.registry, environ, sign=serve.allow_train,
                                         config_file=settings.config_path)
    service_metrics = ServiceMetrics(environ) if metrics else None
    holder = ModelHolder(registry, serve.poll_interval_s,
                         on_load=service_metrics and service_metrics.model_loaded,
                         on_failure=service_metrics and service_metrics.refresh_failed)
    app = Flask(__name__, template_folder=str(TEMPLATES))
    if service_metrics is not None:
        service_metrics.install(app)   # first: its after_request hook runs last, on the final response
    if json_logs_wanted(environ):
        use_json_logs()
        app.before_request(assign_request_id)
    prediction_log = build_prediction_log(settings, environ)   # None when monitoring.log_predictions is off
    app.config["MAX_CONTENT_LENGTH"] = int(serve.max_body_mb * 1024 * 1024)
    app.extensions[EXTENSION] = ServiceState(
        settings=settings, holder=holder, environ=environ, allowed_origins=frozenset(serve.allowed_origins),
        prediction_log=prediction_log, upload_store=StoreHandle(lambda: open_history(settings, environ)),
        metrics=service_metrics,
    )
    if service_metrics is not None:   # its thread shares this worker's counts with the others' scrapes
        service_metrics.start(prediction_log)
    app.after_request(add_request_id)
    app.errorhandler(ApiError)(_api_error)
    app.before_request(_same_site_only)
    app.after_request(_allowed_cross_origin)
    app.errorhandler(HTTPException)(_http_error)
    app.errorhandler(Exception)(_unexpected)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


def _api_error(exc: ApiError):
    body = {"error": exc.error}
    if exc.code is not None:
        body["error_code"] = exc.code
    if exc.details is not None:
        body["details"] = exc.details
    return jsonify({**body, **exc.extra}), exc.status


def _same_site_only():
    """before_request: a POST from another site's page is refused (403) unless its origin is allowed."""
    headers = request.headers
    if request.method == "POST" and ("Origin" in headers or "Sec-Fetch-Site" in headers):   # else: not a browser's
        refusal = cross_site_refusal(headers, request.host_url.rstrip("/"), current_state().allowed_origins)
        if refusal:
            raise ApiError(403, refusal)


def _allowed_cross_origin(response: Response):
    """after_request: the CORS headers for an allowed origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in current_state().allowed_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Expose-Headers"] = ", ".join(CSV_SUMMARY_HEADERS)
        response.vary.add("Origin")
    return response


def _http_error(exc: HTTPException):
    return jsonify({"error": exc.description or exc.name}), exc.code


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return jsonify({"error": "internal error"}), 500

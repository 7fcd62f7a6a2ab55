"""The prediction service: a Flask app factory.

Endpoints: ``GET /`` (HTML form from the model's schema), ``POST /predict`` (JSON), ``POST /predict/csv``
(multipart CSV), ``GET /health``, ``GET /model``, and ``POST /train`` only when enabled in config
and called with the token from the environment. Errors are JSON with the right status: 400 malformed,
415 wrong content type, 413 too large, 422 schema violations (with row/field details), 503 no model.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tabpipe.batch import read_csv_bytes, score_frame, to_csv_bytes
from tabpipe.config import load_settings
from tabpipe.registry import ModelRegistry, open_registry
from tabpipe.serving.holder import ModelHolder

log = logging.getLogger(__name__)
MAX_DETAILS = 1000


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: list | None = None, code: str | None = None):
        self.status, self.error, self.details, self.code = status, error, details, code


def _records_from_json(body: bytes, max_records: int) -> list[dict]:
    try:
        payload = json.loads(body)  # NaN/Infinity literals parse to floats, then fail the field check (422)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {str(exc)[:200]}") from None
    if isinstance(payload, dict) and set(payload) == {"records"}:
        records = payload["records"]
        if not isinstance(records, list):
            raise ApiError(400, "'records' must be a list of objects")
    elif isinstance(payload, dict):
        records = [payload]
    else:
        raise ApiError(400, "expected one record (a JSON object) or {\"records\": [...]}")
    if not records:
        raise ApiError(400, "'records' is empty")
    if len(records) > max_records:
        raise ApiError(413, f"{len(records)} records in one request; the limit is serve.max_records={max_records}")
    bad = [{"row": i, "field": None, "message": "is not a JSON object"} for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise ApiError(422, "records must be JSON objects", bad[:MAX_DETAILS])
    return records


def create_app(config: str | Path | None = None, registry: ModelRegistry | None = None) -> Flask:
    """Build the app for ``config`` (default: $TABPIPE_CONFIG or config/pipeline.yaml).

    Keys and the cache folder are read here, once, from the environment (or the configured key
    files): the verify key only, plus the signing key when ``serve.allow_train`` makes this host a
    publisher. With ``registry.require_signature`` on and no key this raises: the service refuses
    to start rather than serve models it cannot verify.
    """
    settings = load_settings(config or os.environ.get("TABPIPE_CONFIG", "config/pipeline.yaml"))
    serve = settings.pipeline.serve
    registry = registry or open_registry(settings.pipeline.registry, os.environ, sign=serve.allow_train,
                                         config_file=settings.config_path)
    holder = ModelHolder(registry, serve.poll_interval_s)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(serve.max_body_mb * 1024 * 1024)
    app.extensions["tabpipe"] = {"holder": holder, "settings": settings}
    training = threading.Lock()

    def loaded():
        current = holder.current
        if current is None:  # generic message and stable code; the detail is in the server log only
            problem = holder.public_error
            raise ApiError(503, f"no production model is loaded: {problem['message']}", code=problem["code"])
        return current

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        body = {"error": exc.error}
        if exc.code is not None:
            body["error_code"] = exc.code
        if exc.details is not None:
            body["details"] = exc.details
        return jsonify(body), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify({"error": exc.description or exc.name}), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"error": "internal error"}), 500

    @app.get("/health")
    def health():
        current, problem = holder.current, holder.public_error  # never paths, bucket or endpoint
        if current is None:
            return jsonify({"status": "no_model", "model_loaded": False, "model_version": None,
                            "error": problem["message"], "error_code": problem["code"]}), 503
        body = {"status": "ok", "model_loaded": True, "model_version": current.version}
        if problem:  # still serving the model it has; the newer one failed to load
            body["refresh_error"], body["refresh_error_code"] = problem["message"], problem["code"]
        return jsonify(body)

    @app.get("/model")
    def model_info():
        current = loaded()
        meta, schema = current.metadata, current.model.schema
        return jsonify({
            "model_version": current.version, "trained_at": meta.get("created_at"), "run_id": meta.get("run_id"),
            "candidate": meta.get("candidate"), "metrics": meta.get("metrics"), "threshold": current.model.threshold,
            "labels": list(current.model.labels),
            "schema": {"target": schema.target.name, "positive": schema.target.positive,
                       "features": {n: schema.columns[n].model_dump(exclude_none=True, exclude={"role"}) for n in schema.features}},
        })

    @app.post("/predict")
    def predict():
        if not request.is_json:
            raise ApiError(415, "send Content-Type: application/json")
        current = loaded()
        records = _records_from_json(request.get_data(), serve.max_records)
        checked, problems = [], []
        for i, record in enumerate(records):
            values, issues = current.scorer.check(record, i)
            checked.append(values)
            problems += issues
        if problems:
            raise ApiError(422, f"{len(problems)} schema violation(s)", problems[:MAX_DETAILS])
        proba = current.scorer.proba(checked)
        labels = current.model.labels_for(proba)
        return jsonify({"model_version": current.version, "predictions": [
            {"prediction": _native(label), "probability": float(p)} for label, p in zip(labels, proba)]})

    @app.post("/predict/csv")
    def predict_csv():
        if request.mimetype != "multipart/form-data":
            raise ApiError(415, "upload the CSV as multipart/form-data in a field named 'file'")
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "no file field named 'file' in the upload")
        current = loaded()
        try:
            frame = read_csv_bytes(upload.read())
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
            raise ApiError(400, f"could not read the CSV: {exc}") from None
        scored, problems = score_frame(current.model, frame)
        if problems:
            details = [{"row": r, "field": p.column, "message": p.message} for p in problems for r in (p.rows or [None])]
            raise ApiError(422, f"{len(details)} schema violation(s)", details[:MAX_DETAILS])
        return Response(to_csv_bytes(scored), mimetype="text/csv",
                        headers={"X-Model-Version": current.version})

    @app.route("/", methods=["GET", "POST"])
    def form():
        current = holder.current
        result, errors, values, status = None, {}, {}, 200
        if current is not None and request.method == "POST":
            values = {k: v for k, v in request.form.items()}
            checked, problems = current.scorer.check(values)
            if problems:
                errors, status = {p["field"]: p["message"] for p in problems}, 422
            else:
                p = float(current.scorer.proba([checked])[0])
                result = {"prediction": _native(current.model.labels_for(np.array([p]))[0]), "probability": p}
        fields = [] if current is None else [(n, current.model.schema.columns[n]) for n in current.model.schema.features]
        return render_template("form.html", current=current, fields=fields, result=result, errors=errors,
                               values=values), status

    @app.post("/train")
    def train():
        if not serve.allow_train:
            raise ApiError(404, "training over HTTP is disabled (serve.allow_train: false)")
        token = os.environ.get(serve.train_token_env)
        if not token:
            raise ApiError(503, f"serve.allow_train is on but {serve.train_token_env} is not set")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token")
        if not training.acquire(blocking=False):
            raise ApiError(409, "a training run is already in progress")
        threading.Thread(target=_train_in_background, args=(settings, training, holder), daemon=True).start()
        return jsonify({"status": "started"}), 202

    return app


def _train_in_background(settings, lock: threading.Lock, holder: ModelHolder) -> None:
    from tabpipe.pipeline import TrainingPipeline

    try:
        TrainingPipeline(settings, holder.registry).run()
        holder.refresh()
    except Exception:  # recorded in the run folder; the service keeps serving
        log.exception("training run started over HTTP failed")
    finally:
        lock.release()


def _native(value):
    return value.item() if hasattr(value, "item") else value

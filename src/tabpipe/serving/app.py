"""The prediction service: a Flask app factory.

Endpoints: ``GET /`` (HTML form from the model's schema), ``POST /predict`` (JSON), ``POST /predict/csv``
(multipart CSV), ``GET /health``, ``GET /model``, and ``POST /train`` only when enabled in config
and called with the token from the environment; likewise ``POST /outcomes`` and ``POST /data``
(``serve.allow_uploads``, ``serving/uploads.py``, docs/uploads.md). Errors are JSON with the right status: 400 malformed,
403 cross-site browser request, 413 too large, 415 wrong content type, 422 nothing could be scored
(with row/field details), 503 no model.

Batches (``{"records": [...]}`` and CSV uploads) score every row that can be scored and answer, in
input order, a prediction or the row's errors, with warnings (broken expectations) alongside; see
``_batch_answer`` and README "Prediction service" for the shapes.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from flask import Flask, Response, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from tabpipe.scoring.batch import MissingColumns, TooManyRows, read_csv_bytes, score_frame, to_csv_bytes
from tabpipe.config import load_settings
from tabpipe.history.open import open_history, protector
from tabpipe.history.open import prediction_log as build_prediction_log
from tabpipe.registry import ModelRegistry, open_registry
from tabpipe.schema import ABSENT, Problem, warning_counts
from tabpipe.serving.holder import ModelHolder
from tabpipe.serving.inputs import ApiError, Details, cross_site_refusal, records_from_json
from tabpipe.serving import uploads
from tabpipe.serving.openapi import openapi_document
from tabpipe.serving.predlog_hook import add_request_id, log_request, request_id

log = logging.getLogger(__name__)
MAX_DETAILS = 1000      # row-level detail objects per answer beyond the first error of each failed row
NOT_AN_OBJECT = {"field": None, "rule": "type", "message": "is not a JSON object"}


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
    prediction_log = build_prediction_log(settings, os.environ)  # None when monitoring.log_predictions is off
    app.extensions["tabpipe"] = {"holder": holder, "settings": settings, "prediction_log": prediction_log}
    app.after_request(add_request_id)
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
        return jsonify({**body, **exc.extra}), exc.status

    allowed_origins = set(serve.allowed_origins)

    @app.before_request
    def same_site_only():
        if request.method == "POST":
            refusal = cross_site_refusal(request.headers, request.host_url.rstrip("/"), allowed_origins)
            if refusal:
                raise ApiError(403, refusal)

    @app.after_request
    def allowed_cross_origin(response: Response):
        origin = request.headers.get("Origin")
        if origin is not None and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Expose-Headers"] = ", ".join(CSV_SUMMARY_HEADERS)
            response.vary.add("Origin")
        return response

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
        if prediction_log is not None:
            body["prediction_log"] = prediction_log.stats()
        return jsonify(body)

    @app.get("/openapi.json")
    def openapi():
        current = holder.current
        return jsonify(openapi_document(None if current is None else current.model.schema,
                                        max_records=serve.max_records, train_enabled=serve.allow_train))

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
        records, is_batch = records_from_json(request.get_data(), serve.max_records)
        rows = []                      # per record: (checked values or None, errors, warnings)
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                rows.append((None, [{"row": i, **NOT_AN_OBJECT}], []))
                continue
            values, problems = current.scorer.check(record, i)
            errors = [_detail(p) for p in problems if p["hard"]]
            rows.append((None if errors else values, errors, [_detail(p) for p in problems if not p["hard"]]))
        scorable = [i for i, (values, _, _) in enumerate(rows) if values is not None]
        if not scorable:
            details = Details(MAX_DETAILS)
            errors = [d for _, errs, _ in rows for d in details.take(errs, first_free=True)]
            what = f"{len(rows[0][1])} schema violation(s)" if not is_batch else \
                f"none of the {len(rows)} records could be scored"
            raise ApiError(422, what, errors, {"summary": _summary(rows, details)} if is_batch else None)
        proba = current.scorer.proba([rows[i][0] for i in scorable])
        labels = current.model.labels_for(proba)
        scored = {i: (_native(label), float(p)) for i, label, p in zip(scorable, labels, proba)}
        if prediction_log is not None:   # every record keeps its input index (the row id outcomes join on)
            log_request(prediction_log, current.version, [r if isinstance(r, dict) else {} for r in records],
                        [scored[i][1] if i in scored else float("nan") for i in range(len(rows))],
                        [scored[i][0] if i in scored else None for i in range(len(rows))],
                        [[f"{d['field']} ({d['rule']}): {d['message']}" for d in warns] for _, _, warns in rows])
        return jsonify({"model_version": current.version, **_batch_answer(rows, scored)})

    @app.post("/predict/csv")
    def predict_csv():
        if request.mimetype != "multipart/form-data":
            raise ApiError(415, "upload the CSV as multipart/form-data in a field named 'file'")
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "no file field named 'file' in the upload")
        current = loaded()
        features = current.model.schema.features
        try:
            frame = read_csv_bytes(upload.read(), max_rows=serve.max_csv_rows, required=features,
                                   max_columns=max(1000, 4 * len(current.model.schema.columns)))
        except MissingColumns as exc:
            raise ApiError(422, str(exc), [{"row": None, "field": name, "rule": "missing_column", "message": ABSENT}
                                           for name in exc.columns]) from None
        except TooManyRows as exc:
            raise ApiError(413, f"the CSV has {exc.rows} rows; the limit is serve.max_csv_rows={exc.limit} "
                                "(split the file, or score it with `tabpipe predict`)") from None
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
            raise ApiError(400, f"could not read the CSV: {str(exc)[:300]}") from None
        if frame.empty:
            raise ApiError(400, "the CSV has a header but no rows")
        scored, problems = score_frame(current.model, frame)
        n_scored = int(scored["probability"].notna().sum())
        counts = _csv_counts(problems, len(frame), n_scored)
        if n_scored == 0:
            details = Details(MAX_DETAILS)
            raise ApiError(422, f"none of the {len(frame)} rows could be scored",
                           _problem_details([p for p in problems if p.hard], details),
                           {"summary": {**counts, "details_truncated": details.truncated}})
        headers = {"X-Model-Version": current.version, "X-Rows": str(counts["rows"]), "X-Scored": str(n_scored),
                   "X-Failed": str(counts["failed"]), "X-Rows-With-Warnings": str(counts["rows_with_warnings"]),
                   "X-Warning-Counts": ";".join(f"{c}:{r}={n}" for c, rules in counts["warnings"].items()
                                                for r, n in rules.items())}
        log_request(prediction_log, current.version, frame, scored["probability"].to_numpy(),
                    scored["prediction"].to_numpy(),
                    [[w] if isinstance(w, str) and w else [] for w in scored["warnings"]])
        return Response(to_csv_bytes(scored), mimetype="text/csv", headers=headers)

    @app.route("/", methods=["GET", "POST"])
    def form():
        current = holder.current
        result, errors, warnings, values, status = None, {}, {}, {}, 200
        if current is not None and request.method == "POST":
            values = {k: v for k, v in request.form.items()}
            checked, problems = current.scorer.check(values)
            errors = {p["field"]: p["message"] for p in problems if p["hard"]}
            warnings = {p["field"]: p["message"] for p in problems if not p["hard"]}
            if errors:
                status = 422
            else:
                p = float(current.scorer.proba([checked])[0])
                result = {"prediction": _native(current.model.labels_for(np.array([p]))[0]), "probability": p}
        fields = [] if current is None else [(n, current.model.schema.columns[n]) for n in current.model.schema.features]
        return render_template("form.html", current=current, fields=fields, result=result, errors=errors,
                               warnings=warnings, values=values), status

    @app.get("/dashboard")
    def dashboard():
        """The newest dashboard: the last monitoring run's HTML report (PNG embedded), else the last training run's."""
        from tabpipe.monitoring.monitor import latest_dashboard

        page = latest_dashboard(settings, os.environ)
        if page is None:
            raise ApiError(404, "no dashboard yet: run `tabpipe train` or `tabpipe monitor` first")
        return send_file(page, mimetype="text/html", max_age=0)

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

    upload_store = uploads.StoreHandle(lambda: open_history(settings, os.environ))

    @app.post("/outcomes")
    def post_outcomes():
        """Labels for logged predictions: ``{"records": [{"id": ..., "label": ...}]}`` or a CSV (id, label)."""
        uploads.authorize(serve, os.environ, request.headers.get("Authorization"))
        current = loaded()
        upload = uploads.read_upload(request, serve, (uploads.ID_FIELD, uploads.LABEL_FIELD))
        with uploads.store_errors():
            status, body = uploads.outcomes(upload_store.get(), upload, schema=settings.schema_,
                                            classes=tuple(current.model.labels),
                                            protector=protector(settings, os.environ), upload_id=request_id())
        return jsonify(body), status

    @app.post("/data")
    def post_data():
        """New labelled training rows (the schema's columns and the target), JSON records or a CSV."""
        uploads.authorize(serve, os.environ, request.headers.get("Authorization"))
        current = loaded()
        schema = settings.schema_
        upload = uploads.read_upload(request, serve, (*schema.features, schema.target.name))
        with uploads.store_errors():
            status, body = uploads.training_rows(upload_store.get(), upload, schema=schema,
                                                 classes=tuple(current.model.labels), upload_id=request_id())
        return jsonify(body), status

    return app


def _train_in_background(settings, lock: threading.Lock, holder: ModelHolder) -> None:
    from tabpipe.training.pipeline import TrainingPipeline

    try:
        TrainingPipeline(settings, holder.registry).run()
        holder.refresh()
    except Exception:  # recorded in the run folder; the service keeps serving
        log.exception("training run started over HTTP failed")
    finally:
        lock.release()


def _native(value):
    return value.item() if hasattr(value, "item") else value


CSV_SUMMARY_HEADERS = ("X-Model-Version", "X-Rows", "X-Scored", "X-Failed", "X-Rows-With-Warnings", "X-Warning-Counts")


def _detail(problem: dict) -> dict:
    return {k: problem[k] for k in ("row", "field", "rule", "message")}


def _count(details: list[dict], counts: dict[str, dict[str, int]]) -> None:
    for d in details:
        per_rule = counts.setdefault(str(d["field"]), {})
        per_rule[d["rule"]] = per_rule.get(d["rule"], 0) + 1


def _summary(rows: list[tuple], details: Details) -> dict:
    """Exact counts of a JSON batch: rows, scored, failed, rows with warnings, per field and rule."""
    errors: dict[str, dict[str, int]] = {}
    warnings: dict[str, dict[str, int]] = {}
    for _, errs, warns in rows:
        _count(errs, errors)
        _count(warns, warnings)
    failed = sum(1 for _, errs, _ in rows if errs)
    return {"rows": len(rows), "scored": len(rows) - failed, "failed": failed,
            "rows_with_warnings": sum(1 for _, _, warns in rows if warns), "warnings": warnings, "errors": errors,
            "details_truncated": details.truncated}


def _batch_answer(rows: list[tuple], scored: dict[int, tuple]) -> dict:
    """``predictions``: one entry per record, in order — ``{row, prediction, probability[, warnings]}``
    or ``{row, prediction: null, probability: null, errors[, warnings]}`` — and the exact ``summary``.
    Detail lists are bounded: each failed row keeps its first error, then MAX_DETAILS more in all."""
    details = Details(MAX_DETAILS)
    predictions = []
    for i, (_, errs, warns) in enumerate(rows):
        prediction, probability = scored.get(i, (None, None))
        entry: dict = {"row": i, "prediction": prediction, "probability": probability}
        if errs:
            entry["errors"] = [{k: d[k] for k in ("field", "rule", "message")} for d in details.take(errs, first_free=True)]
        if warns:
            kept = details.take(warns)
            if kept:
                entry["warnings"] = [{k: d[k] for k in ("field", "rule", "message")} for d in kept]
        predictions.append(entry)
    return {"predictions": predictions, "summary": _summary(rows, details)}


def _csv_counts(problems: list[Problem], rows: int, scored: int) -> dict:
    hard = {r for p in problems if p.hard for r in p.rows}
    warned = {r for p in problems if not p.hard for r in p.rows}
    errors: dict[str, dict[str, int]] = {}
    for p in problems:
        if p.hard:
            errors.setdefault(p.column, {})[p.rule] = errors.get(p.column, {}).get(p.rule, 0) + p.count
    return {"rows": rows, "scored": scored, "failed": len(hard), "rows_with_warnings": len(warned),
            "warnings": warning_counts(problems), "errors": errors}


def _problem_details(problems: list[Problem], details: Details) -> list[dict]:
    """At most ``details.budget`` row-level details ``{row, field, rule, message}``, ordered by row."""
    items: list[dict] = []
    for p in problems:
        for row in p.rows[:details.budget + 1]:   # one more than fits: take() then knows it truncated
            items.append({"row": row, "field": p.column, "rule": p.rule, "message": p.message})
    items.sort(key=lambda d: d["row"])
    return details.take(items)

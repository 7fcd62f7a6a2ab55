"""Scoring: ``POST /predict`` (one JSON record or ``{"records": [...]}``), ``POST /predict/csv`` (a CSV in the
multipart field ``file``, answered as CSV with the counts in ``X-*`` headers) and the HTML form at ``/``.

Batches score every row that can be scored and answer, in input order, a prediction or the row's errors
(``serving/answers.py``); 422 when nothing could be scored. Scored rows go to the prediction log when it is on,
and every row is counted in the metrics (scored, failed, warnings, probabilities; ``serving/metrics.py``).
``explain`` k (in the JSON body or the query) adds each scored row's k largest reasons (``scoring/explain``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from flask import Blueprint, Response, jsonify, render_template, request

from tabpipe.schema import ABSENT, Problem
from tabpipe.scoring.batch import MissingColumns, TooManyRows, read_csv_table, score_rows, scored_table, to_csv_bytes
from tabpipe.serving.answers import (
    MAX_DETAILS, batch_answer, batch_summary, csv_counts, details_of, not_an_object, problem_details,
)
from tabpipe.serving.inputs import ApiError, Details, explain_count, records_from_json
from tabpipe.serving.predlog_hook import log_request
from tabpipe.serving.state import current_state

blueprint = Blueprint("predict", __name__)


@blueprint.post("/predict")
def predict():
    """Score JSON records: one answer for one record, ``{predictions, summary}`` for a batch."""
    if not request.is_json:
        raise ApiError(415, "send Content-Type: application/json")
    state = current_state()
    current = state.loaded()
    options = frozenset({"explain"} - set(current.model.schema.features))   # a feature named so stays a feature
    records, is_batch, asked = records_from_json(request.get_data(), state.serve.max_records, options)
    explain = explain_count(asked.get("explain", request.args.get("explain")), "explain")
    explainer = _explainer(current.model) if explain else None
    rows = []                      # per record: (checked values or None, error Problems, warning Problems)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            rows.append((None, [not_an_object(i)], []))
            continue
        values, problems = current.scorer.check(record, i)
        errors = [p for p in problems if p.hard]
        rows.append((None if errors else values, errors, [p for p in problems if not p.hard]))
    scorable = [i for i, (values, _, _) in enumerate(rows) if values is not None]
    metrics = state.metrics
    if not scorable:
        if metrics is not None:
            metrics.rows(0, len(rows), (p for _, _, warns in rows for p in warns))
        details = Details(MAX_DETAILS)
        errors = details_of(p for _, errs, _ in rows for p in details.take(errs, first_free=True))
        what = f"{len(rows[0][1])} schema violation(s)" if not is_batch else \
            f"none of the {len(rows)} records could be scored"
        raise ApiError(422, what, errors, {"summary": batch_summary(rows, details)} if is_batch else None)
    score = current.scorer.scores([rows[i][0] for i in scorable])
    proba = current.model.calibrate(score)
    labels = current.model.labels_for(proba)
    if metrics is not None:
        metrics.rows(len(scorable), len(rows) - len(scorable), (p for _, _, warns in rows for p in warns), proba)
    scored = {i: (label, float(p), float(s))                                    # tolist: Python values
              for i, label, p, s in zip(scorable, labels.tolist(), proba, score)}
    reasons = None
    if explainer is not None:
        entries = explainer.explain(current.scorer.matrix([rows[i][0] for i in scorable])).entries(
            explain, [records[i] for i in scorable])
        reasons = dict(zip(scorable, entries))
    if state.prediction_log is not None:   # every record keeps its input index (the row id outcomes join on)
        log_request(state.prediction_log, current.version, [r if isinstance(r, dict) else {} for r in records],
                    [scored[i][1] if i in scored else float("nan") for i in range(len(rows))],
                    [scored[i][0] if i in scored else None for i in range(len(rows))],
                    [[p.text for p in warns] for _, _, warns in rows])
    return jsonify({"model_version": current.version, **batch_answer(rows, scored, reasons)})


def _explainer(model):
    """The model's explainer; ApiError 400 when its estimator is not one explained."""
    from tabpipe.scoring.explain import NotExplainable, explainer_for

    try:
        return explainer_for(model)
    except NotExplainable as exc:
        raise ApiError(400, f"explain is not available for this model: {exc}") from None


@blueprint.post("/predict/csv")
def predict_csv():
    """Score an uploaded CSV: the scored CSV back, with the counts in ``X-*`` headers."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "upload the CSV as multipart/form-data in a field named 'file'")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "no file field named 'file' in the upload")
    state = current_state()
    current = state.loaded()
    features = current.model.schema.features
    explain = explain_count(request.args.get("explain"), "the query parameter explain")
    if explain:
        _explainer(current.model)
    try:
        table = read_csv_table(upload.read(), max_rows=state.serve.max_csv_rows, required=features,
                               max_columns=max(1000, 4 * len(current.model.schema.columns)))
    except MissingColumns as exc:
        raise ApiError(422, str(exc), details_of(Problem(name, "missing_column", ABSENT) for name in exc.columns)) from None
    except TooManyRows as exc:
        raise ApiError(413, f"the CSV has {exc.rows} rows; the limit is serve.max_csv_rows={exc.limit} "
                            "(split the file, or score it with `tabpipe predict`)") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise ApiError(400, f"could not read the CSV: {str(exc)[:300]}") from None
    if table.num_rows == 0:
        raise ApiError(400, "the CSV has a header but no rows")
    frame = table.to_pandas()
    scored = score_rows(current.model, frame, explain)
    problems, n_scored = scored.problems, scored.scored
    counts = csv_counts(problems, len(frame), n_scored)
    if state.metrics is not None:
        state.metrics.rows(n_scored, counts["failed"], probabilities=scored.proba)
        for column, rules in counts["warnings"].items():
            for rule, n in rules.items():
                state.metrics.warning_counts(column, rule, n)
    if n_scored == 0:
        details = Details(MAX_DETAILS)
        raise ApiError(422, f"none of the {len(frame)} rows could be scored",
                       problem_details([p for p in problems if p.hard], details),
                       {"summary": {**counts, "details_truncated": details.truncated}})
    headers = {"X-Model-Version": current.version, "X-Rows": str(counts["rows"]), "X-Scored": str(n_scored),
               "X-Failed": str(counts["failed"]), "X-Rows-With-Warnings": str(counts["rows_with_warnings"]),
               "X-Warning-Counts": ";".join(f"{c}:{r}={n}" for c, rules in counts["warnings"].items()
                                            for r, n in rules.items())}
    log_request(state.prediction_log, current.version, frame, scored.proba, scored.labels,
                [[w] if w else [] for w in scored.warnings])
    return Response(to_csv_bytes(scored_table(table, scored)), mimetype="text/csv", headers=headers)


@blueprint.route("/", methods=["GET", "POST"])
def form():
    """The HTML form built from the model's schema; a POST scores the one record it holds (422 on errors)."""
    state = current_state()
    current = state.holder.current
    result, errors, warnings, values, status = None, {}, {}, {}, 200
    if current is not None and request.method == "POST":
        values = {k: v for k, v in request.form.items()}
        checked, problems = current.scorer.check(values)
        errors = {p.column: p.message for p in problems if p.hard}
        warnings = {p.column: p.message for p in problems if not p.hard}
        if errors:
            status = 422
            if state.metrics is not None:
                state.metrics.rows(0, 1, [p for p in problems if not p.hard])
        else:
            p = float(current.scorer.proba([checked])[0])
            if state.metrics is not None:
                state.metrics.rows(1, 0, [w for w in problems if not w.hard], [p])
            result = {"prediction": current.model.labels_for(np.array([p])).tolist()[0], "probability": p}
    fields = [] if current is None else [(n, current.model.schema.columns[n]) for n in current.model.schema.features]
    return render_template("form.html", current=current, fields=fields, result=result, errors=errors,
                           warnings=warnings, values=values), status

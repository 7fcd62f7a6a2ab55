"""The service's OpenAPI 3.0 document (served at ``GET /openapi.json``), built from the loaded model's schema.

A record's properties follow the schema's features: the type a value must be readable as (hard), and the
rules a user made hard (``hard: [range|category|null]``) as ``minimum``/``maximum``/``enum``/non-null.
Expectations (inferred ranges, category lists, nullability) are described, not enforced: the service scores
such rows and returns warnings. Without a loaded model, a record is any JSON object.
"""
from __future__ import annotations

from typing import Any

from tabpipe.schema import ColumnSpec, Schema

LABEL = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True}
PROBLEM = {"type": "object", "required": ["field", "rule", "message"],
           "properties": {"field": {"type": "string", "nullable": True}, "rule": {"type": "string"},
                          "message": {"type": "string"}}}
ROW_PROBLEM = {"type": "object", "required": ["message"],
               "properties": {"row": {"type": "integer", "nullable": True}, "field": {"type": "string", "nullable": True},
                              "rule": {"type": "string"}, "message": {"type": "string"}}}
COUNTS = {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}
SUMMARY = {"type": "object", "required": ["rows", "scored", "failed"],
           "properties": {"rows": {"type": "integer"}, "scored": {"type": "integer"}, "failed": {"type": "integer"},
                          "rows_with_warnings": {"type": "integer"}, "warnings": COUNTS, "errors": COUNTS,
                          "details_truncated": {"type": "boolean"}}}
ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string"}, "details": {"type": "array", "items": ROW_PROBLEM},
                        "summary": SUMMARY}}
REASONS = {"type": "object", "required": ["of", "base", "logit", "contributions", "rest"],
           "description": "the row's top k reasons, in log-odds of the raw score (before calibration): "
                          "base + the contributions of all columns = logit; rest sums the columns not listed",
           "properties": {"of": {"type": "string", "enum": ["raw score logit"]}, "base": {"type": "number"},
                          "logit": {"type": "number"}, "rest": {"type": "number"},
                          "contributions": {"type": "array", "items": {
                              "type": "object", "required": ["column", "contribution"],
                              "properties": {"column": {"type": "string"}, "value": {"nullable": True},
                                             "contribution": {"type": "number"}}}}}}
EXPLAIN = {"name": "explain", "in": "query", "required": False,
           "description": "add each scored row's k largest reasons (0: none)",
           "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}
ANSWER = {"type": "object", "required": ["model_version", "predictions", "summary"], "properties": {
    "model_version": {"type": "string"}, "summary": SUMMARY,
    "predictions": {"type": "array", "items": {
        "type": "object", "required": ["row", "prediction", "probability", "score"],
        "properties": {"row": {"type": "integer"}, "prediction": LABEL,
                       "probability": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
                       "score": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
                       "reasons": REASONS, "errors": {"type": "array", "items": PROBLEM},
                       "warnings": {"type": "array", "items": PROBLEM}}}}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "malformed request", 401: "missing or wrong bearer token", 403: "cross-site browser request refused",
            404: "endpoint disabled", 409: "already running", 413: "too large", 415: "wrong content type",
            422: "nothing could be scored (row/field details)", 503: "no model loaded"}
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, text[c]) for c in codes}


def _property(spec: ColumnSpec) -> dict:
    prop: dict[str, Any]
    if spec.type == "int":
        prop = {"type": "integer"}
    elif spec.type == "float":
        prop = {"type": "number"}
    elif spec.type == "bool":
        prop = {"type": "boolean"}
    elif spec.type == "datetime":
        prop = {"type": "string", "format": "date-time"}
    else:
        prop = {"type": "string"}
    hard = set(spec.hard) | ({"category"} if not spec.allow_unknown else set())
    if "range" in hard and spec.type in ("int", "float"):
        if spec.min is not None:
            prop["minimum"] = spec.min
        if spec.max is not None:
            prop["maximum"] = spec.max
    if "category" in hard and spec.categories:
        prop["enum"] = list(spec.categories)
    if not ("null" in hard and not spec.nullable):
        prop["nullable"] = True
    expected = []
    if spec.min is not None or spec.max is not None:
        expected.append(f"range [{spec.min}, {spec.max}]")
    if spec.categories:
        expected.append(f"categories {spec.categories}")
    if not spec.nullable:
        expected.append("never missing")
    note = f"expected (warns when broken): {'; '.join(expected)}" if expected else ""
    prop["description"] = " ".join(x for x in (spec.description or "", note) if x)
    return prop


def record_schema(schema: Schema | None) -> dict:
    """The OpenAPI schema of one record: a property per feature, required where null is a hard error."""
    if schema is None:
        return {"type": "object"}
    required = [n for n in schema.features if "null" in schema.columns[n].hard and not schema.columns[n].nullable]
    out = {"type": "object", "properties": {n: _property(schema.columns[n]) for n in schema.features}}
    if required:
        out["required"] = required
    return out


def openapi_document(schema: Schema | None, *, max_records: int, train_enabled: bool) -> dict:
    """The OpenAPI 3.0.3 document of the service for ``schema`` (the loaded model's), or a generic one."""
    paths: dict[str, Any] = {
        "/health": {"get": {"summary": "liveness and the loaded model", "responses": {
            "200": _json({"type": "object", "required": ["status"]}, "a model is loaded"),
            "503": _json({"type": "object", "required": ["status"]}, "no model loaded")}}},
        "/model": {"get": {"summary": "the loaded model: version, metrics, schema", "responses": {
            "200": _json({"type": "object", "required": ["model_version"]}, "the model"), **_errors(503)}}},
        "/openapi.json": {"get": {"summary": "this document", "responses": {
            "200": _json({"type": "object"}, "OpenAPI document")}}},
        "/predict": {"post": {
            "summary": "score one record or a batch (per-row results, in order); 'explain': k (in the body or the "
                       "query) adds each row's k largest reasons",
            "parameters": [EXPLAIN],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Record"},
                {"type": "object", "required": ["records"], "additionalProperties": False, "properties": {
                    "records": {"type": "array", "minItems": 1, "maxItems": max_records,
                                "items": {"$ref": "#/components/schemas/Record"}},
                    "explain": EXPLAIN["schema"]}}]}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Answer"}, "per-row predictions"),
                          **_errors(400, 403, 413, 415, 422, 503)}}},
        "/predict/csv": {"post": {
            "summary": "score a CSV upload (multipart field 'file'); answer: the rows + prediction, probability, score, "
                       "warnings, error columns (with ?explain=k: reason_base, reason_logit and reason_i_column, "
                       "reason_i_contribution for i = 1..k)",
            "parameters": [EXPLAIN],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}},
            "responses": {"200": {"description": "scored CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                          **_errors(400, 403, 413, 415, 422, 503)}}},
        "/": {"get": {"summary": "HTML form generated from the schema", "responses": {
            "200": {"description": "form", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    if train_enabled:
        paths["/train"] = {"post": {"summary": "start a training run (Bearer token)", "security": [{"bearer": []}],
                                    "responses": {"202": _json({"type": "object"}, "started"),
                                                  **_errors(401, 403, 409, 503)}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "tabpipe prediction service", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Record": record_schema(schema), "Answer": ANSWER, "Error": ERROR},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }

"""The prediction service through Flask's test client: every endpoint, every error class, the fast
scorer against the model's own predict_proba, hot model swap, /train, and fuzzing (never a 5xx)."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service_helpers import (
    BOOL_COLUMN, REPO_SCHEMA, TABPIPE_BIN, Project, build_project, copy_project, registry_of, sample_records, wait_until,
    write_variant,
)
from tabpipe.errors import ConfigError
from tabpipe.serving.answers import MAX_DETAILS
from tabpipe.serving.app import create_app
from tabpipe.serving.routes import admin as admin_routes

FEATURES = [n for n, c in REPO_SCHEMA["columns"].items() if c.get("role", "feature") == "feature"]
TOL = 1e-6


@pytest.fixture(scope="session")
def main_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "main")


@pytest.fixture(scope="session")
def ext_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "ext")


# --------------------------------------------------------------------------- fixtures and helpers


class Served:
    """An app serving a copy of a project at a given production version, and that version's model."""

    def __init__(self, project: Project, version: str, root: Path):
        self.project = project
        self.config = copy_project(project, root, production=version)
        self.registry = registry_of(self.config)
        self.version = version
        self.app = create_app(self.config)
        self.client = self.app.test_client()
        self.model, self.meta = self.registry.load_model(version)

    @property
    def holder(self):
        return self.app.extensions["tabpipe"]["holder"]

    def close(self):
        self.holder.stop()


@pytest.fixture(scope="module")
def served(main_project, ext_project, tmp_path_factory):
    """(project, version) -> Served, built lazily and shared by the module."""
    cache: dict = {}
    projects = {"main": main_project, "ext": ext_project}

    def get(name: str, version: str) -> Served:
        if (name, version) not in cache:
            cache[(name, version)] = Served(projects[name], version, tmp_path_factory.mktemp(f"{name}-{version}") / "p")
        return cache[(name, version)]

    yield get
    for s in cache.values():
        s.close()


@pytest.fixture(scope="module")
def rf(served) -> Served:
    return served("main", "v0001")


def post_json(client, payload, path="/predict"):
    return client.post(path, data=json.dumps(payload), content_type="application/json")


def post_raw(client, body, content_type="application/json", path="/predict"):
    return client.post(path, data=body, content_type=content_type)


def error_json(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.is_json, resp.headers
    body = resp.get_json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


def strict_json(resp):
    """Parse the body rejecting NaN/Infinity (not JSON)."""
    def bad(name):
        raise AssertionError(f"response is not valid JSON: contains {name}")

    return json.loads(resp.get_data(as_text=True), parse_constant=bad)


def assert_matches_model(served_: Served, records: list[dict], resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:1000]
    body = strict_json(resp)
    assert body["model_version"] == served_.version
    preds = body["predictions"]
    assert len(preds) == len(records)
    expected = served_.model.predict_proba(pd.DataFrame(records))
    got = np.array([p["probability"] for p in preds], dtype=float)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    labels = served_.model.labels_for(expected)
    for p, exp, label in zip(preds, expected, labels):
        assert p["prediction"] in served_.model.labels
        if abs(exp - served_.model.threshold) > TOL:
            assert p["prediction"] == label.item()
    return body


def csv_upload(client, data: bytes, field="file", filename="rows.csv"):
    return client.post("/predict/csv", data={field: (io.BytesIO(data), filename)}, content_type="multipart/form-data")


# --------------------------------------------------------------------------- /predict happy paths

CASES = [("main", "v0001", "random_forest"), ("main", "v0002", "logreg"), ("ext", "v0001", "hgb"),
         ("ext", "v0002", "logreg")]


@pytest.mark.parametrize("name,version,candidate", CASES, ids=["forest", "logreg", "hgb-ext", "logreg-ext"])
def test_predict_equals_model_predict_proba(served, name, version, candidate):
    s = served(name, version)
    assert s.meta["candidate"] == candidate
    scorer = s.holder.current.scorer
    assert scorer.compiled_features and scorer.compiled   # the compiled path is what is under test
    records = sample_records(s.project, 60, seed=7)
    # one record
    body = assert_matches_model(s, records[:1], post_json(s.client, records[0]))
    assert len(body["predictions"]) == 1
    # a list, in order
    assert_matches_model(s, records, post_json(s.client, {"records": records}))
    # every record on its own equals its entry in the batch
    batch = post_json(s.client, {"records": records}).get_json()["predictions"]
    for rec, p in zip(records[:10], batch[:10]):
        single = post_json(s.client, rec).get_json()["predictions"][0]
        assert single["prediction"] == p["prediction"]
        assert math.isclose(single["probability"], p["probability"], abs_tol=1e-12)


def test_predict_answers_carry_the_calibrated_probability_and_the_raw_score(served):
    s = served("main", "v0001")
    assert s.model.calibration is not None            # trained with the defaults: calibrated
    records = sample_records(s.project, 40, seed=3)
    preds = post_json(s.client, {"records": records}).get_json()["predictions"]
    typed, _ = s.model.check(pd.DataFrame(records))
    raw = s.model.score_typed(typed)
    np.testing.assert_allclose([p["score"] for p in preds], raw, rtol=0, atol=TOL)
    np.testing.assert_allclose([p["probability"] for p in preds], s.model.calibration(raw), rtol=0, atol=TOL)
    assert max(abs(p["probability"] - p["score"]) for p in preds) > 1e-3   # calibrated, not the raw score again
    resp = csv_upload(s.client, pd.DataFrame(records).to_csv(index=False).encode())
    out = pd.read_csv(io.BytesIO(resp.data))
    np.testing.assert_allclose(out["score"], raw, rtol=0, atol=TOL)
    np.testing.assert_allclose(out["probability"], s.model.calibration(raw), rtol=0, atol=TOL)


def _edge_records(project: Project) -> list[dict]:
    """Nulls in every nullable field, unknown allowed categories, offsets, bounds."""
    base = sample_records(project, 1, seed=3)[0]
    schema = yaml.safe_load((project.root / "schema.yaml").read_text())["columns"]
    nullable = [n for n, c in schema.items() if c.get("role", "feature") == "feature" and c.get("nullable", True)]
    recs = [
        {**base, **{n: None for n in nullable}},
        {**base, "vendor": "Acme Radio", "region": "north"},                 # unknown vendor is allowed
        {**base, "timestamp": "2024-03-05T23:30:00+02:00"},                  # offset -> UTC
        {**base, "timestamp": "2024-03-09"},
        {**base, "latency_ms": 0, "packet_loss_pct": 100, "rsrp_dbm": -160, "sinr_db": 50, "active_users": 0},
        {**base, "latency_ms": "12.5", "active_users": "7", "alarm_count": 3.0},  # numeric strings, whole float
        {**base, "latency_ms": 4999.9, "throughput_mbps": 2000.0, "temperature_c": -60},
    ]
    if BOOL_COLUMN in schema:
        recs += [{**base, BOOL_COLUMN: v} for v in (True, False, None, "yes", "no", "TRUE", 0, 1, "f")]
    return recs


@pytest.mark.parametrize("name,version", [("main", "v0001"), ("main", "v0002"), ("ext", "v0001"), ("ext", "v0002")],
                         ids=["forest", "logreg", "hgb-ext", "logreg-ext"])
def test_predict_edge_values_equal_model(served, name, version):
    s = served(name, version)
    records = _edge_records(s.project)
    assert_matches_model(s, records, post_json(s.client, {"records": records}))


def test_omitted_key_is_an_error_for_that_record_only(rf):
    """A feature key left out (even a nullable one) is absent, as a column missing from a CSV is:
    that record gets an error, the others are scored; null is how a missing value is sent."""
    recs = sample_records(rf.project, 3, seed=4)
    recs[1] = {k: v for k, v in recs[1].items() if k != "sinr_db"}
    body = post_json(rf.client, {"records": recs}).get_json()
    assert [p["row"] for p in body["predictions"]] == [0, 1, 2]
    assert body["predictions"][1]["prediction"] is None and body["predictions"][1]["probability"] is None
    assert body["predictions"][1]["errors"] == [{"field": "sinr_db", "rule": "missing_column",
                                                 "message": "is absent from the input (send null or an empty value for a missing value)"}]
    assert body["predictions"][0]["probability"] is not None and body["predictions"][2]["probability"] is not None
    assert body["summary"]["failed"] == 1 and body["summary"]["errors"] == {"sinr_db": {"missing_column": 1}}
    assert post_json(rf.client, {**recs[1], "sinr_db": None}).status_code == 200


def test_ext_schema_has_bool_datetime_and_nulls(ext_project):
    df = pd.read_csv(ext_project.root / "data1.csv")
    schema = yaml.safe_load((ext_project.root / "schema.yaml").read_text())["columns"]
    assert schema[BOOL_COLUMN]["type"] == "bool" and schema["timestamp"]["type"] == "datetime"
    for col in (BOOL_COLUMN, "timestamp", "sinr_db", "vendor"):
        assert df[col].isna().any(), col


# --------------------------------------------------------------------------- other endpoints


def test_health_and_model(rf):
    r = rf.client.get("/health")
    assert r.status_code == 200 and r.is_json
    assert r.get_json() == {"status": "ok", "model_loaded": True, "model_version": "v0001"}
    r = rf.client.get("/model")
    assert r.status_code == 200 and r.is_json
    info = r.get_json()
    assert info["model_version"] == "v0001"
    assert info["trained_at"] == rf.meta["created_at"] and info["trained_at"]
    assert info["metrics"] == rf.meta["metrics"] and "roc_auc" in info["metrics"]
    assert info["candidate"] == "random_forest"
    assert info["threshold"] == pytest.approx(rf.model.threshold)
    assert info["labels"] == list(rf.model.labels)
    schema = info["schema"]
    assert schema["target"] == "fault_flag" and schema["positive"] == 1
    assert set(schema["features"]) == set(FEATURES)
    assert schema["features"]["technology"]["categories"] == ["3G", "4G", "5G"]
    assert schema["features"]["latency_ms"]["max"] == 5000


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs, self.selects, self.ids, self._select = {}, {}, {}, None
        self._capture, self.text = None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input":
            self.inputs[a["name"]] = a
        elif tag == "select":
            self._select = a["name"]
            self.selects[a["name"]] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(a.get("value"))
        if "id" in a:
            self.ids[a["id"]] = a
            self._capture = a["id"]
            self.text[a["id"]] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        self._capture = None

    def handle_data(self, data):
        if self._capture:
            self.text[self._capture] += data


def parse_form(html: str) -> _FormParser:
    p = _FormParser()
    p.feed(html)
    return p


def test_form_is_built_from_the_schema(served):
    s = served("ext", "v0001")
    r = s.client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    form = parse_form(r.get_data(as_text=True))
    cols = yaml.safe_load((s.project.root / "schema.yaml").read_text())["columns"]
    features = [n for n, c in cols.items() if c.get("role", "feature") == "feature"]
    assert set(form.inputs) | set(form.selects) == set(features)
    assert "measurement_id" not in form.inputs and "cell_id" not in form.inputs  # id columns are not model inputs
    for name in features:
        spec = cols[name]
        hard = spec.get("hard", [])
        if spec["type"] == "category" and "category" in hard:          # only the listed values: a select
            expected = ([""] if "null" not in hard else []) + spec["categories"]
            assert form.selects[name] == expected, name
        elif spec["type"] == "category":                                # listed values suggested, others allowed
            assert form.inputs[name]["list"] == f"{name}-listed" and name not in form.selects
        elif spec["type"] == "bool":
            assert form.selects[name] == ["", "true", "false"]
        elif spec["type"] == "datetime":
            assert form.inputs[name]["type"] == "datetime-local"
        else:
            attrs = form.inputs[name]
            assert attrs["type"] == "number"
            assert attrs["step"] == ("1" if spec["type"] == "int" else "any")
            if "range" in hard:                                         # the browser enforces hard ranges only
                assert float(attrs["min"]) == spec["min"] and float(attrs["max"]) == spec["max"], name
            else:
                assert "min" not in attrs and "max" not in attrs, name
                if "max" in spec:
                    assert f"{spec['max']:g}" in attrs["placeholder"], name
            assert ("required" in attrs) == ("null" in hard), name       # a missing value is an expectation
    assert form.text["model-version"].strip() == "v0001"


def _form_values(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if v is None:
            out[k] = ""
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        else:
            out[k] = str(v)
    return out


@pytest.mark.parametrize("name,version", [("main", "v0001"), ("ext", "v0001")])
def test_form_post_shows_prediction_and_probability(served, name, version):
    s = served(name, version)
    for rec in sample_records(s.project, 3, seed=11):
        r = s.client.post("/", data=_form_values(rec))
        assert r.status_code == 200
        form = parse_form(r.get_data(as_text=True))
        expected = post_json(s.client, rec).get_json()["predictions"][0]
        assert form.text["prediction"].strip() == str(expected["prediction"])
        assert form.text["probability"].strip() == f"{expected['probability']:.4f}"
        # the submitted values are kept in the form
        assert form.inputs["latency_ms"]["value"] == str(rec["latency_ms"])


def test_form_post_out_of_range_is_scored_with_a_warning(rf):
    rec = sample_records(rf.project, 1, seed=12)[0]
    r = rf.client.post("/", data=_form_values({**rec, "latency_ms": 99999}))
    assert r.status_code == 200
    form = parse_form(r.get_data(as_text=True))
    expected = post_json(rf.client, {**rec, "latency_ms": 99999}).get_json()["predictions"][0]
    assert form.text["probability"].strip() == f"{expected['probability']:.4f}"
    assert "above the maximum 5000" in form.text["warn-latency_ms"]
    assert "1 warning" in form.text["warnings"] and "errors" not in form.ids


def test_form_post_hard_violation_shows_field_error(rf):
    rec = sample_records(rf.project, 1, seed=12)[0]
    r = rf.client.post("/", data=_form_values({**rec, "latency_ms": 99999, "technology": "6G"}))
    assert r.status_code == 422
    form = parse_form(r.get_data(as_text=True))
    assert "allowed categories" in form.text["err-technology"]
    assert "above the maximum" in form.text["warn-latency_ms"]
    assert "prediction" not in form.text and "errors" in form.ids


# --------------------------------------------------------------------------- JSON error classes


def test_malformed_json_is_400(rf):
    for body in ("{bad json", '{"latency_ms": }', "", "[1, 2", b"\xff\xfe\x00\x01"):
        error_json(post_raw(rf.client, body), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", None])
def test_non_json_content_type_is_415(rf, content_type):
    body = json.dumps(sample_records(rf.project, 1)[0])
    resp = rf.client.post("/predict", data=body, content_type=content_type) if content_type else \
        rf.client.post("/predict", data=body)
    error_json(resp, 415)


@pytest.mark.parametrize("payload", [[{"latency_ms": 1}], "record", 3, None, {"records": 5}, {"records": {"a": 1}}],
                         ids=["top-level-list", "string", "number", "null", "records-number", "records-object"])
def test_wrong_payload_shape_is_400(rf, payload):
    error_json(post_json(rf.client, payload), 400)


def test_empty_records_is_400(rf):
    error_json(post_json(rf.client, {"records": []}), 400)


def test_records_not_objects_are_row_errors(rf):
    good = sample_records(rf.project, 1)[0]
    body = post_json(rf.client, {"records": [good, 1, "x", [good], None]}).get_json()
    assert body["summary"]["scored"] == 1 and body["summary"]["failed"] == 4
    assert body["predictions"][0]["probability"] is not None
    for entry in body["predictions"][1:]:
        assert entry["probability"] is None and entry["errors"][0]["message"] == "is not a JSON object"
    body = error_json(post_json(rf.client, {"records": [1, "x", [good], None]}), 422)   # nothing to score
    assert [d["row"] for d in body["details"]] == [0, 1, 2, 3]
    assert all("field" in d and d["message"] for d in body["details"]) and body["summary"]["failed"] == 4


@pytest.fixture(scope="module")
def limited(main_project, tmp_path_factory) -> Served:
    """Serving v0001 with a tiny body limit (about 1 KiB); ``limited.few`` allows at most 5 records."""
    s = Served(main_project, "v0001", tmp_path_factory.mktemp("limited") / "p")
    s.close()  # replaced by the limited app below
    s.app = create_app(write_variant(s.config, "limited.yaml", max_body_mb=0.001))
    s.client = s.app.test_client()
    few = create_app(write_variant(s.config, "few.yaml", max_records=5))
    s.few = few.test_client()
    yield s
    few.extensions["tabpipe"]["holder"].stop()
    s.close()


def test_oversize_body_is_413(limited):
    rec = sample_records(limited.project, 1)[0]
    small = json.dumps(rec).encode()
    assert len(small) < 1000
    r = post_raw(limited.client, small)
    assert r.status_code == 200, r.get_data(as_text=True)
    big = json.dumps({"records": [rec] * 4, "pad": "x" * 2000}).encode()
    error_json(post_raw(limited.client, big), 413)
    error_json(csv_upload(limited.client, b"a,b\n" + b"1,2\n" * 1000), 413)
    r = limited.client.post("/", data={"latency_ms": "1" * 5000})
    assert r.status_code == 413 and r.is_json


def test_too_many_records_is_413(limited):
    recs = sample_records(limited.project, 6)
    assert post_json(limited.few, {"records": recs[:5]}).status_code == 200
    body = error_json(post_json(limited.few, {"records": recs}), 413)
    assert "5" in body["error"]


# hard violations: (field, bad value, words expected in the message) — the record cannot be scored
VIOLATIONS = [
    ("latency_ms", "<missing>", "absent"),
    ("latency_ms", "fast", "not a number"),
    ("latency_ms", True, "not a number"),
    ("latency_ms", [1], "not a single value"),
    ("latency_ms", {"v": 1}, "not a single value"),
    ("active_users", 2.5, "whole number"),
    ("packet_loss_pct", 150, "above the maximum"),          # hard: [range] in the schema
    ("technology", "6G", "allowed categories"),             # hard: [category]
    ("technology", "4g", "allowed categories"),
    ("vendor", {"name": "x"}, "single value"),
    ("timestamp", "not a date", "date/time"),
    ("timestamp", "2024-13-45", "date/time"),
]


def _with(recs: list[dict], row: int, field: str, value) -> list[dict]:
    recs = [dict(r) for r in recs]
    if value == "<missing>":
        del recs[row][field]
    else:
        recs[row][field] = value
    return recs


@pytest.mark.parametrize("field,value,words", VIOLATIONS, ids=[f"{f}={v!r}" for f, v, _ in VIOLATIONS])
def test_hard_violation_is_a_row_error_in_a_batch_and_422_alone(rf, field, value, words):
    recs = _with(sample_records(rf.project, 5, seed=5), 3, field, value)
    body = post_json(rf.client, {"records": recs}).get_json()
    preds = body["predictions"]
    assert [p["row"] for p in preds] == [0, 1, 2, 3, 4]
    (error,) = preds[3]["errors"]
    assert error["field"] == field and words in error["message"]
    assert preds[3]["prediction"] is None and preds[3]["probability"] is None
    others = [recs[i] for i in (0, 1, 2, 4)]
    np.testing.assert_allclose([preds[i]["probability"] for i in (0, 1, 2, 4)],
                               rf.model.predict_proba(pd.DataFrame(others)), rtol=0, atol=TOL)
    assert body["summary"] == {"rows": 5, "scored": 4, "failed": 1, "rows_with_warnings": 0, "warnings": {},
                               "errors": {field: {error["rule"]: 1}}, "details_truncated": False}
    # a single record: 422, row 0
    body = error_json(post_json(rf.client, recs[3]), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, field)]


# expectations: (field, value, rule, words) — the record is scored as it is, with a warning
EXPECTATIONS = [
    ("region", None, "null", "is missing"),
    ("latency_ms", None, "null", "is missing"),
    ("latency_ms", "", "null", "is missing"),
    ("latency_ms", 99999, "range", "above the maximum 5000"),
    ("rsrp_dbm", -200, "range", "below the minimum -160"),
    ("throughput_mbps", -0.5, "range", "below the minimum 0"),
    ("vendor", "Acme Radio", "category", "listed categories"),
    ("region", "atlantis", "category", "listed categories"),
]


@pytest.mark.parametrize("field,value,rule,words", EXPECTATIONS, ids=[f"{f}={v!r}" for f, v, _, _ in EXPECTATIONS])
@pytest.mark.parametrize("name,version", [("main", "v0001"), ("main", "v0002")], ids=["forest", "logreg"])
def test_expectation_is_scored_with_a_warning(served, name, version, field, value, rule, words):
    s = served(name, version)
    recs = _with(sample_records(s.project, 4, seed=8), 2, field, value)
    body = assert_matches_model(s, recs, post_json(s.client, {"records": recs}))
    (warning,) = body["predictions"][2]["warnings"]
    assert (warning["field"], warning["rule"]) == (field, rule) and words in warning["message"]
    assert all("warnings" not in p and "errors" not in p for i, p in enumerate(body["predictions"]) if i != 2)
    assert body["summary"]["warnings"] == {field: {rule: 1}} and body["summary"]["rows_with_warnings"] == 1
    single = post_json(s.client, recs[2])
    assert single.status_code == 200
    assert single.get_json()["predictions"][0]["warnings"] == [warning]


def test_bool_violation_is_422(served):
    s = served("ext", "v0001")
    rec = sample_records(s.project, 1)[0]
    body = error_json(post_json(s.client, {**rec, BOOL_COLUMN: "maybe"}), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, BOOL_COLUMN)]
    assert "boolean" in body["details"][0]["message"]


def test_many_violations_in_many_rows(rf):
    recs = sample_records(rf.project, 4, seed=6)
    recs[0]["latency_ms"] = -1
    recs[2]["technology"] = "2G"
    recs[2]["alarm_count"] = "many"
    body = post_json(rf.client, {"records": recs}).get_json()
    preds = body["predictions"]
    assert sorted(e["field"] for e in preds[2]["errors"]) == ["alarm_count", "technology"]
    assert [w["field"] for w in preds[0]["warnings"]] == ["latency_ms"] and preds[0]["probability"] is not None
    assert [p["probability"] is None for p in preds] == [False, False, True, False]
    assert body["summary"]["errors"] == {"technology": {"category": 1}, "alarm_count": {"type": 1}}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize("field", ["latency_ms", "sinr_db", "active_users"])
def test_nan_and_infinity_are_422(rf, field, literal):
    rec = sample_records(rf.project, 1)[0]
    text = json.dumps({**rec, field: "__X__"}).replace('"__X__"', literal)
    body = error_json(post_raw(rf.client, text), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, field)]


@pytest.mark.parametrize("text", ["nan", "NaN"])
def test_nan_string_in_non_nullable_field_is_422(rf, text):
    rec = sample_records(rf.project, 1)[0]
    body = error_json(post_json(rf.client, {**rec, "latency_ms": text}), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, "latency_ms")]


@pytest.mark.parametrize("version", ["v0001", "v0002"])
def test_nat_string_in_datetime_field_is_422(served, version):
    s = served("main", version)
    rec = sample_records(s.project, 1)[0]
    body = error_json(post_json(s.client, {**rec, "timestamp": "NaT"}), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, "timestamp")]


def test_huge_integer_is_422_not_500(rf):
    rec = sample_records(rf.project, 1)[0]
    text = json.dumps({**rec, "active_users": "__X__"}).replace('"__X__"', "1" + "0" * 400)
    body = error_json(post_raw(rf.client, text), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, "active_users")]


def test_overflowing_number_in_category_field_is_not_500(rf):
    rec = sample_records(rf.project, 1)[0]
    text = json.dumps({**rec, "technology": "__X__"}).replace('"__X__"', "1e400")
    body = error_json(post_raw(rf.client, text), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, "technology")]


def test_deeply_nested_json_is_400_or_413(rf):
    error_json(post_raw(rf.client, b"[" * 5_000), 400)          # too deep for the parser
    body = b"[" * 100_000                                          # more arrays than any allowed request needs
    assert len(body) < rf.app.config["MAX_CONTENT_LENGTH"]
    error_json(post_raw(rf.client, body), 413)


def test_logreg_large_valid_value_is_scored(served):
    s = served("main", "v0002")
    assert s.meta["candidate"] == "logreg"
    rec = sample_records(s.project, 1)[0]
    records = [{**rec, field: 1e6} for field in ("throughput_mbps", "active_users", "alarm_count")]
    assert_matches_model(s, records, post_json(s.client, {"records": records}))


def test_numeric_string_rules_match_the_schema_check(rf):
    rec = {**sample_records(rf.project, 1)[0], "latency_ms": "1_000"}
    _typed, problems = rf.model.check(pd.DataFrame([rec]))
    assert [p.column for p in problems] == ["latency_ms"]
    body = error_json(post_json(rf.client, rec), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(0, "latency_ms")]


def test_http_errors_are_json(rf):
    error_json(rf.client.get("/predict"), 405)
    error_json(rf.client.get("/no/such/page"), 404)
    error_json(rf.client.delete("/model"), 405)


def test_unknown_extra_fields_are_ignored(rf):
    rec = sample_records(rf.project, 1)[0]
    extra = {"measurement_id": "M-X", "cell_id": "X", "colour": "blue", "fault_flag": 1}
    assert_matches_model(rf, [rec], post_json(rf.client, {**rec, **extra}))


# --------------------------------------------------------------------------- /predict/csv


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def test_predict_csv_happy_path_100_rows(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").sample(n=100, random_state=1).reset_index(drop=True)
    r = csv_upload(rf.client, _csv(df))
    assert r.status_code == 200, r.get_data(as_text=True)[:1000]
    assert r.mimetype == "text/csv"
    assert r.headers["X-Model-Version"] == "v0001"
    out = pd.read_csv(io.BytesIO(r.data))
    assert len(out) == 100
    assert list(out.columns[: len(df.columns)]) == list(df.columns)
    assert list(out["measurement_id"]) == list(df["measurement_id"])   # same order (one id per row)
    np.testing.assert_allclose(out["latency_ms"], df["latency_ms"])
    expected = rf.model.predict_proba(df)
    np.testing.assert_allclose(out["probability"].to_numpy(float), expected, rtol=0, atol=TOL)
    assert set(out["prediction"]) <= set(rf.model.labels)
    assert list(out["prediction"]) == list(rf.model.labels_for(expected))
    # the JSON endpoint agrees with the CSV endpoint
    recs = sample_records(rf.project, 100, seed=1)
    js = post_json(rf.client, {"records": recs}).get_json()["predictions"]
    np.testing.assert_allclose([p["probability"] for p in js], expected, rtol=0, atol=TOL)


def test_predict_csv_needs_multipart(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(3)
    error_json(rf.client.post("/predict/csv", data=_csv(df), content_type="text/csv"), 415)
    error_json(rf.client.post("/predict/csv", data=json.dumps({"a": 1}), content_type="application/json"), 415)


def test_predict_csv_missing_file_is_400(rf):
    r = rf.client.post("/predict/csv", data={"other": "value"}, content_type="multipart/form-data")
    error_json(r, 400)
    error_json(csv_upload(rf.client, b"latency_ms\n1\n", field="upload"), 400)


@pytest.mark.parametrize("garbage", [b"", b"\n\n\n", b"\xff\xfe\x00garbage\xff\x00", b"a,b\n1,2,3,4\n5\n",
                                     b"\x00\x01\x02\x03"], ids=["empty", "blank-lines", "binary", "ragged", "nul"])
def test_predict_csv_garbage_is_400(rf, garbage):
    error_json(csv_upload(rf.client, garbage), 400)


def test_predict_csv_scores_every_row_it_can_in_order(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(20)
    df.loc[7, "latency_ms"] = -5                       # expectation: scored, warning
    df.loc[9, "sinr_db"] = np.nan                      # nullable: nothing to say
    df.loc[10, "rsrp_dbm"] = np.nan                    # a new missing value: scored (imputed), warning
    df["technology"] = df["technology"].astype(object)
    df.loc[12, "technology"] = "6G"                    # hard: [category]: error
    r = csv_upload(rf.client, _csv(df))
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    out = pd.read_csv(io.BytesIO(r.data))
    assert list(out["measurement_id"]) == list(df["measurement_id"])
    assert list(out.columns) == list(df.columns) + ["prediction", "probability", "score", "warnings", "error"]
    assert out["probability"].isna().tolist() == [i == 12 for i in range(20)]
    assert "technology (category): is not one of the allowed categories" in out.loc[12, "error"]
    assert out.loc[7, "warnings"] == "latency_ms (range): is below the minimum 0"
    assert out.loc[10, "warnings"] == "rsrp_dbm (null): is missing (column is not nullable)"
    assert out["warnings"].notna().sum() == 2 and out["error"].notna().sum() == 1
    keep = [i for i in range(20) if i != 12]
    np.testing.assert_allclose(out.loc[keep, "probability"], rf.model.predict_proba(df.loc[keep]), rtol=0, atol=TOL)
    assert (r.headers["X-Rows"], r.headers["X-Scored"], r.headers["X-Failed"]) == ("20", "19", "1")
    assert r.headers["X-Rows-With-Warnings"] == "2"
    assert set(r.headers["X-Warning-Counts"].split(";")) == {"latency_ms:range=1", "rsrp_dbm:null=1"}


def test_predict_csv_absent_columns_are_one_request_error(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(500)
    body = error_json(csv_upload(rf.client, _csv(df.drop(columns=["rsrp_dbm", "region"]))), 422)
    assert "rsrp_dbm" in body["error"] and "region" in body["error"]
    assert sorted([(d["row"], d["field"]) for d in body["details"]], key=str) == [(None, "region"), (None, "rsrp_dbm")]


def test_predict_csv_no_scorable_row_is_422(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(5)
    df["latency_ms"] = "fast"
    body = error_json(csv_upload(rf.client, _csv(df)), 422)
    assert [(d["row"], d["field"]) for d in body["details"]] == [(i, "latency_ms") for i in range(5)]
    assert body["summary"]["failed"] == 5 and body["summary"]["errors"] == {"latency_ms": {"type": 5}}


def test_predict_csv_duplicate_columns_is_client_error(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(5)
    data = _csv(df).replace(b"sinr_db", b"latency_ms", 1)
    r = csv_upload(rf.client, data)
    assert r.status_code in (400, 422), r.status_code
    error_json(r, r.status_code)


# --------------------------------------------------------------------------- no model, bad model


def test_empty_registry_503_then_loads_when_published(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p")
    variant = yaml.safe_load(config.read_text())
    variant["registry"]["path"] = "empty_registry"
    empty = config.parent / "empty.yaml"
    empty.write_text(yaml.safe_dump(variant))
    app = create_app(empty)
    try:
        c = app.test_client()
        r = c.get("/health")
        assert r.status_code == 503 and r.is_json
        assert r.get_json()["model_loaded"] is False and r.get_json()["model_version"] is None
        error_json(c.get("/model"), 503)
        rec = sample_records(main_project, 1)[0]
        error_json(post_json(c, rec), 503)
        error_json(csv_upload(c, b"latency_ms\n1\n"), 503)
        r = c.get("/")
        assert r.status_code == 200 and "No production model" in r.get_data(as_text=True)
        # publish + promote into the empty registry: the running app picks it up
        src = registry_of(config)
        target = registry_of(empty)
        files = {"model.pkl": src.fetch("v0001", "model.pkl")}
        version = target.publish(files, {"candidate": "random_forest", "metrics": {"roc_auc": 0.5}})
        target.promote(version)
        wait_until(lambda: c.get("/health").status_code == 200, 5, what="model loaded")
        assert c.get("/health").get_json()["model_version"] == version
        assert post_json(c, rec).status_code == 200
    finally:
        app.extensions["tabpipe"]["holder"].stop()


def _tamper(config: Path, version: str) -> None:
    path = config.parent / "registry" / "versions" / version / "model.pkl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_mismatch_is_never_loaded(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    app = create_app(config)
    try:
        c = app.test_client()
        assert c.get("/health").get_json()["model_version"] == "v0001"
        _tamper(config, "v0002")
        registry_of(config).promote("v0002")
        holder = app.extensions["tabpipe"]["holder"]
        wait_until(lambda: holder.last_error, 5, what="the poller to try v0002")
        r = c.get("/health")
        assert r.status_code == 200 and r.get_json()["model_version"] == "v0001"
        assert r.get_json()["refresh_error_code"] == "registry_error"
        assert post_json(c, sample_records(main_project, 1)[0]).get_json()["model_version"] == "v0001"
        assert "checksum" in holder.last_error  # the detail stays on the server
    finally:
        app.extensions["tabpipe"]["holder"].stop()
    # a fresh service whose production model is corrupt: starts, reports 503 with a stable code only
    app = create_app(config)
    try:
        c = app.test_client()
        holder = app.extensions["tabpipe"]["holder"]
        r = c.get("/health")
        assert r.status_code == 503 and r.get_json()["error_code"] == "registry_error"
        r503 = error_json(post_json(c, sample_records(main_project, 1)[0]), 503)
        assert r503["error_code"] == "registry_error"
        for body in (r.get_data(as_text=True), json.dumps(r503)):  # no path, no checksum detail
            assert "checksum" not in body and str(config.parent) not in body and "v0002" not in body
        assert "checksum" in holder.last_error and str(config.parent) in holder.last_error
    finally:
        app.extensions["tabpipe"]["holder"].stop()


def test_replayed_old_pointer_does_not_roll_the_service_back(main_project, tmp_path):
    """Someone with bucket write access puts back the old (validly signed) production.json: the
    running service keeps serving the newer model and reports a registry error."""
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    pointer = config.parent / "registry" / "production.json"
    old_pointer = pointer.read_bytes()
    app = create_app(config)
    try:
        c = app.test_client()
        holder = app.extensions["tabpipe"]["holder"]
        assert c.get("/health").get_json()["model_version"] == "v0001"
        registry_of(config).promote("v0002")
        wait_until(lambda: c.get("/health").get_json()["model_version"] == "v0002", 5, what="swap to v0002")
        replayed = pointer.with_name("replayed.json")
        replayed.write_bytes(old_pointer)
        os.replace(replayed, pointer)  # at once, as an S3 PUT is: the poller never reads half a file
        wait_until(lambda: holder.last_error, 5, what="the poller to see the replayed pointer")
        assert "rollback" in holder.last_error
        r = c.get("/health").get_json()
        assert r["model_version"] == "v0002" and r["refresh_error_code"] == "registry_error"
        assert post_json(c, sample_records(main_project, 1)[0]).get_json()["model_version"] == "v0002"
    finally:
        app.extensions["tabpipe"]["holder"].stop()


def test_health_and_503_never_expose_registry_details(main_project, tmp_path, monkeypatch):
    """An unreachable S3 registry: /health and 503 bodies carry a generic message and a stable code;
    the bucket, endpoint and cache path go to the server log only."""
    config = copy_project(main_project, tmp_path / "p")
    variant = yaml.safe_load(config.read_text())
    variant["registry"] = {"backend": "s3", "bucket": "secret-bucket-name", "prefix": "hidden/prefix",
                           "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1"}
    s3_config = config.parent / "s3.yaml"
    s3_config.write_text(yaml.safe_dump(variant))
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_EC2_METADATA_DISABLED", "true"),
                        ("AWS_MAX_ATTEMPTS", "1"), ("TABPIPE_CACHE_DIR", str(tmp_path / "private-cache"))):
        monkeypatch.setenv(name, value)
    app = create_app(s3_config)
    try:
        c = app.test_client()
        holder = app.extensions["tabpipe"]["holder"]
        r = c.get("/health")
        assert r.status_code == 503 and r.get_json()["error_code"] == "registry_error"
        r503 = error_json(post_json(c, sample_records(main_project, 1)[0]), 503)
        assert r503["error_code"] == "registry_error"
        for body in (r.get_data(as_text=True), json.dumps(r503), c.get("/model").get_data(as_text=True)):
            for secret in ("secret-bucket-name", "hidden/prefix", "127.0.0.1:9", "private-cache"):
                assert secret not in body, (secret, body)
        assert "secret-bucket-name" in holder.last_error  # the operator still gets the detail
    finally:
        app.extensions["tabpipe"]["holder"].stop()


def test_service_refuses_to_start_without_a_verify_key(main_project, tmp_path, monkeypatch):
    """registry.require_signature (the default) and no key anywhere: create_app raises, `tabpipe serve` exits 2."""
    config = copy_project(main_project, tmp_path / "p")
    verify_pem = os.environ["TABPIPE_REGISTRY_VERIFY_KEY"]
    monkeypatch.delenv("TABPIPE_REGISTRY_SIGNING_KEY")
    monkeypatch.delenv("TABPIPE_REGISTRY_VERIFY_KEY")
    with pytest.raises(ConfigError, match="registry.require_signature: is on, and reading models needs the Ed25519 "
                                          r"public key: set \$TABPIPE_REGISTRY_VERIFY_KEY"):
        create_app(config)
    result = subprocess.run([str(TABPIPE_BIN), "serve", "--config", str(config), "--port", "1"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 2, result.stderr
    assert "TABPIPE_REGISTRY_VERIFY_KEY" in result.stderr
    # with only the public key (what a serving host gets), it starts and serves
    monkeypatch.setenv("TABPIPE_REGISTRY_VERIFY_KEY", verify_pem)
    app = create_app(config)
    try:
        assert app.test_client().get("/health").status_code == 200
    finally:
        app.extensions["tabpipe"]["holder"].stop()
    # serve.allow_train makes the host a publisher: then the private key is required up front
    with pytest.raises(ConfigError, match="publishing needs the Ed25519 private key"):
        create_app(write_variant(config, "train.yaml", allow_train=True))


def test_unloadable_model_does_not_stop_later_swaps(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    registry = registry_of(config)
    ghost = tmp_path / "model.pkl"
    ghost.write_bytes(b"cnonexistent_module_xyz\nThing\n)\x81.")   # a pickle of a class this env lacks
    bad = registry.publish({"model.pkl": ghost}, {"candidate": "ghost"})
    app = create_app(config)
    try:
        c = app.test_client()
        registry.promote(bad)
        time.sleep(1.0)
        assert c.get("/health").get_json()["model_version"] == "v0001"   # keeps serving what it has
        registry.promote("v0002")
        wait_until(lambda: c.get("/health").get_json()["model_version"] == "v0002", 5, what="swap after a bad version")
    finally:
        app.extensions["tabpipe"]["holder"].stop()


# --------------------------------------------------------------------------- hot swap


def test_model_swap_when_production_moves(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    registry = registry_of(config)
    m1, _ = registry.load_model("v0001")
    m2, _ = registry.load_model("v0002")
    records = sample_records(main_project, 20, seed=9)
    p1, p2 = m1.predict_proba(pd.DataFrame(records)), m2.predict_proba(pd.DataFrame(records))
    assert np.abs(p1 - p2).max() > 0.01  # the two versions are distinguishable
    app = create_app(config)
    try:
        c = app.test_client()
        assert c.get("/health").get_json()["model_version"] == "v0001"
        got = post_json(c, {"records": records}).get_json()
        assert got["model_version"] == "v0001"
        np.testing.assert_allclose([p["probability"] for p in got["predictions"]], p1, atol=TOL)
        for target, expected in (("v0002", p2), ("v0001", p1)):
            registry.promote(target)
            wait_until(lambda t=target: c.get("/health").get_json()["model_version"] == t, 5, what=f"swap to {target}")
            got = post_json(c, {"records": records}).get_json()
            assert got["model_version"] == target
            np.testing.assert_allclose([p["probability"] for p in got["predictions"]], expected, atol=TOL)
            assert c.get("/model").get_json()["model_version"] == target
    finally:
        app.extensions["tabpipe"]["holder"].stop()


def test_swap_under_concurrent_requests_never_fails(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    registry = registry_of(config)
    records = sample_records(main_project, 5, seed=10)
    expected = {v: registry.load_model(v)[0].predict_proba(pd.DataFrame(records)) for v in ("v0001", "v0002")}
    app = create_app(config)
    failures, seen, stop = [], [], threading.Event()

    def client_loop():
        c = app.test_client()
        for _ in range(5000):   # until stopped; bounded
            if stop.is_set():
                return
            r = post_json(c, {"records": records})
            if r.status_code != 200:
                failures.append((r.status_code, r.get_data(as_text=True)[:200]))
                continue
            body = r.get_json()
            probs = [p["probability"] for p in body["predictions"]]
            if not np.allclose(probs, expected[body["model_version"]], atol=TOL):
                failures.append(("mixed", body["model_version"]))
            seen.append(body["model_version"])

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(seen) > 20, 10, what="first responses")
        for target in ("v0002", "v0001", "v0002"):
            registry.promote(target)
            n = len(seen)
            wait_until(lambda t=target, n=n: t in seen[n:], 10, what=f"responses from {target}")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        app.extensions["tabpipe"]["holder"].stop()
    assert not failures, failures[:5]
    assert {"v0001", "v0002"} <= set(seen)


# --------------------------------------------------------------------------- /train


@pytest.fixture
def train_app(main_project, tmp_path, monkeypatch):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    monkeypatch.delenv("TABPIPE_TRAIN_TOKEN", raising=False)

    def make(**serve):
        app = create_app(write_variant(config, "train.yaml", **serve) if serve else config)
        apps.append(app)
        return app

    apps: list = []
    yield make
    for a in apps:
        a.extensions["tabpipe"]["holder"].stop()


def test_train_disabled_is_404(train_app, monkeypatch):
    monkeypatch.setenv("TABPIPE_TRAIN_TOKEN", "s3cret")
    c = train_app().test_client()
    error_json(c.post("/train", headers={"Authorization": "Bearer s3cret"}), 404)


def test_train_enabled_without_token_env_is_503(train_app):
    c = train_app(allow_train=True).test_client()
    error_json(c.post("/train", headers={"Authorization": "Bearer anything"}), 503)


def test_train_token_checks_and_start(train_app, monkeypatch):
    calls, release = [], threading.Event()

    def fake_train(settings, lock, holder, environ):
        calls.append((settings, holder))
        release.wait(10)
        lock.release()

    monkeypatch.setattr(admin_routes, "_train_in_background", fake_train)
    monkeypatch.setenv("TABPIPE_TRAIN_TOKEN", "s3cret-token")
    app = train_app(allow_train=True)
    c = app.test_client()
    error_json(c.post("/train"), 401)
    error_json(c.post("/train", headers={"Authorization": "Bearer wrong"}), 401)
    error_json(c.post("/train", headers={"Authorization": "s3cret-tokenX"}), 401)
    error_json(c.post("/train", headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}), 401)
    assert calls == []
    r = c.post("/train", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 202 and r.is_json and r.get_json()["status"] == "started"
    wait_until(lambda: calls, 5, what="background training invoked")
    settings, holder = calls[0]
    assert holder is app.extensions["tabpipe"]["holder"]
    assert settings.pipeline.serve.allow_train is True
    error_json(c.post("/train", headers={"Authorization": "Bearer s3cret-token"}), 409)  # one at a time
    release.set()
    wait_until(lambda: c.post("/train", headers={"Authorization": "Bearer s3cret-token"}).status_code == 202, 5,
               what="lock released")
    assert len(calls) == 2


def test_train_over_http_publishes_and_serves_new_version(main_project, tmp_path, monkeypatch):
    """A real training run started over HTTP: published as v0003, promoted, and then served."""
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    doc = yaml.safe_load(config.read_text())
    doc["serve"]["allow_train"] = True
    doc["evaluation"]["min_improvement"] = -1.0
    config.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("TABPIPE_TRAIN_TOKEN", "tok")
    app = create_app(config)
    try:
        c = app.test_client()
        r = c.post("/train", headers={"Authorization": "Bearer tok"})
        assert r.status_code == 202
        wait_until(lambda: c.get("/health").get_json()["model_version"] == "v0003", 120, interval=0.25,
                   what="model trained over HTTP")
        assert registry_of(config).production_version() == "v0003"
        rec = sample_records(main_project, 1)[0]
        assert post_json(c, rec).get_json()["model_version"] == "v0003"
        assert list((config.parent / "artifacts").glob("*/run.json"))
    finally:
        app.extensions["tabpipe"]["holder"].stop()


# --------------------------------------------------------------------------- fuzzing: never a 5xx

_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["3G", "north", "Nokia", "2024-03-01T10:00", "1e3", "-0",
                                                           "yes", " ", "", "1.5", "true"]))
_value = st.recursive(_scalar, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids,
                                                                                          max_size=3), max_leaves=6)
_key = st.one_of(st.sampled_from(FEATURES), st.text(max_size=8))
_record = st.dictionaries(_key, _value, max_size=20)


@pytest.fixture(scope="module")
def base_records(main_project):
    return sample_records(main_project, 10, seed=21)


def _near_valid(base_records):
    return st.builds(lambda i, over: {**base_records[i], **over}, st.integers(0, len(base_records) - 1),
                     st.dictionaries(st.sampled_from(FEATURES), _value, max_size=4))


FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def _assert_no_5xx(resp, html_ok: bool = False):
    """No 5xx; errors are JSON (the HTML form may answer 200/422 with its page)."""
    assert resp.status_code < 500, resp.get_data(as_text=True)[:500]
    if html_ok and resp.status_code in (200, 422):
        assert resp.mimetype == "text/html"
    elif resp.status_code != 200 or resp.mimetype == "application/json":
        assert resp.is_json, (resp.status_code, resp.mimetype)


@FUZZ
@given(data=st.data())
def test_fuzz_json_payloads_never_5xx(rf, base_records, data):
    near = _near_valid(base_records)
    payload = data.draw(st.one_of(
        _record, near, st.fixed_dictionaries({"records": st.lists(st.one_of(near, _record, _value), max_size=4)}),
        st.lists(_value, max_size=3), _value,
    ))
    resp = post_raw(rf.client, json.dumps(payload))
    _assert_no_5xx(resp)
    if resp.status_code == 200:
        body = strict_json(resp)
        assert all(p["probability"] is None or 0.0 <= p["probability"] <= 1.0 for p in body["predictions"])
        assert all((p["probability"] is None) == ("errors" in p) for p in body["predictions"])
    elif resp.status_code == 422:
        assert all({"row", "field", "message"} <= set(d) for d in resp.get_json()["details"])


@FUZZ
@given(body=st.binary(max_size=400), content_type=st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "multipart/form-data",
     "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded", "text/csv"]),
       path=st.sampled_from(["/predict", "/predict/csv", "/", "/train"]))
def test_fuzz_random_bodies_never_5xx(rf, body, content_type, path):
    _assert_no_5xx(rf.client.post(path, data=body, content_type=content_type), html_ok=path == "/")


_csv_cell = st.one_of(st.sampled_from(["", "nan", "NA", "1", "-5", "3G", "north", "2024-03-01 10:00:00", "true",
                                       "1e400", "x", '"q,u"', "0.5"]), st.text(alphabet="0123456789.-eE x", max_size=6))


@FUZZ
@given(data=st.data())
def test_fuzz_csv_uploads_never_5xx(rf, data):
    cols = data.draw(st.lists(st.sampled_from(FEATURES + ["measurement_id", "cell_id", "other"]), min_size=1, max_size=18, unique=True))
    rows = data.draw(st.lists(st.lists(_csv_cell, min_size=len(cols), max_size=len(cols)), max_size=5))
    text = ",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    _assert_no_5xx(csv_upload(rf.client, text.encode()))


# validation parity: the fast path accepts exactly what the model's own check accepts, reports the same
# (field, rule, message) errors and warnings — booleans, empty strings and omitted keys included — and
# agrees on the numbers
_typed_value = st.one_of(st.none(), st.booleans(), st.sampled_from(["", " ", "true", "0", "1e300", "nan"]),
                         st.integers(-300, 6000), st.floats(-300, 6000, allow_nan=False),
                         st.sampled_from(["3G", "4G", "5G", "6G", "north", "central", "Nokia", "Acme", "abc", "12.5"]),
                         st.sampled_from(["2024-03-01T10:00:00", "2024-03-07 23:59", "2024-02-30", "2024-03-01T05:00Z"]))


@FUZZ
@given(data=st.data())
def test_fuzz_fast_path_matches_model(rf, base_records, data):
    rec = {**data.draw(st.sampled_from(base_records)),
           **data.draw(st.dictionaries(st.sampled_from(FEATURES), _typed_value, max_size=4))}
    for key in data.draw(st.sets(st.sampled_from(FEATURES), max_size=2)):     # omitted keys
        rec.pop(key, None)
    resp = post_json(rf.client, rec)
    _typed, problems = rf.model.check(pd.DataFrame([rec]))
    hard = {(p.column, p.rule, p.message) for p in problems if p.hard}
    soft = {(p.column, p.rule, p.message) for p in problems if not p.hard}
    if hard:
        body = error_json(resp, 422)
        assert {(d["field"], d["rule"], d["message"]) for d in body["details"]} == hard
    else:
        body = assert_matches_model(rf, [rec], resp)
        got = {(w["field"], w["rule"], w["message"]) for w in body["predictions"][0].get("warnings", [])}
        assert got == soft


# --------------------------------------------------------------------------- hostile inputs: bounded work, bounded answers, no 5xx


@pytest.fixture(scope="module")
def capped(main_project, tmp_path_factory) -> Served:
    """Serving v0001 with serve.max_csv_rows: 50 and serve.allowed_origins: [https://app.example.com]."""
    s = Served(main_project, "v0001", tmp_path_factory.mktemp("capped") / "p")
    s.close()
    s.app = create_app(write_variant(s.config, "capped.yaml", max_csv_rows=50,
                                     allowed_origins=["https://app.example.com"]))
    s.client = s.app.test_client()
    yield s
    s.close()


def test_json_with_millions_of_objects_is_413_before_parsing(rf, monkeypatch):
    from tabpipe.serving import inputs

    parsed, real = [], inputs.json.loads

    def spy(text, **kwargs):
        parsed.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(inputs.json, "loads", spy)
    body = b'{"records":[' + b"{}," * 299_999 + b"{}]}"
    resp = post_raw(rf.client, body)
    monkeypatch.undo()
    assert not [n for n in parsed if n >= len(body)]            # never handed to the JSON parser
    body_json = error_json(resp, 413)
    assert "serve.max_records=10000" in body_json["error"] and len(resp.data) < 500


def test_just_over_max_records_is_413_and_at_the_limit_is_scored(limited):
    recs = sample_records(limited.project, 6)
    assert post_json(limited.few, {"records": recs[:5]}).status_code == 200
    error_json(post_json(limited.few, {"records": recs + [{}] * 20}), 413)       # caught before parsing
    error_json(post_json(limited.few, {"records": recs}), 413)                   # counted after parsing


def test_csv_header_problem_is_one_error_not_one_per_row(rf):
    data = b"unknown\n" + b"1\n" * 300_000
    resp = csv_upload(rf.client, data)
    body = error_json(resp, 422)
    assert len(body["details"]) == len(FEATURES) and {d["row"] for d in body["details"]} == {None}
    assert {d["field"] for d in body["details"]} == set(FEATURES)
    assert len(resp.data) < 10_000


def test_csv_rows_are_capped_before_scoring(capped, monkeypatch):
    from tabpipe.serving.routes import predict as predict_routes

    df = pd.read_csv(capped.project.root / "data1.csv").head(51)
    monkeypatch.setattr(predict_routes, "score_rows", lambda *a: (_ for _ in ()).throw(AssertionError("scored")))
    body = error_json(csv_upload(capped.client, _csv(df)), 413)
    assert "serve.max_csv_rows=50" in body["error"] and "51 rows" in body["error"]
    monkeypatch.undo()
    r = csv_upload(capped.client, _csv(df.head(50)))
    assert r.status_code == 200 and r.headers["X-Scored"] == "50"


def test_huge_numbers_in_every_column_never_5xx(rf):
    cols = FEATURES
    for cell in ("1e300", "-1e300", "1e400", "99999999999999999999999999"):
        r = csv_upload(rf.client, (",".join(cols) + "\n" + ",".join([cell] * len(cols)) + "\n").encode())
        assert r.status_code in (200, 422), (cell, r.status_code, r.get_data(as_text=True)[:300])
        if r.status_code == 422:
            fields = {d["field"] for d in r.get_json()["details"]}
            assert fields <= set(FEATURES) and fields
    rec = {name: 1e300 for name in FEATURES}
    r = post_json(rf.client, {"records": [rec, {**sample_records(rf.project, 1)[0]}]})
    assert r.status_code == 200 and r.get_json()["predictions"][0]["errors"]
    assert r.get_json()["predictions"][1]["probability"] is not None


def test_error_details_are_bounded_and_counts_exact(rf):
    bad = {name: "x" for name in FEATURES}                 # every field unreadable: 15 errors per record
    resp = post_json(rf.client, {"records": [bad] * 2000 + [sample_records(rf.project, 1)[0]]})
    body = resp.get_json()
    assert resp.status_code == 200
    details = sum(len(p.get("errors", [])) for p in body["predictions"])
    assert 2000 <= details <= 2000 + MAX_DETAILS                   # every failed row keeps one
    assert all(p.get("errors") for p in body["predictions"][:2000])
    summary = body["summary"]
    assert summary["failed"] == 2000 and summary["scored"] == 1 and summary["details_truncated"] is True
    unreadable = set(FEATURES) - {"region", "vendor"}           # "x" is only an unlisted category there
    assert summary["errors"] == {name: {"type" if name != "technology" else "category": 2000} for name in unreadable}
    assert summary["warnings"] == {"region": {"category": 2000}, "vendor": {"category": 2000}}


def test_warning_details_are_bounded_and_counts_exact(rf):
    rec = {**sample_records(rf.project, 1)[0], "latency_ms": 99999, "rsrp_dbm": -500, "region": None}
    body = post_json(rf.client, {"records": [rec] * 3000}).get_json()
    shown = sum(len(p.get("warnings", [])) for p in body["predictions"])
    assert shown == MAX_DETAILS
    assert body["summary"]["warnings"] == {"latency_ms": {"range": 3000}, "rsrp_dbm": {"range": 3000},
                                           "region": {"null": 3000}}
    assert body["summary"]["rows_with_warnings"] == 3000 and body["summary"]["details_truncated"] is True
    assert all(p["probability"] is not None for p in body["predictions"])


def test_csv_nothing_scorable_details_are_bounded(rf):
    df = pd.read_csv(rf.project.root / "data1.csv").head(1)
    big = pd.concat([df] * 5000, ignore_index=True).astype({"latency_ms": object})
    big["latency_ms"] = "fast"
    body = error_json(csv_upload(rf.client, _csv(big)), 422)
    assert len(body["details"]) == MAX_DETAILS and body["summary"]["failed"] == 5000
    assert body["summary"]["details_truncated"] is True


# --------------------------------------------------------------------------- cross-site browser requests


@pytest.mark.parametrize("headers, allowed", [
    ({}, True),                                                                          # curl, scripts
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, True),             # the service's own form
    ({"Sec-Fetch-Site": "none"}, True),                                                  # typed in by the user
    ({"Origin": "http://localhost"}, True),                                              # older browser, same origin
    ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, False),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"}, False),         # another local app
    ({"Origin": "https://evil.example"}, False),                                         # older browser, other site
    ({"Sec-Fetch-Site": "cross-site", "Origin": "null"}, False),                         # sandboxed page
], ids=["no-headers", "same-origin", "none", "origin-only-same", "cross-site", "same-site", "origin-only-other", "null"])
@pytest.mark.parametrize("path", ["/predict/csv", "/"])
def test_cross_site_posts_are_refused(rf, headers, allowed, path):
    df = pd.read_csv(rf.project.root / "data1.csv").head(2)
    if path == "/predict/csv":
        r = rf.client.post(path, data={"file": (io.BytesIO(_csv(df)), "rows.csv")}, content_type="multipart/form-data",
                           headers=headers)
    else:
        r = rf.client.post(path, data=_form_values(sample_records(rf.project, 1)[0]), headers=headers)
    if allowed:
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
    else:
        body = error_json(r, 403)
        assert "cross-site request refused" in body["error"] and "serve.allowed_origins" in body["error"]


def test_allowed_origin_may_post_and_read(capped):
    df = pd.read_csv(capped.project.root / "data1.csv").head(2)
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}
    r = capped.client.post("/predict/csv", data={"file": (io.BytesIO(_csv(df)), "rows.csv")},
                           content_type="multipart/form-data", headers=headers)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com" and "Origin" in r.headers["Vary"]
    assert "X-Scored" in r.headers["Access-Control-Expose-Headers"]
    other = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    r = capped.client.post("/predict/csv", data={"file": (io.BytesIO(_csv(df)), "rows.csv")},
                           content_type="multipart/form-data", headers=other)
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers

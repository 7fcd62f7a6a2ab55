"""Per-row reasons end to end on trained projects: ``/predict`` with ``explain``, ``/predict/csv?explain=k`` and
``tabpipe predict --explain k`` (answer shape, top-k order, base + contributions = the raw score logit)."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from service_helpers import build_project, copy_project, sample_records
from tabpipe.cli import app as cli_app
from tabpipe.serving.app import create_app

runner = CliRunner()


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    return {"main": build_project(tmp_path_factory, "main"), "ext": build_project(tmp_path_factory, "ext")}


@pytest.fixture(scope="module")
def served(projects, tmp_path_factory):
    """(project, version) -> (Flask test client, pipeline.yaml), each built once."""
    made: dict = {}

    def get(name: str, version: str):
        if (name, version) not in made:
            config = copy_project(projects[name], tmp_path_factory.mktemp(f"{name}-{version}") / "p", production=version)
            made[(name, version)] = (create_app(config), config)
        app, config = made[(name, version)]
        return app.test_client(), config

    yield get
    for app, _ in made.values():
        app.extensions["tabpipe"]["holder"].stop()


def post(client, payload, path="/predict"):
    return client.post(path, data=json.dumps(payload), content_type="application/json")


def logit(p):
    """The raw score logit as documented: a probability of exactly 0 or 1 (a forest's) counts as 1e-15 from it."""
    p = np.asarray(p, dtype=float)
    return np.log(np.maximum(p, 1e-15)) - np.log(np.maximum(1.0 - p, 1e-15))


# main v0001: random forest, main v0002: logistic regression, ext v0001: histogram gradient boosting
@pytest.mark.parametrize("name,version", [("main", "v0001"), ("main", "v0002"), ("ext", "v0001")])
def test_predict_explain_answers_top_k_reasons_that_add_up_to_the_logit(projects, served, name, version):
    client, _ = served(name, version)
    records = sample_records(projects[name], 40, seed=3)
    resp = post(client, {"records": records, "explain": 3})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    predictions = resp.get_json()["predictions"]
    plain = post(client, {"records": records}).get_json()["predictions"]
    assert all("reasons" not in p for p in plain)
    for record, entry, same in zip(records, predictions, plain):
        assert entry["probability"] == same["probability"]          # explaining changes no score
        reasons = entry["reasons"]
        assert set(reasons) == {"of", "base", "logit", "contributions", "rest"}
        assert reasons["of"] == "raw score logit"
        shown = reasons["contributions"]
        assert len(shown) == 3
        assert all(set(c) == {"column", "value", "contribution"} for c in shown)
        assert [c["value"] for c in shown] == [record[c["column"]] for c in shown]
        sizes = [abs(c["contribution"]) for c in shown]
        assert sizes == sorted(sizes, reverse=True)
        total = reasons["base"] + sum(c["contribution"] for c in shown) + reasons["rest"]
        assert total == pytest.approx(reasons["logit"], abs=1e-9)
        assert reasons["logit"] == pytest.approx(float(logit(entry["score"])), abs=1e-6)   # the raw score, not the calibrated probability


def test_one_record_takes_explain_from_the_body_or_the_query(projects, served):
    client, _ = served("ext", "v0001")
    record = sample_records(projects["ext"], 1, seed=5)[0]
    in_body = post(client, {**record, "explain": 2})
    in_query = post(client, record, "/predict?explain=2")
    for resp in (in_body, in_query):
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        (entry,) = resp.get_json()["predictions"]
        assert len(entry["reasons"]["contributions"]) == 2
    assert in_body.get_json()["predictions"] == in_query.get_json()["predictions"]
    zero = post(client, {**record, "explain": 0})
    assert "reasons" not in zero.get_json()["predictions"][0]


@pytest.mark.parametrize("value", ["three", -1, 2.5, True, 10_000])
def test_a_bad_explain_value_is_a_400_naming_it(projects, served, value):
    client, _ = served("main", "v0002")
    records = sample_records(projects["main"], 2, seed=1)
    resp = post(client, {"records": records, "explain": value})
    assert resp.status_code == 400
    assert "explain" in resp.get_json()["error"]


def test_failed_rows_get_no_reasons_and_the_others_do(projects, served):
    client, _ = served("main", "v0002")
    records = sample_records(projects["main"], 3, seed=2)
    records[1] = "not an object"
    predictions = post(client, {"records": records, "explain": 1}).get_json()["predictions"]
    assert "reasons" in predictions[0] and "reasons" in predictions[2]
    assert "reasons" not in predictions[1] and predictions[1]["errors"]


def test_predict_csv_with_explain_adds_reason_columns(projects, served):
    client, _ = served("ext", "v0001")
    rows = pd.DataFrame(sample_records(projects["ext"], 30, seed=4))
    body = {"file": (io.BytesIO(rows.to_csv(index=False).encode()), "rows.csv")}
    resp = client.post("/predict/csv?explain=2", data=body, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    scored = pd.read_csv(io.BytesIO(resp.data))
    reason_columns = ["reason_base", "reason_logit", "reason_1_column", "reason_1_contribution",
                      "reason_2_column", "reason_2_contribution"]
    assert list(scored.columns)[-len(reason_columns):] == reason_columns
    np.testing.assert_allclose(scored["reason_logit"], logit(scored["score"]), atol=1e-6)
    assert (scored["reason_1_contribution"].abs() >= scored["reason_2_contribution"].abs()).all()
    assert set(scored["reason_1_column"]) <= set(rows.columns)
    bad = client.post("/predict/csv?explain=x", data={"file": (io.BytesIO(rows.to_csv(index=False).encode()), "r.csv")},
                      content_type="multipart/form-data")
    assert bad.status_code == 400 and "explain" in bad.get_json()["error"]


def test_tabpipe_predict_explain_writes_reason_columns(projects, served, tmp_path):
    _, config = served("main", "v0002")
    rows = pd.DataFrame(sample_records(projects["main"], 50, seed=6))
    rows.to_csv(tmp_path / "in.csv", index=False)
    result = runner.invoke(cli_app, ["predict", "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
                                     "-c", str(config), "--explain", "3"])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(tmp_path / "out.csv")
    assert list(scored.columns) == list(rows.columns) + [
        "prediction", "probability", "score", "warnings", "error", "reason_base", "reason_logit",
        "reason_1_column", "reason_1_contribution", "reason_2_column", "reason_2_contribution",
        "reason_3_column", "reason_3_contribution"]
    np.testing.assert_allclose(scored["reason_logit"], logit(scored["score"]), atol=1e-6)
    sizes = scored[[f"reason_{i}_contribution" for i in (1, 2, 3)]].abs().to_numpy()
    assert (np.diff(sizes, axis=1) <= 0).all()
    plain = runner.invoke(cli_app, ["predict", "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "plain.csv"),
                                    "-c", str(config)])
    assert plain.exit_code == 0
    assert list(pd.read_csv(tmp_path / "plain.csv").columns) == list(rows.columns) + [
        "prediction", "probability", "score", "warnings", "error"]


def test_training_records_permutation_importance_in_run_json(projects):
    """Every training run of the project recorded each feature's permutation importance on its test rows."""
    from tabpipe.schema import Schema

    project = projects["ext"]
    features = Schema.model_validate(yaml.safe_load((project.root / "schema.yaml").read_text())).features
    runs = sorted((project.root / "artifacts").glob("*/run.json"))
    assert len(runs) == 2
    for path in runs:
        importance = json.loads(path.read_text())["stages"]["evaluation"]["artifact"]["importance"]
        assert importance["metric"] == "roc_auc" and importance["rows"] > 0 and importance["bootstrap"] == 100
        assert sorted(r["column"] for r in importance["columns"]) == sorted(features)
        sizes = [r["importance"] for r in importance["columns"]]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0       # something matters, listed first
        assert all(r["low"] <= r["high"] for r in importance["columns"])

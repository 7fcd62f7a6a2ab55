"""The signed model card and the segment gate end to end: two training runs of one small project (the second
compared with the first), then the card in the registry (schema-valid, listed in the signed metadata,
tampering caught), ``tabpipe models card [--diff]``, ``GET /model/card`` and per-segment metrics in
``tabpipe monitor``."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from helpers import make_project, registry_of, run_pipeline, stage_dir
from tabpipe.cli import app
from tabpipe.errors import RegistryError
from tabpipe.reports.model_card import card_schema
from tabpipe.sources.sample import generate

CARD = {"owner": "network operations", "intended_use": "rank cells for a fault check",
        "limitations": ["trained on synthetic cells only"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """v0001 (first model) and v0002 (compared with v0001; min_improvement -1 so it is published)."""
    root = tmp_path_factory.mktemp("card") / "proj"
    config = make_project(root, rows=2000, pipeline={
        "segments": {"columns": ["technology", "latency_ms"], "min_rows": 50, "resamplings": 300},
        "model_card": CARD})
    first = run_pipeline(config)
    doc = yaml.safe_load(config.read_text())
    doc["evaluation"]["min_improvement"] = -1.0
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    second = run_pipeline(config)
    assert (first.record["model_version"], second.record["model_version"]) == ("v0001", "v0002"), second.record
    return config, second


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def _card(config: Path, version: str) -> dict:
    return json.loads(registry_of(config).fetch(version, "model_card.json").read_text())


def test_card_is_published_signed_and_valid_against_its_schema(trained):
    config, run = trained
    registry = registry_of(config)
    meta = registry.metadata("v0002")      # signature checked here
    assert {"model_card.json", "model_card.html"} <= set(meta["files"])
    assert meta["signature"]["alg"] == "ed25519"
    card = _card(config, "v0002")
    jsonschema.validate(card, card_schema())
    assert card["version"] == "v0002" and card["run_id"] == run.id
    assert card["purpose"] == CARD
    assert card["data"]["fingerprint"] == meta["data_fingerprint"] and card["data"]["test_rows"] == 400
    assert card["data"]["source"]["path"] == "data.csv"            # the file's name, not the trainer's folder
    assert card["gate"]["previous_version"] == "v0001" and card["gate"]["accepted"] is True
    assert card["gate"]["difference"]["ci"] is not None
    m = card["metrics"]
    assert m["intervals"]["roc_auc"]["value"] == pytest.approx(m["test"]["roc_auc"])
    lo, hi = m["intervals"]["roc_auc"]["ci"]
    assert lo <= m["test"]["roc_auc"] <= hi
    segments = card["segments"]["segments"]
    assert {s["column"] for s in segments} == {"technology", "latency_ms"}
    assert sum(s["rows"] for s in segments if s["column"] == "technology") == card["segments"]["rows"]
    assert any(s["status"] == "compared" for s in segments)
    assert card["worst_slices"]["tested"] > 0 and card["worst_slices"]["slices"]
    assert meta["segments"]["latency_ms"]["kind"] == "numeric" and len(meta["segments"]["latency_ms"]["edges"]) == 3
    html = registry.fetch("v0002", "model_card.html").read_text()
    assert "Model card — v0002" in html and "network operations" in html and "id='segments'" in html
    blessing = json.loads((stage_dir(run.dir, "evaluation") / "blessing.json").read_text())
    assert blessing["segments"]["refused"] == [] and blessing["worst_slices"]["method"]
    v1 = _card(config, "v0001")
    jsonschema.validate(v1, card_schema())
    assert v1["gate"]["previous_version"] is None and {s["status"] for s in v1["segments"]["segments"]} <= {
        "no_production", "one_class"}


def test_tampered_card_fails_verification(trained, tmp_path):
    config, _ = trained
    copy = tmp_path / "proj"
    shutil.copytree(config.parent, copy, ignore=shutil.ignore_patterns("artifacts"))
    doc = yaml.safe_load((copy / "pipeline.yaml").read_text())
    doc["registry"]["path"] = str(copy / "registry")          # the copy, never the shared project's registry
    (copy / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    registry = registry_of(copy / "pipeline.yaml")
    card_path = copy / "registry" / "versions" / "v0002" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["gate"]["accepted"], card["purpose"]["owner"] = True, "someone else"
    card_path.write_text(json.dumps(card, indent=2))
    with pytest.raises(RegistryError, match="checksum mismatch for v0002/model_card.json"):
        registry.fetch("v0002", "model_card.json")
    result = CliRunner().invoke(app, ["models", "card", "v0002", "--config", str(copy / "pipeline.yaml")])
    assert result.exit_code == 1 and "checksum mismatch" in result.output
    # re-recording the checksum in the metadata breaks its signature instead
    meta_path = copy / "registry" / "versions" / "v0002" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["model_card.json"]["sha256"] = hashlib.sha256(card_path.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta, indent=2))
    with pytest.raises(RegistryError, match="forged or altered"):
        registry.fetch("v0002", "model_card.json")


def test_models_card_prints_the_card_and_the_diff(trained):
    config, _ = trained
    shown = CliRunner().invoke(app, ["models", "card", "v0002", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "model card v0002" in shown.output and "owner: network operations" in shown.output
    assert "gate: accepted against v0001" in shown.output and "segment technology=4G" in shown.output
    as_json = CliRunner().invoke(app, ["models", "card", "v0002", "--json", "--config", str(config)])
    assert json.loads(as_json.output) == _card(config, "v0002")
    diff = CliRunner().invoke(app, ["models", "card", "v0002", "--diff", "v0001", "--config", str(config)])
    assert diff.exit_code == 0, diff.output
    assert 'gate.previous_version: null -> "v0001"' in diff.output and 'version: "v0001" -> "v0002"' in diff.output
    missing = CliRunner().invoke(app, ["models", "card", "v0009", "--config", str(config)])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_model_route_links_the_card_and_serves_it(trained):
    from tabpipe.serving.app import create_app

    config, _ = trained
    client = create_app(config).test_client()
    info = client.get("/model").get_json()
    assert info["model_version"] == "v0002" and info["model_card"] == "/model/card"
    page = client.get(info["model_card"])
    assert page.status_code == 200 and page.mimetype == "text/html" and b"Model card" in page.data
    doc = client.get("/model/card?format=json")
    assert doc.status_code == 200 and doc.get_json() == _card(config, "v0002")
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200 and b"href='model/card'" in dashboard.data


def test_monitor_reports_per_segment_metrics_of_a_labelled_window(trained, tmp_path):
    config, _ = trained
    window = generate(1500, seed=11)
    path = tmp_path / "window.csv"
    window.to_csv(path, index=False)
    result = CliRunner().invoke(app, ["monitor", "--config", str(config), "--input", str(path), "--labels",
                                      "fault_flag", "--json"])
    assert result.exit_code in (0, 3), result.output     # 3: the governance decision asks for attention
    doc = json.loads(result.stdout)
    seg = doc["segments"]
    assert seg["status"] == "ok"
    tech = [r for r in seg["rows"] if r["column"] == "technology"]
    assert sorted(r["segment"] for r in tech) == ["3G", "4G", "5G"] and sum(r["rows"] for r in tech) == 1500
    assert all(r["roc_auc"] is None or 0 <= r["roc_auc"] <= 1 for r in seg["rows"])
    report = Path(doc["reports"]["html"]).read_text()
    assert "id='segments'" in report and "href='model/card'" in report


def test_monitor_reports_per_segment_metrics_of_the_prediction_log(trained):
    """--since: the labelled rows of the prediction log (the columnar log, the default) get per-segment metrics
    too, in log order (a second pass reads only the segment columns)."""
    import os

    import pandas as pd

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history

    config, _ = trained
    settings = load_settings(config)
    model, meta = registry_of(config).load_model()
    rows = generate(900, seed=12)
    records = rows[settings.schema_.features].to_dict("records")
    proba = model.predict_proba(pd.DataFrame.from_records(records))
    with open_history(settings, os.environ) as store:
        assert store.log_format == "parquet"
        store.log_predictions([{"request_id": "seg", "row_index": i, "model_version": meta["version"], "inputs": rec,
                                "probability": float(p), "prediction": None} for i, (rec, p) in enumerate(zip(records, proba))])
        store.attach_outcomes({f"seg:{i}": int(y) for i, y in enumerate(rows["fault_flag"])})
    result = CliRunner().invoke(app, ["monitor", "--config", str(config), "--since", "1d", "--json"])
    assert result.exit_code in (0, 3), result.output
    seg = json.loads(result.stdout)["segments"]
    assert seg["status"] == "ok", seg
    tech = {r["segment"]: r for r in seg["rows"] if r["column"] == "technology"}
    expected = rows["technology"].value_counts()
    assert {name: r["rows"] for name, r in tech.items()} == {str(k): int(v) for k, v in expected.items()}
    assert all(r["roc_auc"] is None or 0 <= r["roc_auc"] <= 1 for r in seg["rows"])

"""One monitoring run with the two signals that see more than one column: a batch whose correlation is
reversed is a ``watch`` for multivariate drift (PSI quiet), outcomes that stopped following the scores are
concept drift; monitor.json, the report and the governance notes say what was and was not measured."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tabpipe.config import AlertsSection, ConceptSection, MultivariateSection, RulesSection
from tabpipe.drift.profile import build_profile
from tabpipe.model import TabularModel
from tabpipe.model.features import build_preprocessor
from tabpipe.monitoring.monitor import MonitorSettings, Window, run_monitor
from tabpipe.schema import Schema

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
SCHEMA = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
    "a": {"type": "float"}, "b": {"type": "float"}, "x": {"type": "float"}, "c": {"type": "category"}}})
SETTINGS = MonitorSettings(rules=RulesSection(), alerts=AlertsSection(), psi_min_rows=500, evidently=False,
                           evidently_max_rows=20_000, evidently_drift_share=0.5, seed=42,
                           multivariate=MultivariateSection(sample_rows=400, min_rows=100), concept=ConceptSection())


def rows(n: int, seed: int, *, reflect: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """a, b correlated 0.9 (``reflect``: -0.9, each column's distribution unchanged); outcome from a and c."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.9 * a + np.sqrt(0.19) * rng.normal(size=n)
    c = rng.choice(["p", "q", "r"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * a + (c == "p") - 0.5)))).astype(int)
    return pd.DataFrame({"a": a, "b": -b if reflect else b, "x": rng.normal(size=n), "c": c}), y


@pytest.fixture(scope="module")
def published():
    train, y = rows(8_000, seed=0)
    pre = build_preprocessor(SCHEMA).fit(train)
    model = TabularModel(schema=SCHEMA, preprocessor=pre, threshold=0.5, labels=(0, 1),
                         estimator=LogisticRegression().fit(pre.transform(train), y))
    test, y_test = rows(2_000, seed=1)
    profile = build_profile(train, SCHEMA, model.predict_proba(test), y_test, 0.5,
                            multivariate={"sample_rows": 400, "resamplings": 40, "seed": 0})
    return model, profile, train.sample(4_000, random_state=0)


def monitor(published, window: Window, out_dir, settings: MonitorSettings = SETTINGS, reference="published") -> dict:
    model, profile, sample = published
    return run_monitor(window, model=model, version="v0001", profile=profile, out_dir=out_dir, settings=settings,
                       reference=sample if reference == "published" else reference, run_id="r", now=T0)


def test_reversed_correlation_is_a_watch_for_multivariate_drift(published, tmp_path):
    frame, _ = rows(3_000, seed=5, reflect=True)
    result = monitor(published, Window(frame, "rotated", T0, T0), tmp_path)
    assert result["decision"] == "watch"
    assert [r["rule"] for r in result["reasons"]] == ["domain_auc_watch"]       # no PSI rule
    assert max(p["psi"] for p in result["psi"].values()) < 0.1
    mv = result["multivariate"]
    assert mv["status"] == "ok" and mv["drifted"] and mv["auc"] > 0.8 > mv["threshold"] > 0.5
    assert mv["window_rows"] == mv["reference_rows"] == 400 and "random sample of 400" in mv["message"]
    assert "concept_gap: no outcomes in this window" in result["not_checked"]
    page = (tmp_path / "report.html").read_text()
    assert "multivariate: domain classifier ROC-AUC" in page and "multivariate drift: domain classifier" in page
    assert json.loads((tmp_path / "monitor.json").read_text())["multivariate"]["auc"] == pytest.approx(mv["auc"])
    assert {"multivariate", "concept"} <= set(result["stage_seconds"])


def test_outcomes_that_stopped_following_the_scores_are_concept_drift(published, tmp_path):
    frame, y = rows(3_000, seed=6)
    result = monitor(published, Window(frame, "flipped", T0, T0, outcomes=pd.Series(1 - y)), tmp_path)
    rules = [r["rule"] for r in result["reasons"]]
    assert "concept_gap_retrain" in rules and "domain_auc_watch" not in rules
    concept = result["concept"]
    assert concept["gap"] < -0.3 and concept["ci"][1] < 0 and concept["rows"] == 3_000
    assert concept["realised"] == pytest.approx(result["metrics"]["realised"]["roc_auc"])
    assert "concept drift: realised - estimated ROC-AUC" in (tmp_path / "report.html").read_text()


def test_the_same_relation_with_outcomes_is_ok(published, tmp_path):
    frame, y = rows(3_000, seed=7)
    result = monitor(published, Window(frame, "same", T0, T0, outcomes=pd.Series(y)), tmp_path)
    assert result["decision"] == "ok", result["reasons"]
    assert result["concept"]["status"] == "ok" and not result["multivariate"]["drifted"]


@pytest.mark.parametrize("settings, reference, note", [
    (replace(SETTINGS, multivariate=MultivariateSection(enabled=False)), "published",
     "domain_auc: monitoring.multivariate.enabled is false"),
    (SETTINGS, None, "domain_auc: the model version has no reference.parquet"),
])
def test_a_signal_not_measured_is_listed_as_not_checked(published, tmp_path, settings, reference, note):
    frame, _ = rows(600, seed=8, reflect=True)
    result = monitor(published, Window(frame, "w", T0, T0), tmp_path, settings, reference)
    assert note in result["not_checked"] and result["multivariate"]["status"] in ("disabled", "no_reference")


def test_a_window_beyond_exact_rows_is_judged_from_bins_as_it_is_row_by_row(published, tmp_path):
    from tabpipe.monitoring.monitor import window_from_dataset

    frame, y = rows(6_000, seed=9)
    y[:2_000] = 1 - y[:2_000]                                  # some concept drift to measure
    frame.assign(y=y).to_parquet(tmp_path / "window.parquet", row_group_size=1_000)
    window = window_from_dataset(tmp_path / "window.parquet", "y", T0)
    exact = monitor(published, window, tmp_path / "exact")
    binned = monitor(published, window, tmp_path / "binned", replace(SETTINGS, exact_rows=2_500))
    assert "binned" not in exact["metrics"]["realised"] and binned["metrics"]["realised"]["binned"]["bins"] == 65_536
    assert binned["decision"] == exact["decision"] and binned["window"] == exact["window"]
    assert [r["rule"] for r in binned["reasons"]] == [r["rule"] for r in exact["reasons"]]
    e, b = exact["metrics"]["realised"], binned["metrics"]["realised"]
    for key in ("precision", "recall", "f1", "brier", "log_loss", "confusion", "rows", "positives"):
        assert b[key] == pytest.approx(e[key], rel=1e-9), key
    assert abs(b["roc_auc"] - e["roc_auc"]) <= b["binned"]["roc_auc_max_error"] < 1e-3
    assert binned["metrics"]["estimated"]["roc_auc"] == pytest.approx(exact["metrics"]["estimated"]["roc_auc"], abs=1e-3)
    assert binned["metrics"]["estimated"]["expected_confusion"] == pytest.approx(
        exact["metrics"]["estimated"]["expected_confusion"], rel=1e-9)
    assert binned["score_psi"] == exact["score_psi"] and binned["psi"] == exact["psi"]
    assert binned["concept"]["gap"] == pytest.approx(exact["concept"]["gap"], abs=2e-3)
    assert binned["concept"]["ci"] == pytest.approx(exact["concept"]["ci"], abs=0.02)
    assert binned["segments"]["status"] == "not_configured"
    assert (tmp_path / "binned" / "dashboard.png").stat().st_size > 10_000
    assert "computed from score bins" in (tmp_path / "binned" / "report.html").read_text()
    assert "computed from score bins" not in (tmp_path / "exact" / "report.html").read_text()

"""Governance decision table: ok | watch | retrain, every fired rule with observed value, threshold, window, rows."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from tabpipe.config import RulesSection
from tabpipe.monitoring.governance import Observations, decide

W = "2026-11-23..2026-11-30"
DEFAULT = RulesSection()   # monitoring.rules as pipeline.yaml leaves it


def obs(**kw) -> Observations:
    return Observations(window=W, rows=kw.pop("rows", 5000), **kw)


@pytest.mark.parametrize("observations, decision, fired", [
    # nothing wrong
    (obs(roc_auc=0.85, psi={"a": 0.01, "b": 0.05}, drift_share=0.1), "ok", []),
    # PSI watch band [0.1, 0.2)
    (obs(roc_auc=0.85, psi={"a": 0.1, "b": 0.05}, drift_share=0.1), "watch", [("psi_watch", 0.1, 0.1, "a")]),
    (obs(roc_auc=0.85, psi={"a": 0.19999}), "watch", [("psi_watch", 0.19999, 0.1, "a")]),
    # PSI retrain from 0.2 (inclusive); the watch of another feature is reported too, after it
    (obs(roc_auc=0.85, psi={"a": 0.2, "b": 0.15}), "retrain",
     [("psi_retrain", 0.2, 0.2, "a"), ("psi_watch", 0.15, 0.1, "b")]),
    # AUC below 0.70 (strict), realised
    (obs(roc_auc=0.69, psi={"a": 0.0}), "retrain", [("roc_auc_below", 0.69, 0.70, None)]),
    (obs(roc_auc=0.70, psi={"a": 0.0}), "ok", []),
    # no outcomes: the estimate is used
    (obs(estimated_roc_auc=0.6, psi={"a": 0.0}), "retrain", [("roc_auc_below", 0.6, 0.70, None)]),
    # outcomes win over the estimate
    (obs(roc_auc=0.8, estimated_roc_auc=0.6, psi={"a": 0.0}), "ok", []),
    # drift share (inclusive)
    (obs(roc_auc=0.8, psi={"a": 0.0}, drift_share=0.5), "retrain", [("drift_share", 0.5, 0.5, None)]),
    (obs(roc_auc=0.8, psi={"a": 0.0}, drift_share=0.49), "ok", []),
    # insufficient data never fires
    (obs(roc_auc=0.8, psi={"a": None, "b": None}, rows=40), "ok", []),
    # several at once, most severe first
    (obs(roc_auc=0.6, psi={"a": 0.5, "b": 0.12}, drift_share=0.6), "retrain",
     [("roc_auc_below", 0.6, 0.70, None), ("psi_retrain", 0.5, 0.2, "a"), ("drift_share", 0.6, 0.5, None),
      ("psi_watch", 0.12, 0.1, "b")]),
])
def test_decision_table(observations, decision, fired):
    result = decide(observations, DEFAULT)
    assert result.decision == decision
    assert [(r.rule, r.observed, r.threshold, r.feature) for r in result.reasons] == [
        (rule, pytest.approx(o), t, f) for rule, o, t, f in fired]
    for r in result.reasons:
        assert r.window == W and r.rows == observations.rows and W in r.message


def test_reason_says_whether_auc_was_estimated():
    result = decide(obs(estimated_roc_auc=0.6), DEFAULT)
    assert "estimated ROC-AUC 0.6000 < 0.7" in result.reasons[0].message
    assert "realised" in decide(obs(roc_auc=0.6), DEFAULT).reasons[0].message


@pytest.mark.parametrize("observations, note", [
    (obs(), "roc_auc_below: no ROC-AUC"),
    (obs(roc_auc=0.8, psi={"a": None}), "psi: no feature has enough rows"),
    (obs(roc_auc=0.8, psi={"a": 0.0, "b": None}), "psi: insufficient data for b"),
    (obs(roc_auc=0.8), "drift_share: no drift share"),
    (obs(roc_auc=float("nan")), "roc_auc_below: no ROC-AUC"),
])
def test_rules_that_could_not_be_checked_are_listed(observations, note):
    assert any(n.startswith(note) for n in decide(observations, DEFAULT).not_checked)


CLEAN = {"roc_auc": 0.85, "psi": {"a": 0.01}, "drift_share": 0.0}


@pytest.mark.parametrize("signals, decision, fired", [
    # multivariate: watch strictly above the window's calibrated threshold; retrain is off by default (1.0)
    ({"domain_auc": 0.61, "domain_auc_threshold": 0.55}, "watch", [("domain_auc_watch", 0.61, 0.55)]),
    ({"domain_auc": 0.55, "domain_auc_threshold": 0.55}, "ok", []),
    ({"domain_auc": 0.99, "domain_auc_threshold": 0.55}, "watch", [("domain_auc_watch", 0.99, 0.55)]),
    # concept: |gap| over the tolerance AND an interval that excludes 0
    ({"concept_gap": -0.05, "concept_gap_ci": (-0.07, -0.03)}, "watch", [("concept_gap_watch", -0.05, 0.03)]),
    ({"concept_gap": 0.05, "concept_gap_ci": (0.02, 0.08)}, "watch", [("concept_gap_watch", 0.05, 0.03)]),
    ({"concept_gap": -0.12, "concept_gap_ci": (-0.15, -0.09)}, "retrain", [("concept_gap_retrain", -0.12, 0.10)]),
    ({"concept_gap": -0.05, "concept_gap_ci": (-0.11, 0.01)}, "ok", []),          # interval holds 0
    ({"concept_gap": -0.02, "concept_gap_ci": (-0.025, -0.015)}, "ok", []),       # within the tolerance
])
def test_multivariate_and_concept_rules(signals, decision, fired):
    result = decide(obs(**CLEAN, **signals), DEFAULT)
    assert result.decision == decision
    assert [(r.rule, r.observed, r.threshold) for r in result.reasons] == [
        (rule, pytest.approx(o), pytest.approx(t)) for rule, o, t in fired]


def test_domain_auc_retrain_when_configured():
    rules = RulesSection(retrain_domain_auc_above=0.9)
    result = decide(obs(**CLEAN, domain_auc=0.95, domain_auc_threshold=0.55), rules)
    assert [(r.rule, r.level) for r in result.reasons] == [("domain_auc_retrain", "retrain")]
    assert "domain classifier ROC-AUC 0.9500 > 0.9" in result.reasons[0].message


def test_signals_not_measured_say_why():
    notes = decide(obs(**CLEAN, domain_auc_note="the model version has no reference.parquet",
                       concept_gap_note="no outcomes in this window"), DEFAULT).not_checked
    assert "domain_auc: the model version has no reference.parquet" in notes
    assert "concept_gap: no outcomes in this window" in notes


def test_custom_rules():
    rules = RulesSection(retrain_roc_auc_below=0.9, retrain_psi_at_least=0.5, watch_psi_at_least=0.3,
                  retrain_drift_share_at_least=0.9)
    assert decide(obs(roc_auc=0.85), rules).decision == "retrain"
    assert decide(obs(roc_auc=0.95, psi={"a": 0.3}), rules).decision == "watch"
    assert decide(obs(roc_auc=0.95, psi={"a": 0.29}, drift_share=0.8), rules).decision == "ok"


@pytest.mark.parametrize("kwargs, message", [
    ({"watch_psi_at_least": 0.3}, "must not exceed"),
    ({"watch_concept_gap_at_least": 0.2}, "watch_concept_gap_at_least must not exceed"),
    ({"retrain_domain_auc_above": 0.4}, r"retrain_domain_auc_above\n.*greater than or equal to 0.5"),
    ({"retrain_roc_auc_below": -1}, r"retrain_roc_auc_below\n.*greater than or equal to 0"),
    ({"retrain_psi_at_least": float("inf")}, r"retrain_psi_at_least\n.*finite number"),
    ({"watch_psi_at_least": float("nan")}, r"watch_psi_at_least\n.*finite number"),
])
def test_bad_rules_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        RulesSection(**kwargs)


def test_as_dict_is_json_ready():
    import json

    doc = decide(obs(roc_auc=0.6, psi={"a": 0.3}), DEFAULT).as_dict()
    assert json.loads(json.dumps(doc))["reasons"][0] == {
        "rule": "roc_auc_below", "level": "retrain", "observed": 0.6, "threshold": 0.7, "window": W, "rows": 5000,
        "feature": None, "message": f"realised ROC-AUC 0.6000 < 0.7 (window {W}, 5000 rows)"}

"""Model card pieces: the data source as the card shows it (no password, no folder), the diff of two cards."""
import pytest

from tabpipe.reports.model_card import card_diff
from tabpipe.training.card import describe_source


def test_source_is_redacted_and_paths_reduced_to_file_names():
    sql = describe_source({"type": "sql", "url": "postgresql://etl:s3cr3t@db:5432/kpis", "query": "select 1"})
    assert "s3cr3t" not in str(sql) and sql["url"].startswith("postgresql://etl:") and sql["query"] == "select 1"
    mongo = describe_source({"type": "mongodb", "uri_env": "MONGODB_URI", "database": "d", "collection": "c"})
    assert mongo["uri_env"] == "MONGODB_URI"          # the variable's name, never its value
    assert describe_source({"type": "file", "path": "/home/me/secret-project/rows.csv"})["path"] == "rows.csv"


def test_card_diff_lists_changed_leaves_only():
    old = {"version": "v0001", "gate": {"previous_version": None, "accepted": True},
           "segments": {"segments": [{"segment": "A", "rows": 10}, {"segment": "B", "rows": 5}]}}
    new = {"version": "v0002", "gate": {"previous_version": "v0001", "accepted": True},
           "segments": {"segments": [{"segment": "A", "rows": 10}, {"segment": "B", "rows": 7}]}}
    assert card_diff(old, new) == [("gate.previous_version", None, "v0001"),
                                   ("segments.segments[1].rows", 5, 7), ("version", "v0001", "v0002")]
    assert card_diff(new, new) == []


def _blessing(**extra):
    new = {"roc_auc": 0.9, "pr_auc": 0.5, "f1": 0.4, "precision": 0.5, "recall": 0.3, "threshold": 0.4,
           "positives": 20, "rows": 400}
    return {"accepted": True, "reason": "first model", "metric": "roc_auc", "min_score": 0.6, "min_improvement": 0.0,
            "new": new, "production_version": None, "production": None, "new_on_compared_rows": None,
            "compared_rows": None, "segments": None, "worst_slices": None, "intervals": None, **extra}


def _card(blessing):
    from types import SimpleNamespace

    from tabpipe.training.card import build_card, sensitive_handling
    from tabpipe.schema import Schema

    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
        "x": {"type": "float"}, "email": {"type": "category", "sensitive": True}}})
    validation = SimpleNamespace(n_train=1600, n_test=400, rows_dropped=0, drift_status="no_reference",
                                 drift_share=None, rows_with_warnings=3, warning_counts={"x": {"range": 3}},
                                 integrity_counts={"duplicate_rows": 1})
    trainer = SimpleNamespace(best_candidate="logreg", best_resampling="none", cv_score=0.88, threshold=0.4,
                              configs_tried=4)
    context = {"model_card": {"owner": None, "intended_use": None, "limitations": []},
               "source": describe_source({"type": "file", "path": "/data/rows.csv"}),
               "sensitive": sensitive_handling(schema, "hash", "TABPIPE_HASH_KEY")}
    return build_card(version="v0001", created_at="2026-12-07T06:00:00+00:00", run_id="r1", blessing=blessing,
                      validation=validation, trainer=trainer, ingestion_metadata={"data_fingerprint": "a" * 64,
                                                                                  "rows": 2000},
                      context=context, features=schema.features, target=schema.target.model_dump(mode="json"))


def test_card_carries_what_evaluation_adds_and_satisfies_its_schema():
    import jsonschema

    from tabpipe.reports.model_card import card_schema, render_html, render_text

    plain = _card(_blessing())
    jsonschema.validate(plain, card_schema())
    assert plain["calibration"] is None and plain["evaluation"] == {}
    assert plain["sensitive_columns"]["columns"] == ["email"]
    blessing = _blessing(calibration={"method": "isotonic", "fitted_on": "out-of-fold"},
                         importance={"x": {"mean": 0.1, "ci": [0.05, 0.15]}})
    blessing["new"].update(ece=0.012, brier=0.05, log_loss=0.2)
    card = _card(blessing)
    jsonschema.validate(card, card_schema())
    assert card["calibration"] == {"ece": 0.012, "brier": 0.05, "log_loss": 0.2, "method": "isotonic",
                                   "fitted_on": "out-of-fold"}
    assert card["evaluation"] == {"importance": {"x": {"mean": 0.1, "ci": [0.05, 0.15]}}}
    page = render_html(card)
    assert "id='calibration'" in page and "importance" in page and "email" in page
    assert "calibration ece: 0.0120" in render_text(card)
    broken = dict(card, gate=dict(card["gate"], accepted="yes"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, card_schema())

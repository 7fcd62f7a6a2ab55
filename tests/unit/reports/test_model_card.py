"""Model card pieces: the data source as the card shows it (no password, no folder), the diff of two cards."""
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

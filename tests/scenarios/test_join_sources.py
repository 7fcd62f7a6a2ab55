"""Joined sources end to end: the loan-default example's four tables (applications CSV, outcomes Parquet,
bureau reports in SQLite via the SQL source, payments CSV or MongoDB via mongomock) joined point in time,
trained with `tabpipe train`, traced with `tabpipe lineage`; a resumed run refuses a changed part.

The bureau table holds planted future records (collections reports, scores 300-349, filed after a
default): a model that saw them would know the label. The tests check that no joined record is stamped
at or after its row's label time, in the table the run actually trained on.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import mongomock
import pandas as pd
import pytest
import sqlalchemy
import yaml
from helpers import CHEAP_MODELS, TABPIPE_BIN, read_run_json, stage_dir
from mongomock.store import ServerStore
from pg_server import postgres_url_fixture  # noqa: F401  (session fixture `postgres_url`)

from tabpipe.config import load_settings
from tabpipe.schema import infer_schema
from tabpipe.sources import push_to_mongo, read_source
from tabpipe.sources.loan_sample import COLLECTIONS_SCORES, generate_loans
from tabpipe.training.components.ingestion import fingerprint
from tabpipe.training.pipeline import TrainingPipeline
from tabpipe.training.run import RunFolderError

MONGO_URI_ENV, MONGO_URI = "TABPIPE_TEST_LOANS_URI", "mongodb://localhost:27017/"
KEY_ENV, KEY = "TABPIPE_TEST_HASH_KEY", "test-key-not-a-secret"
PAYMENTS_FILE = {"type": "file", "path": "payments.csv"}
PAYMENTS_MONGO = {"type": "mongodb", "uri_env": MONGO_URI_ENV, "database": "loans", "collection": "payments"}


def join_source(payments: dict) -> dict:
    """The example's source section (docs/joins.md), with ``payments`` read from a file or MongoDB."""
    return {
        "type": "join",
        "base": {"type": "file", "path": "applications.csv"},
        "label_time": "applied_at",
        "joins": [
            {"name": "outcome", "source": {"type": "file", "path": "outcomes.parquet"}, "on": ["application_id"],
             "how": "inner"},
            {"name": "bureau", "source": {"type": "sql", "url": "sqlite:///bureau.db",
                                          "query": "SELECT * FROM bureau"},
             "on": ["applicant_id"], "as_of": {"column": "reported_at", "tolerance": "365d"}},
            {"name": "payments", "source": payments, "on": ["applicant_id"],
             "as_of": {"column": "paid_at", "tolerance": "180d"},
             "aggregate": {"amount": ["sum"], "days_late": ["mean", "max", "last"]}},
        ],
    }


def write_tables(root: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    tables = generate_loans(1000, seed=seed)
    tables["applications"].to_csv(root / "applications.csv", index=False)
    tables["outcomes"].to_parquet(root / "outcomes.parquet", index=False)
    tables["payments"].to_csv(root / "payments.csv", index=False)
    engine = sqlalchemy.create_engine(f"sqlite:///{root / 'bureau.db'}")
    try:
        tables["bureau"].to_sql("bureau", engine, index=False, if_exists="replace")
    finally:
        engine.dispose()
    return tables


def loan_project(root: Path, *, payments: dict = PAYMENTS_FILE, sensitive: tuple[str, ...] = ()) -> Path:
    """The four tables, schema.yaml inferred on their join, the cheap models and pipeline.yaml; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    write_tables(root)
    source = join_source(PAYMENTS_FILE)
    schema = infer_schema(read_source(source, root, environ={}), "default").model_dump(mode="json", exclude_defaults=True)
    for name in sensitive:
        schema["columns"][name]["sensitive"] = True
    (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(CHEAP_MODELS, sort_keys=False))
    doc = {
        "source": join_source(payments), "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0}, "split": {"test_size": 0.2},
        "validation": {"drift": {"enabled": False}},
        "transformation": {"resampling": "none"},
        "training": {"models": "model.yaml", "cv_folds": 3, "metric": "roc_auc", "time_budget_s": 60, "n_jobs": 1,
                     "min_cv_score": 0.0, "search_rounds": 1, "ensemble_size": 1},
        # max_chance_p off: ~20 positives in the test split cannot show the model better than chance
        "evaluation": {"metric": "roc_auc", "min_score": 0.6, "min_improvement": 0.0, "max_chance_p": None},
        "registry": {"backend": "local", "path": "registry"},
        **({"monitoring": {"sensitive": "hash", "hash_key_env": KEY_ENV}} if sensitive else {}),
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(TABPIPE_BIN), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_point_in_time(table: pd.DataFrame, applications: pd.DataFrame) -> None:
    """No bureau report joined to a row is stamped at or after its label time; the collections report of
    a row's own default (always after the application) never reaches it."""
    label = pd.to_datetime(table["applied_at"], format="ISO8601")
    seen = pd.to_datetime(table["reported_at"], format="ISO8601")
    assert seen.notna().sum() > len(table) // 3            # the join did bring reports
    assert (seen[seen.notna()] < label[seen.notna()]).all()
    once = applications["applicant_id"].value_counts().loc[lambda n: n == 1].index
    own = table[table["applicant_id"].isin(once)]
    assert not own["bureau_score"].between(*COLLECTIONS_SCORES, inclusive="left").any()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The file + SQL project trained once with `tabpipe train` (v0001)."""
    config = loan_project(tmp_path_factory.mktemp("loans"))
    cli("train", "--config", config)
    return config


def test_train_on_four_joined_tables_sees_only_the_past(trained):
    run_dir = sorted(p for p in (trained.parent / "artifacts").iterdir() if p.is_dir())[-1]
    record = read_run_json(run_dir)
    assert record["status"] == "succeeded" and record["model_version"] == "v0001"
    raw = pd.read_parquet(stage_dir(run_dir, "ingestion") / "raw.parquet")
    applications = pd.read_csv(trained.parent / "applications.csv")
    assert len(raw) == len(applications)                                   # every application has an outcome
    assert {"bureau_score", "bureau_amount", "payments_days_late_last", "payments_count"} <= set(raw.columns)
    assert_point_in_time(raw, applications)
    # the planted future records are there to be found: a join on the latest report would have used them
    bureau = pd.read_sql_table("bureau", f"sqlite:///{trained.parent / 'bureau.db'}")
    late = bureau.merge(applications, on="applicant_id")
    assert (pd.to_datetime(late["reported_at"]) >= pd.to_datetime(late["applied_at"])).sum() > 1000


def test_run_json_and_lineage_give_each_part_rows_and_fingerprint(trained):
    run_dir = sorted(p for p in (trained.parent / "artifacts").iterdir() if p.is_dir())[-1]
    parts = read_run_json(run_dir)["stages"]["ingestion"]["artifact"]["sources"]
    settings = load_settings(trained)
    source = settings.pipeline.source
    expected = {"base": read_source(source.base, trained.parent, environ={})}
    expected |= {join.name: read_source(join.source, trained.parent, environ={}) for join in source.joins}
    assert [p["name"] for p in parts] == ["base", "outcome", "bureau", "payments"]
    for part in parts:
        assert part["rows"] == len(expected[part["name"]])
        assert part["fingerprint"] == fingerprint(expected[part["name"]])
    assert parts[1]["matched_rows"] == parts[0]["rows"] and 0 < parts[2]["matched_rows"] < parts[0]["rows"]
    assert parts[2]["source"] == "sql sqlite:///" + str(trained.parent / "bureau.db") + ": SELECT * FROM bureau"

    document = json.loads(cli("lineage", "v0001", "--config", trained, "--json").stdout)
    assert document["training"]["sources"] == parts
    assert document["training"]["source"].startswith(f"join of base = file {trained.parent / 'applications.csv'}; ")
    text = cli("lineage", "v0001", "--config", trained).stdout
    for part in parts:
        assert f"{part['name']}: {part['rows']} rows" in text and part["fingerprint"] in text


def test_mongodb_part_joins_like_the_file(tmp_path, monkeypatch):
    """Payments read from MongoDB (mongomock) give the same joined table as from the CSV file."""
    import tabpipe.sources.mongodb as mongodb_reader

    store = ServerStore()
    factory = functools.partial(mongomock.MongoClient, _store=store)
    monkeypatch.setattr(mongodb_reader, "default_client_factory", lambda: factory)
    monkeypatch.setenv(MONGO_URI_ENV, MONGO_URI)
    config = loan_project(tmp_path, payments=PAYMENTS_MONGO)
    payments = pd.read_csv(tmp_path / "payments.csv", parse_dates=["paid_at"])
    assert push_to_mongo(payments, MONGO_URI, "loans", "payments", client_factory=factory) == len(payments)
    run = TrainingPipeline(load_settings(config), environ=os.environ).run(run_name="mongo", until="ingestion")
    artifact = read_run_json(run.dir)["stages"]["ingestion"]["artifact"]
    assert artifact["sources"][3]["source"].startswith("mongodb loans.payments (URI from $TABPIPE_TEST_LOANS_URI)")
    from_mongo = pd.read_parquet(artifact["raw_path"])
    from_file = read_source(join_source(PAYMENTS_FILE), tmp_path, environ={})
    columns = ["payments_count", "payments_amount_sum", "payments_days_late_mean", "payments_days_late_max",
               "payments_days_late_last"]
    pd.testing.assert_frame_equal(from_mongo[columns], from_file[columns], check_dtype=False)
    assert_point_in_time(from_mongo, pd.read_csv(tmp_path / "applications.csv"))


def test_resume_refuses_a_changed_part_and_names_it(tmp_path):
    """A run whose rows are kept in memory (a sensitive column) reads its source again when resumed: a
    payments table changed since, even by records no row may see (future ones), stops it, naming payments."""
    config = loan_project(tmp_path, sensitive=("income",))
    settings, environ = load_settings(config), {**os.environ, KEY_ENV: KEY}
    TrainingPipeline(settings, environ=environ).run(run_name="nightly", until="transformation")
    first = read_run_json(tmp_path / "artifacts" / "nightly")
    payments = pd.read_csv(tmp_path / "payments.csv")
    future = payments.head(3).assign(paid_at="2031-01-01 00:00:00", days_late=999)
    pd.concat([payments, future]).to_csv(tmp_path / "payments.csv", index=False)
    assert fingerprint(read_source(settings.pipeline.source, tmp_path, environ={})) == first["data_fingerprint"]
    for _ in range(2):   # and again: the failed attempt did not adopt the new table
        with pytest.raises(RunFolderError, match=r"source part\(s\) changed since .*: payments \(") as caught:
            TrainingPipeline(settings, environ=environ).run(run_name="nightly")
        assert "bureau" not in str(caught.value) and "base" not in str(caught.value)
    assert read_run_json(tmp_path / "artifacts" / "nightly")["source_fingerprints"] == first["source_fingerprints"]


def test_postgres_part_with_time_zones_joins_on_the_same_instants(postgres_url, tmp_path, monkeypatch):
    """The bureau in a real PostgreSQL, its times as timestamptz written in Paris time: the join compares
    instants (naive times are UTC), so it picks the same reports as from the naive UTC times in SQLite."""
    tables = write_tables(tmp_path)
    bureau = tables["bureau"].assign(reported_at=tables["bureau"]["reported_at"].dt.tz_localize("UTC")
                                     .dt.tz_convert("Europe/Paris"))
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        bureau.to_sql("loan_bureau", engine, index=False, if_exists="replace")
    finally:
        engine.dispose()
    monkeypatch.setenv("TABPIPE_TEST_PG_URL", postgres_url)
    source = join_source(PAYMENTS_FILE)
    from_sqlite = read_source(source, tmp_path, environ={})
    source["joins"][1]["source"] = {"type": "sql", "url_env": "TABPIPE_TEST_PG_URL", "query": "SELECT * FROM loan_bureau"}
    from_postgres = read_source(source, tmp_path, environ=os.environ)
    assert from_postgres["reported_at"].dt.tz is not None                    # PostgreSQL gave zoned times
    columns = ["bureau_score", "open_loans", "bureau_amount"]
    pd.testing.assert_frame_equal(from_postgres[columns], from_sqlite[columns], check_dtype=False)
    assert from_postgres["bureau_score"].notna().sum() > len(from_postgres) // 3

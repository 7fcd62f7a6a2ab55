"""The ``tabpipe`` command line: init -> train -> predict, models list/promote, data generate, --help."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

import tabpipe  # noqa: F401
from helpers import TABPIPE_BIN, make_project, read_run_json, registry_of, run_dirs, stage_dir
from tabpipe.cli import app
from tabpipe.sources.sample import generate

runner = CliRunner()
WIDE = {**os.environ, "COLUMNS": "400"}


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return text.replace("\n", "")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """No terminal line wrapping in captured output (rich reads COLUMNS on every print)."""
    monkeypatch.setenv("COLUMNS", "400")


# --------------------------------------------------------------------------- init -> train (defaults) -> predict

@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory) -> Path:
    """A user's CSV: string target yes/no, NaNs, category columns, a date column, an id column."""
    root = tmp_path_factory.mktemp("user")
    df = generate(500, seed=5, shift=1.0).rename(columns={"fault_flag": "churn", "timestamp": "measured_at"})
    df["churn"] = df["churn"].map({1: "yes", 0: "no"})
    df["measured_at"] = df["measured_at"].dt.strftime("%Y-%m-%d %H:%M")
    assert df.isna().any().any()
    path = root / "kpis.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(churn_csv):
    """`tabpipe init` then `tabpipe train` (a real process) with the generated files, unedited."""
    project = churn_csv.parent / "project"
    result = invoke("init", "--data", churn_csv, "--target", "churn", "--dir", project)
    assert result.exit_code == 0, result.output
    config = project / "pipeline.yaml"
    proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                          cwd=churn_csv.parent, env=WIDE, timeout=400)
    return SimpleNamespace(project=project, config=config, init=result, proc=proc, data=pd.read_csv(churn_csv),
                           root=churn_csv.parent)


def test_init_writes_editable_config(trained):
    for name in ("pipeline.yaml", "schema.yaml", "model.yaml"):
        assert (trained.project / name).is_file()
        assert f"wrote {trained.project / name}" in flat(trained.init.output)
    text = (trained.project / "schema.yaml").read_text()
    assert "# The first `role: id` column is what labels (`tabpipe outcomes`, POST /outcomes) are joined on" in text
    schema = yaml.safe_load(text)
    assert schema["target"] == {"name": "churn", "positive": "yes"}
    cols = schema["columns"]
    assert cols["cell_id"]["role"] == "id"
    assert next(name for name, c in cols.items() if c.get("role") == "id") == "measurement_id"   # the join key
    assert cols["measured_at"]["type"] == "datetime"
    assert cols["region"]["type"] == "category" and cols["vendor"].get("nullable", True) is True
    assert cols["region"]["nullable"] is False
    assert cols["sinr_db"]["type"] == "float" and cols["active_users"]["type"] == "int"
    pipeline = yaml.safe_load(trained.config.read_text())
    assert pipeline["transformation"]["resampling"] == "smotetomek"
    assert pipeline["training"]["search_rounds"] == 4 and pipeline["training"]["ensemble_size"] == 10
    assert (trained.project / pipeline["source"]["path"]).resolve() == (trained.root / "kpis.csv").resolve()


def test_train_with_generated_config_exit_0(trained):
    assert trained.proc.returncode == 0, trained.proc.stdout + trained.proc.stderr
    assert "model accepted" in trained.proc.stdout
    (run_dir,) = run_dirs(trained.config)
    rec = read_run_json(run_dir)
    assert rec["status"] == "succeeded" and rec["accepted"] is True and rec["model_version"] == "v0001"
    assert rec["config"]["pipeline"]["transformation"]["resampling"] == "smotetomek"   # the default
    assert rec["config"]["pipeline"]["training"]["cv_folds"] == 5
    results = json.loads((stage_dir(run_dir, "trainer") / "cv_results.json").read_text())
    assert {r["round"] for r in results} == {1, 2, 3, 4}   # 500 rows: init's budget allows every round
    assert f"run folder: {run_dir}" in flat(trained.proc.stdout)
    log = (run_dir / "run.log").read_text()
    assert "stage ingestion started" in log and "stage pusher done" in log
    assert registry_of(trained.config).production_version() == "v0001"


def features_csv(trained, path: Path, rows: int = 40, keep_target: bool = False) -> pd.DataFrame:
    df = trained.data.head(rows)
    if not keep_target:
        df = df.drop(columns=["churn"])
    df.to_csv(path, index=False)
    return df


def test_predict_writes_rows_in_order(trained, tmp_path):
    assert trained.proc.returncode == 0
    inp = features_csv(trained, tmp_path / "in.csv")
    out = tmp_path / "scored" / "out.csv"
    result = invoke("predict", "--input", tmp_path / "in.csv", "--output", out, "--config", trained.config)
    assert result.exit_code == 0, result.output
    assert "scored 40 of 40 rows" in flat(result.output)
    scored = pd.read_csv(out)
    assert len(scored) == len(inp) == 40
    assert list(scored.columns) == list(inp.columns) + ["prediction", "probability", "score", "warnings", "error"]
    assert scored["warnings"].isna().all() and scored["error"].isna().all()
    model, _ = registry_of(trained.config).load_model(registry_of(trained.config).production_version())
    np.testing.assert_allclose(scored["probability"], model.calibrate(scored["score"].to_numpy()), rtol=0, atol=1e-12)
    assert scored["measurement_id"].tolist() == inp["measurement_id"].tolist()
    assert scored["measured_at"].tolist() == inp["measured_at"].tolist()
    assert set(scored["prediction"]) <= {"yes", "no"} and scored["prediction"].notna().all()
    assert scored["probability"].between(0, 1).all()
    model, _ = registry_of(trained.config).load_model()
    assert scored["probability"].to_numpy() == pytest.approx(model.predict_proba(inp))
    assert (scored["prediction"] == np.where(scored["probability"] >= model.threshold, "yes", "no")).all()


def test_predict_ignores_target_column(trained, tmp_path):
    assert trained.proc.returncode == 0
    features_csv(trained, tmp_path / "plain.csv")
    with_target = features_csv(trained, tmp_path / "with_target.csv", keep_target=True)
    assert invoke("predict", "-i", tmp_path / "plain.csv", "-o", tmp_path / "a.csv", "-c", trained.config).exit_code == 0
    result = invoke("predict", "-i", tmp_path / "with_target.csv", "-o", tmp_path / "b.csv", "-c", trained.config)
    assert result.exit_code == 0, result.output
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert b["churn"].tolist() == with_target["churn"].tolist()
    assert a["prediction"].tolist() == b["prediction"].tolist()
    assert a["probability"].to_numpy() == pytest.approx(b["probability"].to_numpy())


def test_predict_reports_invalid_rows_and_scores_the_rest(trained, tmp_path):
    assert trained.proc.returncode == 0
    features_csv(trained, tmp_path / "good.csv", rows=10)
    df = trained.data.head(10).drop(columns=["churn"])
    df["latency_ms"] = df["latency_ms"].astype(object)
    df.loc[3, "latency_ms"] = "slow"
    df.to_csv(tmp_path / "bad.csv", index=False)
    assert invoke("predict", "-i", tmp_path / "good.csv", "-o", tmp_path / "good_out.csv", "-c", trained.config).exit_code == 0
    result = invoke("predict", "-i", tmp_path / "bad.csv", "-o", tmp_path / "bad_out.csv", "-c", trained.config)
    assert result.exit_code == 1
    assert "1 row could not be scored" in result.output and "latency_ms" in result.output
    assert "Traceback" not in result.output
    good = pd.read_csv(tmp_path / "good_out.csv")
    bad = pd.read_csv(tmp_path / "bad_out.csv")
    text = pd.read_csv(tmp_path / "bad_out.csv", dtype=str, keep_default_na=False)
    assert len(bad) == 10 and bad["measurement_id"].tolist() == good["measurement_id"].tolist()
    assert text.loc[3, "prediction"] == "" and text.loc[3, "probability"] == ""
    assert "latency_ms" in bad.loc[3, "error"] and "not a number" in bad.loc[3, "error"]
    assert text.loc[3, "latency_ms"] == "slow"                       # the input row is echoed as given
    others = [i for i in range(10) if i != 3]
    assert bad.loc[others, "error"].isna().all()
    assert bad.loc[others, "prediction"].tolist() == good.loc[others, "prediction"].tolist()
    assert bad.loc[others, "probability"].to_numpy() == pytest.approx(good.loc[others, "probability"].to_numpy())


def test_predict_expectations_warn_and_score_every_row(trained, tmp_path):
    """init's inferred ranges, category lists and never-missing columns are expectations: the rows are
    scored as they are (exit 0), each named in the 'warnings' column, counts printed per column/rule."""
    assert trained.proc.returncode == 0
    schema = yaml.safe_load((trained.project / "schema.yaml").read_text())["columns"]
    assert schema["latency_ms"].get("nullable", True) is False and "max" in schema["latency_ms"]
    df = trained.data.head(12).drop(columns=["churn"]).reset_index(drop=True)
    df.loc[2, "latency_ms"] = schema["latency_ms"]["max"] * 2        # twice the inferred maximum
    df.loc[5, "region"] = "atlantis"                                 # a category never seen
    df.loc[8, "latency_ms"] = np.nan                                 # a new missing value
    df.to_csv(tmp_path / "drifted.csv", index=False)
    result = invoke("predict", "-i", tmp_path / "drifted.csv", "-o", tmp_path / "out.csv", "-c", trained.config)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "scored 12 of 12 rows" in text and "3 rows scored with warnings" in text
    assert "latency_ms range 1" in text and "latency_ms null 1" in text and "region category 1" in text
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["probability"].notna().all() and scored["error"].isna().all()
    assert "latency_ms (range): is above the maximum" in scored.loc[2, "warnings"]
    assert "region (category): is not one of the listed categories" in scored.loc[5, "warnings"]
    assert "latency_ms (null): is missing" in scored.loc[8, "warnings"]
    assert scored["warnings"].notna().sum() == 3
    model, _ = registry_of(trained.config).load_model()
    assert scored["probability"].to_numpy() == pytest.approx(model.predict_proba(df))   # scored as they are


def test_predict_absent_column_is_one_error_and_no_output(trained, tmp_path):
    assert trained.proc.returncode == 0
    df = trained.data.head(50).drop(columns=["churn", "latency_ms", "region"])
    df.to_csv(tmp_path / "short.csv", index=False)
    result = invoke("predict", "-i", tmp_path / "short.csv", "-o", tmp_path / "out.csv", "-c", trained.config)
    assert result.exit_code == 1
    text = flat(result.output)
    assert "has no columns latency_ms, region" in text or "has no columns region, latency_ms" in text
    assert text.count("latency_ms") == 1 and "Traceback" not in text
    assert not (tmp_path / "out.csv").exists()


def test_predict_huge_number_in_a_category_column_is_no_traceback(trained, tmp_path):
    assert trained.proc.returncode == 0
    df = trained.data.head(5).drop(columns=["churn"]).astype(object)
    df.loc[1, "region"] = 1e300
    df.loc[2, "vendor"] = "1e300"
    df.to_csv(tmp_path / "odd.csv", index=False)
    result = invoke("predict", "-i", tmp_path / "odd.csv", "-o", tmp_path / "out.csv", "-c", trained.config)
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["probability"].notna().all() and "region" in scored.loc[1, "warnings"]


def test_predict_model_version_option(trained, tmp_path):
    assert trained.proc.returncode == 0
    features_csv(trained, tmp_path / "in.csv", rows=5)
    ok = invoke("predict", "-i", tmp_path / "in.csv", "-o", tmp_path / "o.parquet", "-c", trained.config,
                "--model-version", "v0001")
    assert ok.exit_code == 0 and "model v0001" in ok.output
    scored = pd.read_parquet(tmp_path / "o.parquet")
    assert len(scored) == 5 and set(scored["prediction"]) <= {"yes", "no"} and scored["probability"].between(0, 1).all()
    missing = invoke("predict", "-i", tmp_path / "in.csv", "-o", tmp_path / "o2.csv", "-c", trained.config,
                     "--model-version", "v0042")
    assert missing.exit_code == 1 and "v0042 not found" in flat(missing.output)
    assert not (tmp_path / "o2.csv").exists()


def test_init_refuses_to_overwrite(trained):
    before = (trained.project / "schema.yaml").read_text()
    result = invoke("init", "--data", trained.root / "kpis.csv", "--target", "churn", "--dir", trained.project)
    assert result.exit_code == 2 and "already exists" in flat(result.output)
    assert (trained.project / "schema.yaml").read_text() == before


def test_init_unknown_target_and_non_binary_target(tmp_path):
    df = generate(60, seed=0)
    df["three"] = np.arange(60) % 3
    df.to_csv(tmp_path / "d.csv", index=False)
    result = invoke("init", "--data", tmp_path / "d.csv", "--target", "nope", "--dir", tmp_path / "p")
    assert result.exit_code == 1 and "no column 'nope'" in flat(result.output) and "fault_flag" in result.output
    result = invoke("init", "--data", tmp_path / "d.csv", "--target", "three", "--dir", tmp_path / "p")
    assert result.exit_code == 1 and "exactly two classes" in flat(result.output)
    assert not (tmp_path / "p" / "pipeline.yaml").exists()


def test_init_data_path_with_special_characters(tmp_path):
    from tabpipe.config import load_settings

    generate(60, seed=0).to_csv(tmp_path / "kpis #2.csv", index=False)
    result = invoke("init", "--data", tmp_path / "kpis #2.csv", "--target", "fault_flag", "--dir", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert load_settings(tmp_path / "p" / "pipeline.yaml").pipeline.source.path == tmp_path / "kpis #2.csv"


# --------------------------------------------------------------------------- models list / promote

@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """A cheap project trained twice through the CLI, both accepted: the second run (same data, so a tie
    with production) tolerates any regression with ``min_improvement: -1``."""
    root = tmp_path_factory.mktemp("twice")
    config = make_project(root, rows=800, seed=4, pipeline={"validation": {"drift": {"enabled": False}}})
    results = [invoke("train", "--config", config)]
    doc = yaml.safe_load(config.read_text())
    doc["evaluation"]["min_improvement"] = -1.0
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    results.append(invoke("train", "--config", config))
    return SimpleNamespace(config=config, results=results, root=root)


def test_two_accepted_runs(two_versions):
    for r in two_versions.results:
        assert r.exit_code == 0, r.output
        assert "model accepted" in r.output
    assert "production model: v0002" in two_versions.results[1].output
    reg = registry_of(two_versions.config)
    assert [v.version for v in reg.list_versions()] == ["v0001", "v0002"]


def test_models_list_and_promote(two_versions):
    reg = registry_of(two_versions.config)
    assert reg.production_version() == "v0002"
    listed = invoke("models", "list", "--config", two_versions.config)
    assert listed.exit_code == 0
    rows = [line for line in listed.output.splitlines() if "v000" in line]
    assert len(rows) == 2
    assert "*" in next(r for r in rows if "v0002" in r) and "*" not in next(r for r in rows if "v0001" in r)
    promoted = invoke("models", "promote", "v0001", "--config", two_versions.config)
    assert promoted.exit_code == 0, promoted.output
    assert "v0002 -> v0001" in promoted.output
    assert reg.production_version() == "v0001"
    relisted = invoke("models", "list", "--config", two_versions.config)
    assert "*" in next(r for r in relisted.output.splitlines() if "v0001" in r)
    # and back again (roll forward)
    assert invoke("models", "promote", "v0002", "--config", two_versions.config).exit_code == 0
    assert reg.production_version() == "v0002"


def test_promote_unknown_version(two_versions):
    before = registry_of(two_versions.config).production_version()
    result = invoke("models", "promote", "v0099", "--config", two_versions.config)
    assert result.exit_code == 1
    assert "v0099 not found" in flat(result.output) and "Traceback" not in result.output
    assert registry_of(two_versions.config).production_version() == before


def test_models_list_empty_registry_and_predict_without_model(tmp_path):
    config = make_project(tmp_path, rows=60)
    result = invoke("models", "list", "--config", config)
    assert result.exit_code == 0 and "registry is empty" in result.output
    generate(5, seed=0).to_csv(tmp_path / "in.csv", index=False)
    result = invoke("predict", "-i", tmp_path / "in.csv", "-o", tmp_path / "out.csv", "-c", config)
    assert result.exit_code == 1 and "no production model" in flat(result.output)


def test_predict_int_labels(two_versions, tmp_path):
    """Original 0/1 labels come back as 0/1 (not 0.0/1.0) even when some rows are invalid."""
    df = generate(8, seed=9).drop(columns=["fault_flag"])
    df["packet_loss_pct"] = df["packet_loss_pct"].astype(object)
    df.loc[1, "packet_loss_pct"] = 150.0  # above the max 100, a hard range in this schema
    df.to_csv(tmp_path / "in.csv", index=False)
    result = invoke("predict", "-i", tmp_path / "in.csv", "-o", tmp_path / "out.csv", "-c", two_versions.config)
    assert result.exit_code == 1
    out = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert pd.isna(out.loc[1, "prediction"]) and "above the maximum" in out.loc[1, "error"]
    assert set(out["prediction"].dropna()) <= {"0", "1"}


# --------------------------------------------------------------------------- stage failures

def test_train_stage_failure_exit_1(tmp_path):
    config = make_project(tmp_path, rows=60)
    (tmp_path / "data.csv").unlink()
    result = invoke("train", "--config", config)
    assert result.exit_code == 1
    assert "training failed" in result.output and "data file not found" in flat(result.output)
    (run_dir,) = run_dirs(config)
    rec = read_run_json(run_dir)
    assert rec["status"] == "failed" and rec["stages"]["ingestion"]["status"] == "failed"
    assert "DataError" in rec["error"] and "Traceback" in (run_dir / "run.log").read_text()


def test_train_stage_failure_prints_no_traceback(tmp_path):
    """The traceback goes to run.log; the console gets the message and the run folder."""
    config = make_project(tmp_path, rows=60)
    (tmp_path / "data.csv").unlink()
    result = invoke("train", "--config", config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (run_dir,) = run_dirs(config)
    assert f"run folder: {run_dir}" in result.output


# --------------------------------------------------------------------------- data generate

def test_data_generate_csv(tmp_path):
    out = tmp_path / "x.csv"
    result = invoke("data", "generate", "--rows", 500, "--out", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "wrote 500 rows" in result.output
    df = pd.read_csv(out)
    assert len(df) == 500 and "fault_flag" in df.columns
    expected = generate(500, seed=3)
    assert df["measurement_id"].tolist() == expected["measurement_id"].tolist()
    assert df["cell_id"].tolist() == expected["cell_id"].tolist()
    assert df["latency_ms"].to_numpy() == pytest.approx(expected["latency_ms"].to_numpy())


def test_data_generate_parquet_shift_and_bad_args(tmp_path):
    out = tmp_path / "sub" / "y.parquet"
    assert invoke("data", "generate", "--rows", 300, "--out", out, "--seed", 1, "--shift", 1.0).exit_code == 0
    df = pd.read_parquet(out)
    pd.testing.assert_frame_equal(df, generate(300, seed=1, shift=1.0), check_dtype=False)
    assert invoke("data", "generate", "--rows", 0, "--out", tmp_path / "z.csv").exit_code == 2
    bad_ext = invoke("data", "generate", "--rows", 10, "--out", tmp_path / "z.txt")
    assert bad_ext.exit_code != 0 and not (tmp_path / "z.txt").exists()


# --------------------------------------------------------------------------- help and usage

def _command_paths(cmd, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if hasattr(cmd, "commands"):  # a group (typer ships its own copy of click)
        for name, sub in cmd.commands.items():
            paths += _command_paths(sub, prefix + (name,))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_expected_commands_exist():
    assert {("train",), ("predict",), ("init",), ("data", "generate"), ("models", "list"),
            ("models", "promote")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "tabpipe")
def test_help_on_every_command(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [
    ["predict", "--output", "x.csv"],          # --input missing
    ["init", "--data", "x.csv"],               # --target missing
    ["models", "promote"],                     # VERSION missing
    ["train", "--no-such-option"],
])
def test_usage_errors_exit_2(args):
    result = invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_real_process_help_and_usage(tmp_path):
    ok = subprocess.run([str(TABPIPE_BIN), "models", "--help"], capture_output=True, text=True, cwd=tmp_path,
                        env=WIDE, timeout=120)
    assert ok.returncode == 0 and "promote" in ok.stdout
    bad = subprocess.run([str(TABPIPE_BIN), "predict"], capture_output=True, text=True, cwd=tmp_path, env=WIDE,
                         timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


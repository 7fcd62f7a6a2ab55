"""`tabpipe predict --input FOLDER`: a partitioned Parquet dataset scored file by file (row group by row group),
here or one task per file on Dask, with the same rows, counts and exit codes as scoring the whole table."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from helpers import make_project, registry_of, run_pipeline, write_dataset
from tabpipe.scoring.batch import score_frame, summary
from tabpipe.cli import app
from tabpipe.scoring.partitions import iter_partitions, partitions, score_dataset
from tabpipe.sources.sample import generate

runner = CliRunner()


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitions")
    config = make_project(root, rows=1500, seed=2, pipeline={"validation": {"drift": {"enabled": False}}})
    run_pipeline(config)
    model, _ = registry_of(config).load_model()
    return SimpleNamespace(config=config, model=model, root=root)


def rows_with_problems(n: int, seed: int) -> pd.DataFrame:
    """Sample rows (no target) with a hard problem (unreadable latency) and expectations broken here and there."""
    df = generate(n, seed=seed).drop(columns=["fault_flag"])
    df["latency_ms"] = df["latency_ms"].astype(object)
    df.loc[3, "latency_ms"] = "slow"                 # hard: no prediction
    df.loc[10, "rsrp_dbm"] = 5.0                     # above the maximum: scored with a warning
    df.loc[n - 1, "region"] = "atlantis"             # unlisted category: a warning
    df["latency_ms"] = df["latency_ms"].astype(str)  # one Parquet type in every file
    return df


def test_iter_partitions_reads_a_row_group_at_a_time_in_order(tmp_path):
    parts = [generate(150, seed=s) for s in range(3)]
    whole = write_dataset(tmp_path / "ds", parts, row_group_size=50)
    frames = list(iter_partitions(tmp_path / "ds"))
    assert [len(f) for f in frames] == [50] * 9
    read = pd.concat(frames, ignore_index=True)
    assert read["measurement_id"].tolist() == whole["measurement_id"].tolist()
    assert read["batch"].tolist() == whole["batch"].tolist()     # the hive key is a column
    single = tmp_path / "one.parquet"
    parts[0].to_parquet(single)
    (frame,) = list(iter_partitions(single))
    assert frame["measurement_id"].tolist() == parts[0]["measurement_id"].tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_folder_scores_like_the_whole_table(trained, tmp_path, suffix):
    parts = [rows_with_problems(200, seed=s) for s in range(4)]
    whole = write_dataset(tmp_path / "ds", parts)
    out = tmp_path / f"scored{suffix}"
    result = score_dataset(trained.model, tmp_path / "ds", out)
    expected, problems = score_frame(trained.model, whole)
    want = summary(problems, len(whole), int(expected["probability"].notna().sum()))
    assert (result.rows, result.scored, result.warning_counts, result.rows_with_warnings) == \
        (want.rows, want.scored, want.warning_counts, want.rows_with_warnings)
    assert result.rows == 800 and result.scored == 796
    assert set(result.errors.splitlines()) == set(want.errors.splitlines())
    got = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert got["measurement_id"].tolist() == whole["measurement_id"].tolist()
    np.testing.assert_allclose(got["probability"].to_numpy(dtype=float), expected["probability"].to_numpy(dtype=float),
                               rtol=0, atol=1e-12)
    assert got["prediction"].isna().tolist() == expected["prediction"].isna().tolist()
    valid = expected["prediction"].notna()
    assert (got["prediction"][valid].astype(int) == expected["prediction"][valid].astype(int)).all()
    assert got["error"].notna().sum() == 4 and got["warnings"].notna().sum() == expected["warnings"].notna().sum()
    assert not out.with_name(out.name + ".part").exists()


def test_cli_predict_folder_exit_codes_and_no_output_on_missing_columns(trained, tmp_path):
    clean = [generate(120, seed=10 + s).drop(columns=["fault_flag"]) for s in range(3)]
    write_dataset(tmp_path / "clean", clean)
    result = invoke("predict", "-i", tmp_path / "clean", "-o", tmp_path / "clean.parquet", "-c", trained.config)
    assert result.exit_code == 0, result.output
    assert "scored 360 of 360 rows" in result.output.replace("\n", "")

    write_dataset(tmp_path / "bad", [rows_with_problems(100, seed=1), rows_with_problems(100, seed=2)])
    result = invoke("predict", "-i", tmp_path / "bad", "-o", tmp_path / "bad.csv", "-c", trained.config)
    assert result.exit_code == 1
    text = result.output.replace("\n", "")
    assert "scored 198 of 200 rows" in text and "2 rows could not be scored" in text and "latency_ms" in text

    short = [clean[0], clean[1].drop(columns=["latency_ms"])]
    write_dataset(tmp_path / "short", short)
    result = invoke("predict", "-i", tmp_path / "short", "-o", tmp_path / "short.csv", "-c", trained.config)
    assert result.exit_code == 1 and "has no column latency_ms" in result.output.replace("\n", "")
    assert "batch=01" in result.output.replace("\n", "")          # names the file
    assert not (tmp_path / "short.csv").exists() and not (tmp_path / "short.csv.part").exists()

    (tmp_path / "empty").mkdir()
    result = invoke("predict", "-i", tmp_path / "empty", "-o", tmp_path / "none.csv", "-c", trained.config)
    assert result.exit_code == 1 and "no .parquet file" in result.output


def test_cli_predict_folder_on_dask_gives_the_same_output(trained, tmp_path):
    """``training.executor.type: dask`` with no address: a LocalCluster of 2 worker processes, one task per file."""
    parts = [rows_with_problems(150, seed=20 + s) for s in range(5)]
    write_dataset(tmp_path / "ds", parts)
    local = score_dataset(trained.model, tmp_path / "ds", tmp_path / "local.parquet")
    doc = yaml.safe_load(trained.config.read_text())
    doc["training"]["executor"] = {"type": "dask", "n_workers": 2}
    config = trained.config.with_name("pipeline_dask.yaml")
    config.write_text(yaml.safe_dump(doc))
    result = invoke("predict", "-i", tmp_path / "ds", "-o", tmp_path / "dask.parquet", "-c", config)
    assert result.exit_code == 1   # the hard rows: the same exit code as without Dask
    assert f"scored {local.scored} of {local.rows} rows" in result.output.replace("\n", "")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask.parquet"), pd.read_parquet(tmp_path / "local.parquet"))
    assert len(partitions(tmp_path / "ds")) == 5
    assert os.path.exists(tmp_path / "dask.parquet")

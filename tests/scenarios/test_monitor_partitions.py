"""`tabpipe monitor --input FOLDER`: a partitioned Parquet dataset monitored a row group at a time (here, or
one task per file on a Dask LocalCluster) gives the result of monitoring the whole table in memory."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import registry_of, write_dataset
from service_helpers import REPO_SCHEMA, TABPIPE_BIN
from tabpipe.config import load_settings
from tabpipe.monitoring.monitor import DatasetWindow, MonitorSettings, Window, run_monitor, window_stats
from tabpipe.drift.profile import read_profile
from tabpipe.monitoring.window_stats import ChunkSpec, WindowStats, chunk_stats, file_stats, merged
from tabpipe.scoring.partitions import partitions
from tabpipe.sources.sample import generate

LOGREG = {"candidates": [{"name": "logreg", "class": "sklearn.linear_model.LogisticRegression",
                          "params": {"max_iter": 1000}}]}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
ROWS_PER_PART = 700


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained project (logistic regression on 3,000 rows), evidently on with up to 5,000 rows (no sampling
    below that), and a shifted dataset of 4 files in hive folders, row groups of 150 rows, with bad values
    and missing labels here and there."""
    root = tmp_path_factory.mktemp("monparts") / "p"
    root.mkdir()
    (root / "schema.yaml").write_text(yaml.safe_dump(REPO_SCHEMA, sort_keys=False))
    (root / "model.yaml").write_text(yaml.safe_dump(LOGREG))
    generate(3000, seed=0).to_csv(root / "data.csv", index=False)
    config = root / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"type": "file", "path": "data.csv"}, "schema": "schema.yaml",
        "run": {"artifacts_dir": "artifacts", "seed": 0},
        "validation": {"drift": {"enabled": True, "max_rows": 5000, "reference_rows": 1000}},
        "transformation": {"resampling": "smote"},
        "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 60, "n_jobs": 1},
        "registry": {"backend": "local", "path": "registry"},
    }, sort_keys=False))
    done = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    write_dataset(root / "ds", [bad_rows(ROWS_PER_PART, seed=30 + i, shift=0.2 * i) for i in range(4)],
                  row_group_size=150)
    return config


def bad_rows(n: int, seed: int, shift: float) -> pd.DataFrame:
    """Generated rows with a hard problem (unreadable latency), broken expectations and unknown outcomes."""
    df = generate(n, seed=seed, shift=shift)
    df["latency_ms"] = df["latency_ms"].astype(object)
    df.loc[[3, n // 2], "latency_ms"] = "slow"              # hard: not scored
    df.loc[10, "rsrp_dbm"] = 5.0                            # above the maximum: scored with a warning
    df.loc[n - 1, "region"] = "atlantis"                    # unlisted category: a warning
    df["latency_ms"] = df["latency_ms"].astype(str)         # one Parquet type in every file
    df["fault_flag"] = df["fault_flag"].astype(float)
    df.loc[df.index % 7 == 0, "fault_flag"] = np.nan        # outcome not known yet
    return df


def loaded(config: Path):
    model, meta = registry_of(config).load_model()
    registry = config.parent / "registry" / "versions" / meta["version"]
    return (model, meta["version"], read_profile(registry / "profile.json"),
            pd.read_parquet(registry / "reference.parquet"), MonitorSettings.from_settings(load_settings(config)))


def comparable(result: dict, out_dir: Path) -> dict:
    """The result without what names the run (its id and folder) or times it (stage seconds)."""
    text = json.dumps({k: v for k, v in result.items() if k not in ("run_id", "stage_seconds")}).replace(
        str(out_dir), "OUT")
    return json.loads(text)


def assert_same(got, want, where: str = "result") -> None:
    """Equal, floats to 1e-12 relative: a row's probability can differ in its last bit with the size of the batch
    it is scored in (BLAS blocking), which moves the metrics computed from probabilities by as much. Counts, PSI
    of the features (from counts), rules and texts must be exactly equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_a_folder_monitors_like_the_whole_table_in_memory(project, tmp_path):
    model, version, profile, reference, settings = loaded(project)
    whole = pd.concat([pd.read_parquet(p.path) for p in partitions(project.parent / "ds")], ignore_index=True)
    common = dict(model=model, version=version, profile=profile, reference=reference, settings=settings, now=NOW)
    memory = run_monitor(Window(whole, "w", NOW, NOW, None, whole["fault_flag"]), out_dir=tmp_path / "memory", **common)
    streamed = run_monitor(DatasetWindow(project.parent / "ds", "w", NOW, NOW, "fault_flag"),
                           out_dir=tmp_path / "streamed", **common)
    assert_same(comparable(streamed, tmp_path / "streamed"), comparable(memory, tmp_path / "memory"))
    assert streamed["psi"] == memory["psi"] and streamed["quality"] == memory["quality"]   # counts: exact
    assert streamed["decision"] == memory["decision"] == "retrain"
    # and the result is about these rows: every figure was computed, the shifted files drift
    n = 4 * ROWS_PER_PART
    scored = whole["latency_ms"] != "slow"
    assert streamed["window"] == {"description": "w", "start": NOW.isoformat(), "end": NOW.isoformat(), "rows": n,
                                  "scored_rows": n - 8,
                                  "labelled_rows": int((whole["fault_flag"].notna() & scored).sum())}
    assert streamed["metrics"]["realised"]["rows"] == streamed["window"]["labelled_rows"]
    assert all(r["status"] == "ok" and r["psi"] is not None for r in streamed["psi"].values())
    assert streamed["drift"]["current_rows"] == n and streamed["drift"]["report_sampled"] is False
    assert streamed["drift"]["sample_note"] == f"evidently ran on all {n} rows"
    rules = {(r["column"], r["rule"]): r["rows"] for r in streamed["quality"]["rules"]}
    assert rules[("latency_ms", "type")] == 8 and rules[("rsrp_dbm", "range")] == 4 and rules[("region", "category")] == 4
    assert streamed["quality"]["rows_with_problems"] == 16


def test_counts_do_not_depend_on_where_the_rows_are_cut(project, tmp_path):
    """Row groups of 50 and of 700 rows in one file, or the whole table as one chunk: the same counts, rules,
    probabilities, outcomes and sample (the keys are drawn in row order from one seeded generator per file)."""
    model, _, profile, _, _ = loaded(project)
    spec = ChunkSpec(model=model, profile_features=profile["features"], labels="fault_flag", keep=300, seed=5)
    whole = pd.concat([pd.read_parquet(p.path) for p in partitions(project.parent / "ds")], ignore_index=True)
    one_chunk = chunk_stats(whole, spec, outcomes=whole["fault_flag"],
                            keys=np.random.default_rng([5, 0]).random(len(whole))).finish()
    for group in (50, 700):
        pq.write_table(pa.Table.from_pandas(whole, preserve_index=False),
                       tmp_path / f"rg{group}.parquet", row_group_size=group)
    small, large = (merged([file_stats(spec, part, 0)], spec.keep)
                    for part in partitions(tmp_path / "rg50.parquet") + partitions(tmp_path / "rg700.parquet"))
    for got in (small, large):
        assert got.rows == one_chunk.rows and got.nulls == one_chunk.nulls
        assert got.rules == one_chunk.rules and got.column_rows == one_chunk.column_rows
        assert got.rows_with_problems == one_chunk.rows_with_problems
        assert {k: v.tolist() for k, v in got.buckets.items()} == {k: v.tolist() for k, v in one_chunk.buckets.items()}
        np.testing.assert_allclose(got.proba, one_chunk.proba, rtol=1e-12, atol=0)   # see assert_same
        np.testing.assert_array_equal(got.y, one_chunk.y)
        np.testing.assert_array_equal(got.labelled, one_chunk.labelled)
        assert len(got.sample) == 300
        pd.testing.assert_frame_equal(got.sample, one_chunk.sample)
    assert np.all(np.diff(small.sample_place) > 0)          # in the dataset's row order


def test_merging_keeps_the_smallest_keys_whatever_the_order():
    """Bottom-k: the union of partial samples keeps the same rows in any merge order (Dask returns them in order,
    but the sample must not depend on chunk sizes either)."""
    rng = np.random.default_rng(0)
    keys = rng.random(1000)
    frame = pd.DataFrame({"x": np.arange(1000.0)})

    def part(lo, hi):
        s = WindowStats(rows=hi - lo, keep=40)
        s.sample, s.sample_keys, s.sample_place = frame.iloc[lo:hi].reset_index(drop=True), keys[lo:hi], np.arange(lo, hi)
        s._trim()
        return s

    cuts = [(0, 1000)], [(0, 10), (10, 600), (600, 1000)], [(500, 1000), (0, 500)]
    samples = [merged([part(lo, hi) for lo, hi in pieces], 40).sample["x"].tolist() for pieces in cuts]
    want = sorted(np.argsort(keys)[:40].astype(float).tolist())
    assert samples == [want, want, want]


def test_a_large_folder_is_sampled_for_evidently_and_says_so(project, tmp_path):
    model, version, profile, reference, settings = loaded(project)
    small = MonitorSettings(**{**settings.__dict__, "evidently_max_rows": 400})
    window = DatasetWindow(project.parent / "ds", "w", NOW, NOW, "fault_flag")
    stats = window_stats(window, model=model, profile=profile, evidently=True, settings=small)
    again = window_stats(window, model=model, profile=profile, evidently=True, settings=small)
    assert len(stats.sample) == 400 and stats.rows == 4 * ROWS_PER_PART
    pd.testing.assert_frame_equal(stats.sample, again.sample)      # seeded: the same rows every run
    result = run_monitor(window, model=model, version=version, profile=profile, reference=reference,
                         settings=small, out_dir=tmp_path / "run", now=NOW)
    drift = result["drift"]
    assert drift["current_rows"] == 400 and drift["window_rows"] == 4 * ROWS_PER_PART
    assert "a seeded random sample of 400 of the window's 2800 rows" in drift["sample_note"]
    assert "a seeded random sample of 400 of the window's 2,800 current rows" in drift["report_note"]
    page = Path(result["reports"]["evidently_html"]).read_text()
    assert "sample of 400 of the window&#x27;s 2,800 current rows" in page
    (reason,) = [r for r in result["reasons"] if r["rule"] == "drift_share"]    # the shifted files drift
    assert "drift share (evidently tests on a sample of 400 of 2800 rows)" in reason["message"]


def monitor_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TABPIPE_BIN), "monitor", "--config", str(config), *args, "--json"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TABPIPE_ALERT_WEBHOOK_URL": ""})


def test_cli_folder_file_and_dask_agree(project, tmp_path):
    """The CLI: the whole table as CSV (in memory), the folder and one Parquet file (streamed), and the folder on
    a Dask LocalCluster of 2 worker processes (one task per file, evidently sampled at 1,000 rows): one result."""
    whole = pd.concat([pd.read_parquet(p.path) for p in partitions(project.parent / "ds")], ignore_index=True)
    whole.to_csv(tmp_path / "whole.csv", index=False)
    whole.to_parquet(tmp_path / "whole.parquet", index=False, row_group_size=333)
    results = {}
    for name, path in (("csv", tmp_path / "whole.csv"), ("folder", project.parent / "ds"),
                       ("file", tmp_path / "whole.parquet")):
        done = monitor_cli(project, "--input", str(path), "--labels", "fault_flag")
        assert done.returncode in (0, 3), done.stderr
        results[name] = json.loads(done.stdout)

    def same(result):   # the window's name and times aside
        out = comparable(result, Path(result["reports"]["html"]).parent)
        out = json.loads(json.dumps(out).replace(result["window"]["description"], "WINDOW"))
        for key in ("start", "end"):
            out["window"].pop(key)
        return out

    assert_same(same(results["folder"]), same(results["csv"]))
    assert_same(same(results["file"]), same(results["csv"]))
    assert results["folder"]["window"]["description"] == "dataset ds"
    assert results["file"]["window"]["description"] == "file whole.parquet"

    doc = yaml.safe_load(project.read_text())
    doc["validation"]["drift"]["max_rows"] = 1000
    local_config = project.with_name("sampled.yaml")
    local_config.write_text(yaml.safe_dump(doc))
    doc["training"]["executor"] = {"type": "dask", "n_workers": 2}
    dask_config = project.with_name("sampled_dask.yaml")
    dask_config.write_text(yaml.safe_dump(doc))
    runs = [monitor_cli(c, "--input", str(project.parent / "ds"), "--labels", "fault_flag")
            for c in (local_config, dask_config)]
    assert "files as tasks on the Dask cluster" not in runs[0].stderr
    assert "4 files as tasks on the Dask cluster at tcp://127.0.0.1" in " ".join(runs[1].stderr.split())
    local, on_dask = (json.loads(run.stdout) for run in runs)
    assert_same(same(on_dask), same(local))
    assert local["drift"]["current_rows"] == 1000 and local["drift"]["window_rows"] == 2800


def test_cli_dataset_errors_name_the_file(project, tmp_path):
    parts = [generate(100, seed=40 + i) for i in range(2)]
    write_dataset(tmp_path / "short", [parts[0], parts[1].drop(columns=["latency_ms"])], row_group_size=50)
    done = monitor_cli(project, "--input", str(tmp_path / "short"))
    assert done.returncode == 1 and "has no column latency_ms" in done.stderr and "batch=01" in done.stderr
    write_dataset(tmp_path / "nolabels", [parts[0], parts[1].drop(columns=["fault_flag"])], row_group_size=50)
    done = monitor_cli(project, "--input", str(tmp_path / "nolabels"), "--labels", "fault_flag")
    assert done.returncode == 1 and "no column 'fault_flag' for --labels" in done.stderr and "batch=01" in done.stderr
    (tmp_path / "empty").mkdir()
    done = monitor_cli(project, "--input", str(tmp_path / "empty"))
    assert done.returncode == 1 and "no .parquet file" in done.stderr


def test_chunks_of_one_window_all_have_outcomes_or_none():
    without = WindowStats(rows=2, proba=[np.array([0.1, 0.9])])
    with_outcomes = WindowStats(rows=1, proba=[np.array([0.5])], labelled=[np.array([True])], y=[np.array([1], np.int8)])
    empty = WindowStats()                                   # a file without rows: nothing to add either way
    total = merged([empty, with_outcomes, empty], keep=0)
    assert total.labelled.tolist() == [True] and total.y.tolist() == [1]
    with pytest.raises(ValueError, match="all have outcomes, or none"):
        merged([without, with_outcomes], keep=0)

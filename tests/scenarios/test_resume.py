"""Named run folders: a run stopped after a stage (or failed in one) is resumed without re-running what succeeded.

This is what lets an orchestrator (Airflow) run each stage as its own task and retry a failed stage alone.
"""
from __future__ import annotations

import os

import pytest
from helpers import make_project, read_run_json

from tabpipe.config import load_settings
from tabpipe.training.specs import ARTIFACT_OF, restore_artifact
from tabpipe.training.pipeline import TrainingPipeline
from tabpipe.training.run import RunFolderError, run_name
from tabpipe.stages import STAGES


def test_pipeline_runs_exactly_the_declared_stages_in_order(tmp_path):
    config = make_project(tmp_path, rows=1500)
    run = TrainingPipeline(load_settings(config), environ=os.environ).run()
    assert list(read_run_json(run.dir)["stages"]) == list(STAGES)
    assert set(ARTIFACT_OF) == set(STAGES)


def test_stage_by_stage_equals_one_go_and_reuses_finished_stages(tmp_path):
    config = make_project(tmp_path / "a", rows=1500)
    settings = load_settings(config)
    seconds = {}
    for stage in STAGES:
        run = TrainingPipeline(settings, environ=os.environ).run(run_name="airflow__manual_1", until=stage)
        record = read_run_json(run.dir)
        seconds[stage] = record["stages"][stage]["seconds"]
        # stages before this one were reused: their recorded seconds did not change
        assert all(record["stages"][s]["seconds"] == seconds[s] for s in STAGES[: STAGES.index(stage)])
        assert record["status"] == ("succeeded" if stage == STAGES[-1] else "partial")
    staged = read_run_json(run.dir)
    assert run.dir.name == "airflow__manual_1"
    whole = read_run_json(TrainingPipeline(load_settings(make_project(tmp_path / "b", rows=1500)), environ=os.environ).run().dir)
    assert staged["metrics"] == whole["metrics"]
    assert staged["accepted"] is True and staged["model_version"] == "v0001"


def test_failed_stage_is_retried_alone(tmp_path, monkeypatch):
    config = make_project(tmp_path, rows=1500)
    settings = load_settings(config)
    import tabpipe.training.pipeline as pipeline_module

    real = pipeline_module.ModelEvaluation

    class Broken(real):
        def run(self):
            raise RuntimeError("injected evaluation failure")

    monkeypatch.setattr(pipeline_module, "ModelEvaluation", Broken)
    with pytest.raises(RuntimeError, match="injected"):
        TrainingPipeline(settings, environ=os.environ).run(run_name="retry-me")
    failed = read_run_json(tmp_path / "artifacts" / "retry-me")
    assert failed["status"] == "failed" and failed["stages"]["evaluation"]["status"] == "failed"
    trainer_seconds = failed["stages"]["trainer"]["seconds"]

    monkeypatch.setattr(pipeline_module, "ModelEvaluation", real)
    run = TrainingPipeline(settings, environ=os.environ).run(run_name="retry-me")
    record = read_run_json(run.dir)
    assert record["status"] == "succeeded" and "error" not in record
    assert record["stages"]["trainer"]["seconds"] == trainer_seconds      # not trained again
    assert record["stages"]["evaluation"]["status"] == "succeeded"


def test_a_named_folder_refuses_another_config(tmp_path):
    config = make_project(tmp_path, rows=1500)
    TrainingPipeline(load_settings(config), environ=os.environ).run(run_name="r1", until="ingestion")
    other = make_project(tmp_path, rows=1500, pipeline={"run": {"seed": 5}})
    with pytest.raises(RunFolderError, match="another configuration"):
        TrainingPipeline(load_settings(other), environ=os.environ).run(run_name="r1")


@pytest.mark.parametrize("text, expected", [
    ("manual__2026-11-30T10:00:00+00:00", "manual__2026-11-30T10_00_00_00_00"),
    ("scheduled/../../etc", "scheduled_.._.._etc"),
])
def test_run_names_are_safe_folder_names(text, expected):
    assert run_name(text) == expected
    assert "/" not in run_name(text)


def test_restore_artifact_round_trips_paths_and_tuples(tmp_path):
    from tabpipe.training.specs import TransformationArtifact
    from tabpipe.training.run import _jsonable

    art = TransformationArtifact(tmp_path / "p.pkl", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "xt.npy",
                                 tmp_path / "yt.npy", ("a", "b"))
    assert restore_artifact("transformation", _jsonable(art)) == art

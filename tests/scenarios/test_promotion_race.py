"""A training run whose comparison went stale: another run promoted a better model between this
run's evaluation and its push. The pusher's compare-and-swap keeps the better model in production;
the new version stays published, not promoted, and the run and the CLI say so."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tabpipe.training.pipeline as pipeline_mod
from helpers import make_project, read_run_json, registry_of, run_dirs, run_pipeline, stage_dir
from tabpipe.cli import app


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """No terminal line wrapping in captured CLI output (rich reads COLUMNS on every print)."""
    monkeypatch.setenv("COLUMNS", "400")


def test_stale_evaluation_never_replaces_a_better_production_model(tmp_path, monkeypatch):
    config = make_project(tmp_path, rows=1500, pipeline={"validation": {"drift": {"enabled": False}},
                                                          "evaluation": {"min_improvement": -1.0}})
    assert run_pipeline(config).record["model_version"] == "v0001"
    registry = registry_of(config)
    # the other training run's result: a model that scored far better, published meanwhile
    better = registry.publish({"model.pkl": registry.fetch("v0001", "model.pkl")}, {"metrics": {"roc_auc": 0.999}})

    real_evaluation = pipeline_mod.ModelEvaluation

    class EvaluationThenOtherRunPromotes(real_evaluation):
        def run(self):
            artifact = super().run()  # compared against v0001 ...
            registry_of(config).promote(better, expected="v0001")  # ... then the other run wins
            return artifact

    monkeypatch.setattr(pipeline_mod, "ModelEvaluation", EvaluationThenOtherRunPromotes)
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "model accepted but not promoted" in result.output
    assert "production is v0002, no longer v0001" in result.output

    run_dir = run_dirs(config)[-1]
    rec = read_run_json(run_dir)
    assert rec["status"] == "succeeded" and rec["accepted"] is True
    assert rec["model_version"] == "v0003" and rec["promoted"] is False and "did not promote" in rec["push"]
    push = json.loads((stage_dir(run_dir, "pusher") / "push.json").read_text())
    assert push["pushed"] is True and push["promoted"] is False and push["version"] == "v0003"
    blessing = json.loads((stage_dir(run_dir, "evaluation") / "blessing.json").read_text())
    assert blessing["production_version"] == "v0001"  # what the evaluation compared against
    assert registry.production_version() == better  # the better model stays in production
    assert [v.version for v in registry.list_versions()] == ["v0001", "v0002", "v0003"]  # v0003 kept, verified
    assert registry.load_model("v0003")[1]["blessing"]["production_version"] == "v0001"

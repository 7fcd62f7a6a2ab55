"""Calibration through a whole training run: the map is fitted once, on the training split's out-of-fold
scores only (never a test row), shipped inside the published model, the decision threshold comes from
``evaluation.costs`` on the calibrated out-of-fold probabilities, and the gate reports the test rows'
calibration (ECE, Brier, log-loss) in blessing.json."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import make_project, read_run_json, registry_of, run_dirs, run_pipeline, stage_dir
from tabpipe.training.components import trainer as trainer_module
from tabpipe.training.metrics import min_cost_threshold


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A run with ``evaluation.costs`` whose calibration fits are recorded (inputs and the map returned)."""
    root = tmp_path_factory.mktemp("calibration")
    config = make_project(root, rows=2500, seed=3,
                          pipeline={"evaluation": {"costs": {"false_positive": 1, "false_negative": 10}}})
    fits = []
    original = trainer_module.fit_platt

    def spy(score, y):
        calibration = original(score, y)
        fits.append((np.array(score, dtype=float), np.array(y, dtype=int), calibration))
        return calibration

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(trainer_module, "fit_platt", spy)
    try:
        run = run_pipeline(config)
    finally:
        monkeypatch.undo()
    (run_dir,) = run_dirs(config)
    return config, run, read_run_json(run_dir), run_dir, fits


def test_calibration_is_fitted_once_on_the_training_out_of_fold_rows_only(calibrated_run):
    _, run, record, _, fits = calibrated_run
    assert len(fits) == 1                     # the trainer only: the gate, pusher and profile never refit it
    score, y, calibration = fits[0]
    stages = record["stages"]
    y_train = np.load(stages["transformation"]["artifact"]["y_train_path"])
    y_test = np.load(stages["transformation"]["artifact"]["y_test_path"])
    trainer = stages["trainer"]["artifact"]
    # the out-of-fold scores of the search's training rows (here every training row): no test row among them
    assert len(y) == trainer["search_rows"] == len(y_train) and int(y.sum()) == int(y_train.sum())
    assert len(y) != len(y_train) + len(y_test)
    assert np.all((score > 0) & (score < 1))
    assert calibration is not None and trainer["calibration"]["rows"] == len(y)
    assert (trainer["calibration"]["method"], trainer["calibration"]["a"], trainer["calibration"]["b"]) == \
        ("platt", calibration.a, calibration.b)


def test_the_published_model_carries_the_map_and_the_cost_threshold(calibrated_run):
    config, run, record, _, fits = calibrated_run
    score, y, calibration = fits[0]
    assert run.record["accepted"], run.record["decision"]
    model, meta = registry_of(config).load_model(run.record["model_version"])
    assert meta["calibration"] == record["stages"]["trainer"]["artifact"]["calibration"]
    assert calibration is not None and model.calibration == calibration   # SMOTE-resampled: the raw score is not
    assert record["stages"]["trainer"]["artifact"]["calibration"]["held_out_gain"] > 0      # calibrated
    # the threshold minimises 1 * FP + 10 * FN on the calibrated out-of-fold probabilities
    expected, _ = min_cost_threshold(y, calibration(score), 1.0, 10.0)
    assert model.threshold == pytest.approx(expected, abs=1e-12)
    assert record["stages"]["trainer"]["artifact"]["threshold"] == pytest.approx(expected, abs=1e-12)


def test_the_gate_reports_calibration_on_the_test_rows(calibrated_run):
    _, run, record, run_dir, _ = calibrated_run
    blessing = json.loads((stage_dir(run_dir, "evaluation") / "blessing.json").read_text())
    assert blessing["ece_bins"] == "15 equal-frequency" and blessing["max_ece_increase"] == 0.05
    assert blessing["max_chance_p"] is None and blessing["chance_p"] is None   # the fixture turns the rule off
    for key in ("ece", "brier", "log_loss"):
        assert 0 <= blessing["new"][key] < 1 and record["metrics"][key] == blessing["new"][key]

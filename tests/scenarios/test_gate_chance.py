"""The gate's chance rule end to end: labels unrelated to the features give a model the gate refuses as no
better than chance (evaluation.max_chance_p, on by default), whatever its floor; the same rows with their
real labels pass."""
from __future__ import annotations

import json

import numpy as np

from helpers import TARGET, make_project, run_pipeline, stage_dir
from tabpipe.sources.sample import generate
from tabpipe.training.metrics import CHANCE_SHUFFLES


def test_noise_labels_are_refused_as_chance_and_real_labels_pass(tmp_path):
    data = generate(3000, seed=5)
    noise = data.assign(**{TARGET: np.random.default_rng(0).permutation(data[TARGET].to_numpy())})
    gate = {"evaluation": {"min_score": 0.0, "max_chance_p": 0.01}}    # the floor cannot refuse anything
    refused = run_pipeline(make_project(tmp_path / "noise", data=noise, pipeline=gate))
    blessing = json.loads((stage_dir(refused.dir, "evaluation") / "blessing.json").read_text())
    assert blessing["accepted"] is False and refused.record["model_version"] is None
    assert "no better than chance on the 600 test rows" in blessing["reason"]
    assert blessing["chance_p"] >= 0.01 and blessing["max_chance_p"] == 0.01
    accepted = run_pipeline(make_project(tmp_path / "real", data=data, pipeline=gate))
    blessing = json.loads((stage_dir(accepted.dir, "evaluation") / "blessing.json").read_text())
    assert blessing["accepted"] is True and blessing["chance_p"] == 1 / (1 + CHANCE_SHUFFLES)

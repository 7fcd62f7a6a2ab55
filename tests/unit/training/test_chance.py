"""The gate refuses a model no better than chance (training.metrics.chance_p_value, evaluation.max_chance_p)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tabpipe.training.components.evaluation import gate
from tabpipe.training.metrics import CHANCE_SHUFFLES, chance_p_value, holdout_metrics


def labelled(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    score = 1 / (1 + np.exp(-(signal * y + rng.normal(size=n))))
    return y, np.round(score, 2)   # rounded: ties, as real scores have


@pytest.mark.parametrize("metric, draws", [("roc_auc", 40), ("pr_auc", 4), ("f1", 4)])
def test_a_weak_real_signal_passes_and_noise_does_not(metric, draws):
    y, score = labelled(2000, 0.35, 0)        # weak: ROC-AUC about 0.6
    threshold = 0.45
    observed = holdout_metrics(y, score, threshold)[metric]
    assert chance_p_value(metric, y, score, threshold, observed) == pytest.approx(1 / (1 + CHANCE_SHUFFLES))
    p_values = []
    for s in range(draws):    # the same scores, paired with the labels at random: no signal
        noise = np.random.default_rng(100 + s).permutation(score)
        p_values.append(chance_p_value(metric, y, noise, threshold, holdout_metrics(y, noise, threshold)[metric],
                                       seed=s))
    assert min(p_values) > 0.01 if draws < 10 else np.mean(np.asarray(p_values) < 0.01) <= 0.1
    assert np.median(p_values) > 0.2


@pytest.mark.parametrize("metric, sklearn_metric", [("roc_auc", roc_auc_score), ("pr_auc", average_precision_score)])
def test_the_one_pass_shortcuts_equal_sklearn_on_every_shuffle(metric, sklearn_metric):
    y, score = labelled(500, 0.5, 2)        # rounded scores: many ties
    observed = sklearn_metric(y, score)
    # with the observed score just above / below a shuffle's, the count moves by one: the shortcuts' scores are sklearn's
    rng = np.random.default_rng(0)
    shuffled = [sklearn_metric(rng.permutation(y), score) for _ in range(200)]
    for cut in np.quantile(shuffled, [0.1, 0.5, 0.9]):
        expected = (1 + sum(a >= cut - 1e-12 for a in shuffled)) / (1 + 200)
        assert chance_p_value(metric, y, score, 0.5, cut, shuffles=200, seed=0) == pytest.approx(expected)
    assert observed > max(shuffled)
    assert chance_p_value(metric, np.zeros(10, dtype=int), score[:10], 0.5, 0.5) == 1.0


def test_gate_names_the_chance_rule_and_it_can_be_off():
    new = {"roc_auc": 0.53, "rows": 400}
    accepted, reason = gate("roc_auc", new, None, 0.5, 0.0, chance=(0.21, 0.01))
    assert accepted is False
    assert "no better than chance on the 400 test rows" in reason and "p=0.210 >= evaluation.max_chance_p=0.01" in reason
    accepted, reason = gate("roc_auc", new, None, 0.5, 0.0, chance=(0.005, 0.01))
    assert accepted is True and "first model" in reason
    assert gate("roc_auc", new, None, 0.5, 0.0)[0] is True          # off: not checked
    assert "min_score" in gate("roc_auc", new, None, 0.6, 0.0, chance=(0.005, 0.01))[1]   # the floor first

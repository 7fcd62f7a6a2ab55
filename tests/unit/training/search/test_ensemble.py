"""tabpipe.training.search.ensemble: greedy ensemble selection on out-of-fold predictions (pure)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from tabpipe.training.search.ensemble import cv_score, select


@pytest.fixture(scope="module")
def problem():
    """Two configurations that each see half of the signal, and one that sees none of it."""
    rng = np.random.default_rng(0)
    n = 2_000
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (a + b + rng.normal(scale=0.5, size=n) > 0).astype(int)
    folds = [va for _, va in StratifiedKFold(5, shuffle=True, random_state=0).split(a, y)]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
    oofs = [sigmoid(a + 0.3 * rng.normal(size=n)), sigmoid(b + 0.3 * rng.normal(size=n)),
            sigmoid(rng.normal(size=n))]
    return oofs, y, folds


def test_complementary_configurations_are_averaged(problem):
    oofs, y, folds = problem
    alone = [cv_score("roc_auc", y, p, folds) for p in oofs]
    chosen = select(oofs, y, folds, "roc_auc", max_picks=10)
    assert set(chosen.picks) == {0, 1}                               # the noise never helps
    assert chosen.score > max(alone) + 0.05
    mean = sum(w * oofs[i] for i, w in chosen.weights.items())
    assert chosen.score == pytest.approx(cv_score("roc_auc", y, mean, folds))   # the score is that of the mean
    assert sum(chosen.weights.values()) == pytest.approx(1.0)


def test_one_pick_or_nothing_to_gain_is_the_best_alone(problem):
    oofs, y, folds = problem
    best = int(np.argmax([cv_score("roc_auc", y, p, folds) for p in oofs]))
    assert select(oofs, y, folds, "roc_auc", max_picks=1).picks == {best: 1}
    assert select([oofs[0], oofs[0].copy()], y, folds, "roc_auc", max_picks=10).picks == {0: 1}   # a copy adds nothing


def test_deterministic(problem):
    oofs, y, folds = problem
    assert select(oofs, y, folds, "pr_auc", 8) == select(oofs, y, folds, "pr_auc", 8)
    with pytest.raises(ValueError, match="at least one"):
        select([], y, folds, "roc_auc", 5)

"""The search strategy's pure rules: rungs, who goes on to the next rung, the best configuration, budget shares, sample sizing."""
from __future__ import annotations

import pytest

from tabpipe.config import Candidate
from tabpipe.training.search.schedule import (
    Evaluation,
    affordable_rows,
    best_of,
    config_share,
    next_rung,
    round_affordable,
    rung_fractions,
)
from tabpipe.training.search.space import trial_rounds, trials

LR = "sklearn.linear_model.LogisticRegression"


def cand(name, **kw):
    return Candidate.model_validate({"name": name, "class": LR, **kw})


def test_trials_round_robin_with_resolved_resampling():
    todo = trials((cand("a", search={"C": [0.1, 1.0, 10.0]}, n_iter=3),
                   cand("b", resampling="none", params={"class_weight": "balanced"})), seed=0, resampling="smotetomek")
    assert [t.candidate.name for t in todo] == ["a", "b", "a", "a"]
    assert [t.resampling for t in todo] == ["smotetomek", "none", "smotetomek", "smotetomek"]
    assert todo[1].params == {"class_weight": "balanced"} and todo[1].fold_key == "none"
    again = trials((cand("a", search={"C": [0.1, 1.0, 10.0]}, n_iter=3),), seed=0, resampling="smote")
    assert [t.params for t in again] == [t.params for t in todo if t.candidate.name == "a"]   # same seed, same configs


@pytest.mark.parametrize("configs, rows, expected", [
    (2, 1_000_000, [1.0]),                     # too few configurations to halve
    (10, 1_000, [1.0]),                        # too few rows: a plain cross-validated search
    (10, 20_000, [1 / 9, 1 / 3, 1.0]),
    (10, 10_000, [1 / 3, 1.0]),                # 10_000 / 9 would fall under 2_000 rows
    (30, 1_000_000, [1 / 27, 1 / 9, 1 / 3, 1.0]),
])
def test_rung_fractions(configs, rows, expected):
    assert rung_fractions(configs, rows) == pytest.approx(expected)


def ev(index, score, rung=0, fraction=None):
    """An evaluation at ``rung`` of a two-rung round (1/3 of the rows, then all), or at ``fraction``."""
    e = Evaluation(index, trial=None)
    e.score, e.rung, e.fraction = score, rung, fraction if fraction is not None else [1 / 3, 1.0][rung]
    return e


def test_next_rung_keeps_the_best_third_ties_to_the_earlier():
    finished = [ev(0, 0.7), ev(1, 0.9), ev(2, 0.8), ev(3, 0.9), ev(4, 0.6)]
    keep, pruned = next_rung(finished)
    assert [e.index for e in keep] == [1, 3] and sorted(e.index for e in pruned) == [0, 2, 4]


def test_best_is_taken_at_the_highest_rung_reached():
    evaluations = [ev(0, 0.95, rung=0), ev(1, 0.90, rung=1), ev(2, 0.91, rung=1), ev(3, None)]
    assert best_of(evaluations).index == 2       # 0.95 on fewer rows does not compare with rung-1 scores
    assert best_of([ev(0, None)]) is None


def test_best_across_rounds_compares_whole_folds_only():
    # round 1 had two rungs, round 2 (fewer configurations after repeats were dropped) a single one: rung
    # numbers differ, the rows do not
    evaluations = [ev(0, 0.90, rung=1), ev(1, 0.97, rung=0), ev(2, 0.92, rung=0, fraction=1.0)]
    assert best_of(evaluations).index == 2


def test_trial_rounds_sample_new_configurations():
    cands = (cand("a", search={"C": {"log_uniform": [0.01, 10.0]}}, n_iter=3),
             cand("grid", search={"C": [0.1, 1.0]}, n_iter=2),           # a small grid: all of it in round 1
             cand("fixed", params={"C": 2.0}))                            # nothing to search: round 1 only
    rounds = trial_rounds(cands, seed=0, resampling="none", rounds=3)
    assert [len(r) for r in rounds] == [6, 3, 3]
    assert rounds[0] == trials(cands, seed=0, resampling="none")          # round 1 whatever the number of rounds
    assert {t.candidate.name for r in rounds[1:] for t in r} == {"a"}
    params = [t.params["C"] for r in rounds for t in r if t.candidate.name == "a"]
    assert len(set(params)) == 9                                           # new configurations, no repeats
    assert trial_rounds(cands, seed=0, resampling="none", rounds=3) == rounds   # same seed, same rounds
    assert trial_rounds(cands, seed=1, resampling="none", rounds=3)[1] != rounds[1]


def test_round_affordable():
    # 100 s budget: rounds must be predicted to end within its first 25 s
    assert round_affordable(elapsed_s=12, last_seconds=10, last_configs=9, next_configs=9, budget_s=100)
    assert not round_affordable(elapsed_s=20, last_seconds=10, last_configs=9, next_configs=9, budget_s=100)
    assert round_affordable(elapsed_s=20, last_seconds=10, last_configs=9, next_configs=3, budget_s=100)  # smaller
    assert not round_affordable(elapsed_s=60, last_seconds=50, last_configs=9, next_configs=9, budget_s=300)  # big data


def test_config_share():
    assert config_share(90, rungs_left=3, configs_in_rung=10) == pytest.approx(15.0)   # half of its rung's 30 s
    assert config_share(90, rungs_left=3, configs_in_rung=4) == pytest.approx(22.5)    # 3 x its 1/4 of 30 s
    assert config_share(90, rungs_left=1, configs_in_rung=2) == pytest.approx(90.0)   # last rung: all that is left
    assert config_share(-1, rungs_left=2, configs_in_rung=5) < 0                       # nothing left: stops at once


def test_affordable_rows():
    linear = [(2_000, 0.1), (8_000, 0.4)]   # 5e-5 s per row
    assert affordable_rows(100_000, linear, seconds_allowed=100, k_folds=5, floor_rows=8_000) == 100_000
    rows = affordable_rows(1_000_000, linear, seconds_allowed=10, k_folds=5, floor_rows=8_000)
    assert rows == 50_000                    # 5 folds x 40k training rows each x 5e-5 s per row = 10 s
    quadratic = [(2_000, 0.1), (8_000, 1.6)]
    rows_q = affordable_rows(1_000_000, quadratic, seconds_allowed=10, k_folds=5, floor_rows=8_000)
    assert 8_000 <= rows_q < 40_000          # quadratic growth leaves far fewer rows
    assert affordable_rows(1_000_000, quadratic, seconds_allowed=0.001, k_folds=5, floor_rows=8_000) == 8_000

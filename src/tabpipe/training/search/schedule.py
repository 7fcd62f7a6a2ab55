"""The search schedule: on how many rows each configuration is evaluated, which go on, and when to stop.

Design notes: docs/training.md#the-search-schedule-successive-halving
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tabpipe.training.search.space import Trial

ETA = 3                      # keep the best third at each rung, give it three times the rows
MIN_RUNG_ROWS = 2_000        # the smallest rung still has this many training rows per fold
COST_EXPONENT = 1.15         # fit seconds grow a little faster than rows (trees: n log n)
ROUND_SHARE = 0.25           # further search rounds must be predicted to end within this share of the budget

# why a configuration stopped (cv_results.json "stopped"); PENDING while the search still may run it
FINISHED, PRUNED, OUT_OF_BUDGET, FAILED, PENDING = "finished", "pruned", "out_of_budget", "failed", "pending"


def rung_fractions(n_configs: int, fold_rows: int, eta: int = ETA, min_rows: int = MIN_RUNG_ROWS) -> list[float]:
    """Share of each fold's training rows used at each rung, smallest first; the last is always 1.0."""
    rungs = 0
    while eta ** (rungs + 1) <= n_configs and fold_rows / eta ** (rungs + 1) >= min_rows:
        rungs += 1
    return [1.0 / eta ** (rungs - r) for r in range(rungs + 1)]


def planned_evaluations(n_configs: int, fold_rows: int) -> int:
    """Evaluations one round of successive halving plans for ``n_configs`` configurations."""
    planned, n = 0, n_configs
    for _ in rung_fractions(n_configs, fold_rows):
        planned, n = planned + n, math.ceil(n / ETA)
    return planned


def predicted_seconds(seconds: float, rows_from: float, rows_to: float) -> float:
    """Cost of a fit on ``rows_to`` rows, from one measured on ``rows_from``."""
    return seconds * (rows_to / rows_from) ** COST_EXPONENT


def config_share(remaining_s: float, rungs_left: int, configs_in_rung: int) -> float:
    """Wall seconds one configuration may use in this rung: three times its fair part of the rung's
    slice of the remaining budget (rungs get equal slices), at least half the slice (costs differ
    widely between model families), never more than what remains."""
    rung_slice = remaining_s / max(1, rungs_left)
    return min(remaining_s, rung_slice * max(0.5, min(1.0, 3.0 / max(1, configs_in_rung))))


def waves(k_folds: int, workers: int) -> int:
    """How many rounds of fits one configuration's k folds take on ``workers`` processes."""
    return math.ceil(k_folds / max(1, workers))


def affordable_rows(n_rows: int, probe: list[tuple[int, float]], seconds_allowed: float, k_folds: int,
                    floor_rows: int) -> int:
    """Largest number of rows (<= n_rows, rounded down to two significant figures) whose fold
    preparation is predicted to take at most ``seconds_allowed``.

    ``probe``: (rows, seconds) of preparing one fold's training part at two sizes; the growth
    exponent is fitted from them (clipped to [1, 2]: linear to quadratic, as Tomek links can be)."""
    (r1, t1), (r2, t2) = probe
    exponent = 1.0 if r2 <= r1 or t1 <= 0 or t2 <= 0 else min(2.0, max(1.0, math.log(t2 / t1) / math.log(r2 / r1)))

    def cost(rows: int) -> float:
        return k_folds * t2 * (rows * (k_folds - 1) / k_folds / r2) ** exponent

    if cost(n_rows) <= seconds_allowed:
        return n_rows
    rows = r2 * k_folds / (k_folds - 1) * (seconds_allowed / (k_folds * t2)) ** (1 / exponent)
    rows = int(max(floor_rows, min(rows, n_rows)))
    digits = max(0, len(str(rows)) - 2)
    return min(n_rows, rows // 10 ** digits * 10 ** digits)


@dataclass
class Evaluation:
    """Everything the search learned about one configuration (one row of cv_results.json)."""
    index: int
    trial: Trial
    stopped: str = PENDING
    round_no: int = 0                 # the search round that sampled it (0: the first)
    rung: int = -1                    # highest rung completed (within its round)
    fraction: float = 0.0             # share of each fold's training rows at that rung (1.0: the whole fold)
    rows: int = 0                     # training rows per fold at that rung
    score: float | None = None
    score_std: float | None = None
    fold_scores: list[float] = field(default_factory=list)
    seconds: float = 0.0              # wall seconds over all its rungs
    fit_seconds: float = 0.0          # summed seconds of its fits (what it would cost on one core)
    note: str = ""
    grown_from: int | None = None     # the configuration (index) it was grown from (``ModelSearch._grow``)
    history: list[dict] = field(default_factory=list)
    oof: Any = None                   # out-of-fold probabilities at its highest rung (not recorded)

    def record(self) -> dict:
        """Its row of cv_results.json."""
        return {"candidate": self.trial.candidate.name, "params": self.trial.params, "resampling": self.trial.resampling,
                "score": self.score, "score_std": self.score_std, "fold_scores": self.fold_scores,
                "round": self.round_no + 1, "rung": self.rung, "rows": self.rows,
                "seconds": round(self.seconds, 2), "stopped": self.stopped,
                "note": self.note, "rungs": self.history,
                "grown_from": None if self.grown_from is None else self.grown_from + 1}


def next_rung(finished: list[Evaluation], eta: int = ETA) -> tuple[list[Evaluation], list[Evaluation]]:
    """(survivors, pruned) of a rung: the best ceil(n/eta) by score go on to the next rung; ties keep the
    earlier configuration."""
    ranked = sorted(finished, key=lambda e: (-e.score, e.index))
    keep = math.ceil(len(ranked) / eta)
    return ranked[:keep], ranked[keep:]


def best_of(evaluations: list[Evaluation]) -> Evaluation | None:
    """Best score on the largest share of the folds any configuration completed (scores compare only
    on the same rows: within a rung, or on whole folds across rounds)."""
    done = [e for e in evaluations if e.score is not None]
    if not done:
        return None
    top = max(e.fraction for e in done)
    return min((e for e in done if e.fraction == top), key=lambda e: (-e.score, e.index))


def round_affordable(elapsed_s: float, last_seconds: float, last_configs: int, next_configs: int,
                     budget_s: float) -> bool:
    """Whether a further search round is started: the search so far (``elapsed_s``) plus the next round,
    predicted from the last round's wall seconds per configuration, must end within ``ROUND_SHARE`` of
    the budget. Extra rounds are for budgets far above what one round needs: a round that would take a
    big part of the budget (large data) is not started, and the rest of the budget is margin."""
    return elapsed_s + last_seconds / max(1, last_configs) * next_configs <= ROUND_SHARE * budget_s

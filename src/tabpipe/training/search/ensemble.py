"""Ensemble selection on out-of-fold predictions (Caruana et al., 2004) for the trainer's final model.

Design notes: docs/training.md#ensemble-selection
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tabpipe.training.metrics import ranking_score

if TYPE_CHECKING:
    from tabpipe.training.search.schedule import Evaluation

MIN_GAIN = 1e-4      # a pick must raise the mean per-fold score by at least this much
PER_CANDIDATE = 3    # the ensemble is chosen among each candidate's best configurations on whole folds


@dataclass(frozen=True)
class Selection:
    """Which configurations (positions in the list given to ``select``) with how many picks, and the score."""
    picks: dict[int, int]
    score: float

    @property
    def weights(self) -> dict[int, float]:
        """Each picked configuration's weight: its share of the picks."""
        total = sum(self.picks.values())
        return {i: n / total for i, n in self.picks.items()}


def cv_score(metric: str, y: np.ndarray, proba: np.ndarray, val_index: list[np.ndarray]) -> float:
    """Mean over folds of ``metric`` on each fold's validation rows (as a configuration's CV score)."""
    return float(np.mean([ranking_score(metric, y[va], proba[va]) for va in val_index]))


def select(oofs: list[np.ndarray], y: np.ndarray, val_index: list[np.ndarray], metric: str,
           max_picks: int) -> Selection:
    """Greedy ensemble selection over ``oofs`` (out-of-fold P(positive) per configuration, best first)."""
    if not oofs:
        raise ValueError("select needs at least one configuration's out-of-fold predictions")
    scores = [cv_score(metric, y, p, val_index) for p in oofs]
    first = int(np.argmax(scores))           # argmax keeps the earlier of equal scores
    picks, total, best = {first: 1}, oofs[first].astype(float), scores[first]
    for n in range(1, max_picks):
        trial = [cv_score(metric, y, (total + p) / (n + 1), val_index) for p in oofs]
        j = int(np.argmax(trial))
        if trial[j] < best + MIN_GAIN:
            break
        picks[j] = picks.get(j, 0) + 1
        total, best = total + oofs[j], trial[j]
    return Selection(picks=dict(sorted(picks.items())), score=best)


def contenders(evaluations: list[Evaluation], best: Evaluation) -> list[Evaluation]:
    """Each candidate's best ``PER_CANDIDATE`` configurations evaluated on the rows ``best`` was, best first."""
    ranked = sorted((e for e in evaluations if e.oof is not None and e.fraction == best.fraction),
                    key=lambda e: (-e.score, e.index))
    per_candidate: dict[str, int] = {}
    chosen = []
    for e in ranked:
        name = e.trial.candidate.name
        if per_candidate.get(name, 0) < PER_CANDIDATE:
            per_candidate[name] = per_candidate.get(name, 0) + 1
            chosen.append(e)
    return chosen


def describe(members: list[tuple[Evaluation, float]]) -> str:
    """``name`` for one configuration, ``ensemble(0.50 name#3 + ...)`` for several."""
    if len(members) == 1:
        return members[0][0].trial.candidate.name
    return "ensemble(" + " + ".join(f"{w:.2f} {e.trial.candidate.name}#{e.index + 1}" for e, w in members) + ")"

"""Configurations: what each candidate's search space yields for a seed, and the estimator one builds.

Pure and deterministic: the same candidates, seed and default resampling give the same
configurations in the same order (round 1 does not depend on how many rounds there are).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import ParameterSampler

from tabpipe.config import Candidate, import_class, parse_space


@dataclass(frozen=True)
class Trial:
    """One configuration: a candidate with sampled parameters and its resolved resampling."""
    candidate: Candidate
    params: dict
    resampling: str          # smotetomek | smote | none (a candidate's ``inherit`` resolved)

    @property
    def fold_key(self) -> str:
        """Which prepared folds this configuration fits on."""
        return self.resampling


def trial_rounds(candidates: tuple[Candidate, ...], seed: int, resampling: str, rounds: int) -> list[list[Trial]]:
    """The configurations of each search round, each round interleaved across candidates (round-robin)
    so that a budget cut is fair. Round 1 is the same whatever ``rounds`` is; later rounds sample
    ``n_iter`` new configurations per candidate (repeats of earlier ones are dropped, so a small grid
    or a candidate without a search space runs once). ``resampling`` is the pipeline's default for
    candidates that inherit it."""
    per_round: list[list[list[Trial]]] = [[] for _ in range(rounds)]
    for cand in candidates:
        space = {k: parse_space(v) for k, v in cand.search.items()}
        seen: set[str] = set()
        for r in range(rounds if space else 1):
            state = seed if r == 0 else np.random.RandomState([seed, r])   # round 1 as with a single round
            sampled = list(ParameterSampler(space, n_iter=cand.n_iter, random_state=state)) if space else [{}]
            group = []
            for params in ({**cand.params, **_native(s)} for s in sampled):
                key = json.dumps(params, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    group.append(Trial(cand, params, cand.resampling_or(resampling)))
            per_round[r].append(group)
    return [[t for group in itertools.zip_longest(*groups) for t in group if t is not None] for groups in per_round]


def trials(candidates: tuple[Candidate, ...], seed: int, resampling: str) -> list[Trial]:
    """The first round's configurations (``trial_rounds`` with one round)."""
    return trial_rounds(candidates, seed, resampling, 1)[0]


def _native(params: dict) -> dict:
    """numpy scalars from the sampler as plain Python values (readable logs, clean JSON)."""
    return {k: (round(v.item(), 6) if isinstance(v.item(), float) else v.item()) if hasattr(v, "item") else v
            for k, v in params.items()}


def make_estimator(trial: Trial, seed: int):
    """Unfitted estimator; ``random_state`` is set from the run seed unless the config fixes it."""
    est = import_class(trial.candidate.class_path)()
    params = dict(trial.params)
    if "random_state" in est.get_params() and "random_state" not in params:
        params["random_state"] = seed
    return est.set_params(**params)

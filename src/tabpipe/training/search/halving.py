"""The model search as it runs: rounds of successive halving on the executor, within the time budget.

``ModelSearch.run`` prepares the folds (``folds``), then runs the rounds of configurations
(``space``) rung by rung (``schedule``): each fit runs in a worker (``tabpipe.executors``) and is
stopped when it outlives its configuration's share of the budget or the budget itself; further rounds
follow while the next one is predicted to fit (``training.search_rounds`` at most). Every
configuration keeps its out-of-fold predictions; ``ModelSearch.final_members`` then picks the best
alone or a greedy ensemble of the best (``ensemble``, ``training.ensemble_size``).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tabpipe.errors import ModelQualityError
from tabpipe.executors.local import Task, WorkerPool
from tabpipe.training.metrics import ranking_score
from tabpipe.training.search.ensemble import contenders, describe, select
from tabpipe.training.search.folds import PreparedFolds, fit_fold, prepare_in_time, search_sample
from tabpipe.training.search.progress import NoProgress, SearchProgress
from tabpipe.training.search.schedule import (
    ETA,
    FAILED,
    FINISHED,
    OUT_OF_BUDGET,
    PENDING,
    PRUNED,
    Evaluation,
    best_of,
    config_share,
    next_rung,
    planned_evaluations,
    predicted_seconds,
    round_affordable,
    rung_fractions,
    waves,
)
from tabpipe.training.search.space import Trial, trial_rounds

if TYPE_CHECKING:
    from tabpipe.training.specs import TrainerConfig

log = logging.getLogger(__name__)

LAST_RESORT_ROWS = 2_000      # rows per fold when nothing could be evaluated within the budget


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class SearchOutcome:
    """Every configuration the search evaluated, and the rows their out-of-fold predictions are of."""
    evaluations: list[Evaluation]
    y: np.ndarray                 # labels of the search sample
    val_index: list[np.ndarray]   # each fold's validation rows (positions in ``y``)
    search_rows: int
    prep_seconds: float


class ModelSearch:
    """The search of one trainer run, ending by ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(self, config: TrainerConfig, deadline: float, progress: SearchProgress | None = None):
        self.config, self.deadline = config, deadline
        self.progress = progress or NoProgress()
        self.workers = cpu_count() if config.n_jobs < 0 else config.n_jobs

    def run(self, X: pd.DataFrame, y: np.ndarray) -> SearchOutcome:
        """Prepare the folds of the search sample, run the rounds, remove the work files."""
        cfg = self.config
        rounds = trial_rounds(cfg.candidates, cfg.seed, cfg.resampling, cfg.search_rounds)
        kinds = tuple(dict.fromkeys(t.fold_key for todo in rounds for t in todo))   # only the kinds in use
        # the search sample holds the feature values in clear: with sensitive columns not in the run folder
        work = Path(tempfile.mkdtemp(prefix="tabpipe-folds-")) if cfg.rows.in_memory else cfg.out_dir / "folds"
        try:
            with self._pool(work) as pool:
                warm_up = threading.Thread(target=pool.start, name="start-workers", daemon=True)
                warm_up.start()   # workers import scikit-learn while this process sizes the search sample
                sample = search_sample(cfg, X, y, kinds)
                warm_up.join()
                t0 = time.monotonic()
                folds = prepare_in_time(cfg, pool, self.workers, X, y, sample, kinds, work, self.deadline)
                prep_seconds = time.monotonic() - t0
                y_s = y[folds.sample]
                evaluations = self._search(pool, rounds, folds, y_s)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return SearchOutcome(evaluations, y_s, folds.val_index, len(folds.sample), prep_seconds)

    def _pool(self, work: Path) -> WorkerPool:
        """Where the tasks run (``training.executor``): local worker processes, or a Dask cluster whose
        size then sets ``self.workers``."""
        executor, preload = self.config.executor, (fit_fold.__module__,)   # where the workers' tasks live
        if executor.type == "dask":
            from tabpipe.executors.dask import DaskPool

            pool = DaskPool(executor.address, n_workers=executor.n_workers or self.workers, files_under=work,
                            preload=preload)
            self.workers = pool.n_workers
            return pool
        return WorkerPool(self.workers, threads_per_worker=max(1, cpu_count() // self.workers), preload=preload)

    # ------------------------------------------------------------------ rounds

    def _search(self, pool: WorkerPool, rounds: list[list[Trial]], folds: PreparedFolds,
                y: np.ndarray) -> list[Evaluation]:
        """Round after round of successive halving while the next round is predicted to fit the time left."""
        cfg = self.config
        evaluations: list[Evaluation] = []
        fold_rows = min(len(y) - len(va) for va in folds.val_index)
        self._counts = {"done": 0, "planned": 0}
        self.progress.begin(len(rounds[0]), planned_evaluations(len(rounds[0]), fold_rows), cfg.time_budget_s)
        last: tuple[float, int] | None = None     # (wall seconds, configurations) of the last round run
        try:
            for r, todo in enumerate(rounds):
                if not todo:
                    continue
                elapsed = cfg.time_budget_s - (self.deadline - time.monotonic())
                if last is not None and not round_affordable(elapsed, *last, len(todo), cfg.time_budget_s):
                    log.info("search round %d of %d not started: the last took %.1fs for %d configurations and "
                             "%.0fs of training.time_budget_s=%.0f are used", r + 1, len(rounds), last[0], last[1],
                             elapsed, cfg.time_budget_s)
                    break
                batch = [Evaluation(len(evaluations) + i, trial, round_no=r) for i, trial in enumerate(todo)]
                evaluations += batch
                t0 = time.monotonic()
                self._halving(pool, evaluations, batch, r, len(rounds), folds, y)
                last = (time.monotonic() - t0, len(batch))
                if time.monotonic() >= self.deadline:
                    break
            self._grow(pool, evaluations, folds, y)
            for e in evaluations:
                if e.stopped == PENDING:
                    e.stopped, e.note = OUT_OF_BUDGET, e.note or "the budget ran out first"
            if best_of(evaluations) is None:
                self._last_resort(pool, evaluations, rung_fractions(len(rounds[0]), fold_rows), folds, y)
        finally:
            self.progress.end()
        return evaluations

    def _halving(self, pool: WorkerPool, evaluations: list[Evaluation], batch: list[Evaluation], round_no: int,
                 rounds: int, folds: PreparedFolds, y: np.ndarray) -> None:
        """One round: successive halving of ``batch`` (appended to ``evaluations`` already)."""
        fold_rows = min(len(y) - len(va) for va in folds.val_index)
        fractions = rung_fractions(len(batch), fold_rows)
        self._counts["planned"] += planned_evaluations(len(batch), fold_rows)
        log.info("search round %d of at most %d: %d configurations, %d rung%s (%s of each fold's training rows), "
                 "%d worker%s", round_no + 1, rounds, len(batch), len(fractions), "s" if len(fractions) > 1 else "",
                 ", ".join(f"{f:.0%}" for f in fractions), self.workers, "s" if self.workers > 1 else "")
        alive = list(batch)
        for r, fraction in enumerate(fractions):
            remaining = self.deadline - time.monotonic()
            if r > 0:
                alive = self._affordable(alive, fractions[r - 1], fraction, remaining, len(fractions) - r)
            if not alive:
                break
            share = config_share(remaining, len(fractions) - r, len(alive))
            self._rung(pool, evaluations, alive, r, len(fractions), fraction, share, folds, y)
            finished = [e for e in alive if e.rung == r]
            if r == len(fractions) - 1:
                for e in finished:
                    e.stopped = FINISHED
                break
            alive, pruned = next_rung(finished)
            for e in pruned:
                e.stopped, e.note = PRUNED, f"not in the best 1/{ETA} of rung {r + 1}"

    def _grow(self, pool: WorkerPool, evaluations: list[Evaluation], folds: PreparedFolds, y: np.ndarray) -> None:
        """Each candidate with ``grow`` (model.yaml): its best configuration on whole folds again with the
        parameter multiplied, then again from that, while the CV score rises and the step is predicted to end
        within the rounds' share of the budget (``round_affordable``): the space's largest value of a number of
        iterations is no longer a cap when the data keep rewarding more (docs/training.md#growing-the-best)."""
        cfg, k = self.config, self.config.cv_folds
        growing = {e.trial.candidate.name: e.trial.candidate for e in evaluations if e.trial.candidate.grow}
        for name, cand in growing.items():
            whole = [e for e in evaluations if e.trial.candidate.name == name and e.fraction == 1.0
                     and e.score is not None]
            if not whole:
                continue
            base, grow = best_of(whole), cand.grow
            for _ in range(grow.times):
                value = base.trial.params.get(grow.param)
                if not isinstance(value, int):
                    break
                fit_s = base.history[-1]["fit_seconds"] * grow.factor       # fit time grows with the iterations
                wall = fit_s / k * waves(k, self.workers)
                elapsed = cfg.time_budget_s - (self.deadline - time.monotonic())
                if not round_affordable(elapsed, wall, 1, 1, cfg.time_budget_s):
                    log.info("growing %s stopped: %s=%d predicted to need %.0fs more than the search's share of "
                             "training.time_budget_s=%.0f", name, grow.param, round(value * grow.factor),
                             wall, cfg.time_budget_s)
                    break
                trial = Trial(cand, {**base.trial.params, grow.param: int(round(value * grow.factor))},
                              base.trial.resampling)
                e = Evaluation(len(evaluations), trial, round_no=base.round_no, grown_from=base.index,
                               note=f"grown from configuration {base.index + 1}: {grow.param} x{grow.factor:g}")
                evaluations.append(e)
                self._counts["planned"] += 1
                self._rung(pool, evaluations, [e], 0, 1, 1.0, self.deadline - time.monotonic(), folds, y)
                if e.score is None:
                    break
                e.stopped = FINISHED
                if e.score <= base.score:
                    e.note += f"; no better than configuration {base.index + 1}: growing stops"
                    break
                base = e

    def _affordable(self, alive: list[Evaluation], frac_from: float, frac_to: float, remaining: float,
                    rungs_left: int) -> list[Evaluation]:
        """Survivors that can run the next rung: predicted to fit their share, and all together the time left
        (the weaker ones give way first)."""
        k, share = self.config.cv_folds, config_share(remaining, rungs_left, len(alive))
        kept, total = [], 0.0
        for e in alive:   # best first
            fit_s = predicted_seconds(e.history[-1]["fit_seconds"], frac_from, frac_to)
            wall = fit_s / k * waves(k, self.workers)
            if wall > share or (kept and total + fit_s / self.workers > remaining):
                e.stopped = OUT_OF_BUDGET
                e.note = f"rung {len(e.history) + 1} predicted {wall:.0f}s, more than the {share:.0f}s it could have"
                log.info("%s %s: %s", e.trial.candidate.name, e.trial.params, e.note)
                continue
            kept.append(e)
            total += fit_s / self.workers
        return kept

    # ------------------------------------------------------------------ one rung on the executor

    def _rung(self, pool: WorkerPool, evaluations: list[Evaluation], alive: list[Evaluation], r: int, rungs: int,
              fraction: float, share: float, folds: PreparedFolds, y: np.ndarray) -> None:
        """Fit every fold of each configuration in ``alive`` on ``fraction`` of the fold's training rows;
        a configuration whose fit fails or outlives ``share`` (or the budget) stops there."""
        cfg, k = self.config, self.config.cv_folds
        timeout = share / waves(k, self.workers)
        tasks = []
        for e in alive:
            for i, fold in enumerate(folds.files[e.trial.fold_key]):
                rows = max(2, int(round(fold.n_fit * fraction)))
                tasks.append(Task((e.index, i), fit_fold, (e.trial, fold, rows, cfg.seed), timeout, self.deadline))
        probas: dict[int, dict[int, np.ndarray]] = {e.index: {} for e in alive}
        spans: dict[int, list[float]] = {e.index: [math.inf, 0.0, 0.0] for e in alive}  # first start, last end, fit s
        dropped: set[int] = set()
        for out in pool.run(tasks, cancel=lambda key: key[0] in dropped):
            index, fold_no = out.key
            e, now = evaluations[index], time.monotonic()
            span = spans[index]
            span[0], span[1], span[2] = min(span[0], now - out.seconds), max(span[1], now), span[2] + out.seconds
            if out.status == "done":
                probas[index][fold_no] = out.value
                if len(probas[index]) == k:
                    self._score(e, r, fraction, probas.pop(index), span, folds, y)
                    self._report(evaluations, e, r, rungs)
            elif out.status in ("failed", "timeout") and index not in dropped:
                dropped.add(index)
                e.seconds += span[1] - span[0]
                if out.status == "failed":
                    e.stopped, e.note = FAILED, f"fold {fold_no + 1}: {out.value}"
                elif now >= self.deadline - 0.05:
                    e.stopped, e.note = OUT_OF_BUDGET, f"stopped in rung {r + 1}: training.time_budget_s ran out"
                else:
                    e.stopped = OUT_OF_BUDGET
                    e.note = f"stopped in rung {r + 1} after {out.seconds:.1f}s: over its share of {share:.1f}s"
                log.info("[rung %d/%d] %s %s resampling=%s: %s", r + 1, rungs, e.trial.candidate.name, e.trial.params,
                         e.trial.resampling, e.note)
                self._counts["done"] += 1
                self._update(evaluations)

    def _score(self, e: Evaluation, r: int, fraction: float, probas: dict[int, np.ndarray], span: list[float],
               folds: PreparedFolds, y: np.ndarray) -> None:
        """Record a configuration's rung: its out-of-fold predictions, per-fold scores and seconds."""
        metric = self.config.metric
        oof = np.empty(len(y))
        scores = []
        for fold_no, va in enumerate(folds.val_index):
            oof[va] = probas[fold_no]
            scores.append(ranking_score(metric, y[va], probas[fold_no]))
        rows = int(round(min(f.n_fit for f in folds.files[e.trial.fold_key]) * fraction))
        e.rung, e.fraction, e.rows, e.oof = r, fraction, rows, oof
        e.score, e.score_std, e.fold_scores = float(np.mean(scores)), float(np.std(scores)), scores
        e.seconds += span[1] - span[0]
        e.fit_seconds += span[2]
        e.history.append({"rung": r + 1, "rows": rows, "score": e.score, "seconds": round(span[1] - span[0], 2),
                          "fit_seconds": round(span[2], 2)})

    def _report(self, evaluations: list[Evaluation], e: Evaluation, r: int, rungs: int) -> None:
        self._counts["done"] += 1
        best = best_of(evaluations)
        log.info("[rung %d/%d · %d/%d] %s %s resampling=%s %s=%.4f ± %.4f on %d rows (%.1fs) · best %.4f · %.0f/%.0fs",
                 r + 1, rungs, self._counts["done"], self._counts["planned"], e.trial.candidate.name, e.trial.params,
                 e.trial.resampling, self.config.metric, e.score, e.score_std, e.rows, e.history[-1]["seconds"],
                 best.score, self.config.time_budget_s - (self.deadline - time.monotonic()), self.config.time_budget_s)
        self._update(evaluations)

    def _update(self, evaluations: list[Evaluation]) -> None:
        best = best_of(evaluations)
        self.progress.update(done=self._counts["done"], planned=self._counts["planned"],
                             settled=sum(e.stopped != PENDING or e.fraction == 1.0 for e in evaluations),
                             configs=len(evaluations), best=None if best is None else best.score,
                             elapsed_s=self.config.time_budget_s - (self.deadline - time.monotonic()),
                             budget_s=self.config.time_budget_s)

    def _last_resort(self, pool: WorkerPool, evaluations: list[Evaluation], fractions: list[float],
                     folds: PreparedFolds, y: np.ndarray) -> None:
        """No configuration finished within the budget: evaluate the first that did not fail on the
        smallest rung anyway (bounded), so the run still ends with a model, and say so."""
        candidates = [e for e in evaluations if e.stopped != FAILED]
        if not candidates:
            raise ModelQualityError("every configuration failed in cross-validation; the first error: "
                                    f"{evaluations[0].trial.candidate.name}: {evaluations[0].note}")
        e, k = candidates[0], self.config.cv_folds
        limit = max(0.05 * self.config.time_budget_s, 5.0)   # per fit, on at most LAST_RESORT_ROWS rows
        fraction = min(fractions[0], LAST_RESORT_ROWS / min(f.n_fit for f in folds.files[e.trial.fold_key]))
        log.warning("no configuration was cross-validated within training.time_budget_s=%.0f; evaluating %s anyway "
                    "on %.0f%% of the rows (at most %.0fs per fit)", self.config.time_budget_s, e.trial.candidate.name,
                    100 * fraction, limit)
        self.deadline = time.monotonic() + limit * waves(k, self.workers)
        self._rung(pool, evaluations, [e], 0, len(fractions), fraction, limit * waves(k, self.workers), folds, y)
        if e.score is None:
            raise ModelQualityError(f"no configuration could be cross-validated within training.time_budget_s="
                                    f"{self.config.time_budget_s:.0f} (the last one tried: {e.note}); raise the budget")
        e.stopped, e.note = FINISHED, "evaluated after the budget ran out: a run needs one evaluated configuration"

    # ------------------------------------------------------------------ the final model's members

    def final_members(self, outcome: SearchOutcome,
                      best: Evaluation) -> tuple[list[tuple[Evaluation, float]], float, np.ndarray]:
        """(members with weights, CV score, out-of-fold P(positive)) of the final model: a greedy ensemble of
        each candidate's best configurations evaluated on whole folds, or ``best`` alone."""
        cfg = self.config
        pool = contenders(outcome.evaluations, best)
        if cfg.ensemble_size <= 1 or len(pool) < 2 or best.fraction < 1.0:
            return [(best, 1.0)], best.score, best.oof
        if time.monotonic() >= self.deadline:
            log.info("no ensemble selection: training.time_budget_s=%.0f has run out", cfg.time_budget_s)
            return [(best, 1.0)], best.score, best.oof
        chosen = select([e.oof for e in pool], outcome.y, outcome.val_index, cfg.metric, cfg.ensemble_size)
        members = [(pool[i], w) for i, w in chosen.weights.items()]
        oof = sum(w * e.oof for e, w in members)
        log.info("ensemble selection among %d configurations (each candidate's best): %s, %s=%.4f (best alone %.4f)",
                 len(pool), describe(members), cfg.metric, chosen.score, best.score)
        return members, chosen.score, oof

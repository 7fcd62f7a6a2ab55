"""ModelTrainer: pick a model by stratified k-fold CV on the training split, tune its threshold, fit it.

Candidates come from ``model.yaml`` (class path, fixed params, search space, resampling). The
budget ``training.time_budget_s`` covers everything before the final refit (reported apart):
1. Search sample: above ``PROBE_ABOVE`` rows, preparing one fold is timed on two small samples and
   the search runs on the largest stratified sample whose folds are predicted to be prepared in
   ``PREP_SHARE`` of the budget and that holds at most ``MAX_SEARCH_CELLS`` values once preprocessed
   (wide one-hot data: bounded memory per worker); the refit uses every training row.
2. Folds, prepared once: each fold's preprocessing is fitted on its training rows only, then each
   resampling kind that some configuration uses is applied to those rows only; the prepared folds
   are written once (float32 .npy, rows in a stratified order so any prefix is a stratified sample)
   and memory-mapped by every fit. They are work files, removed when the search ends; with
   ``sensitive: true`` columns they go to a private temporary folder, not the run folder.
3. Successive halving on rows (``tabpipe.training.search.schedule``): each fit runs in a worker process
   (``tabpipe.executors.local``) and is stopped when it outlives its configuration's share of the budget
   or the budget itself. Further rounds of new configurations follow while the next one is predicted
   to fit (``training.search_rounds`` at most).
4. Ensemble selection (``tabpipe.training.search.ensemble``, ``training.ensemble_size``): the final model is a weighted
   mean of the configurations whose out-of-fold predictions average best, or the best one alone.
The decision threshold maximises F1 on the chosen model's out-of-fold predictions (never the test
split). The result is one ``TabularModel``: preprocessing + estimator + threshold.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dill
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from tabpipe.training.components.transformation import split_xy
from tabpipe.training.specs import (
    TrainerArtifact,
    TrainerConfig,
    TransformationArtifact,
    ValidationArtifact,
)
from tabpipe.training.search.ensemble import select
from tabpipe.errors import DataError, ModelQualityError
from tabpipe.model.estimators import WeightedMean
from tabpipe.executors.local import Task, WorkerPool
from tabpipe.training.metrics import best_f1_threshold, ranking_score
from tabpipe.model import TabularModel
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.training.resampling import resample
from tabpipe.schema import Schema, positive_mask
from tabpipe.training.search.schedule import (
    ETA,
    FAILED,
    FINISHED,
    OUT_OF_BUDGET,
    PENDING,
    PRUNED,
    Evaluation,
    NoProgress,
    SearchProgress,
    Trial,
    affordable_rows,
    best_of,
    config_share,
    make_estimator,
    predicted_seconds,
    promote,
    round_affordable,
    rung_fractions,
    trial_rounds,
    waves,
)

log = logging.getLogger(__name__)

PROBE_ABOVE = 20_000          # training rows above which the search sample is sized by a timed probe
PROBE_ROWS = (1_000, 4_000)
PREP_SHARE = 0.25             # of the budget, for preparing the folds (planned from the probe) ...
PREP_LIMIT = 0.5              # ... and at most this share of what is left (then it starts again on fewer rows)
MIN_SEARCH_ROWS = 5_000
LAST_RESORT_ROWS = 2_000      # rows per fold when nothing could be evaluated within the budget
MAX_SEARCH_ROWS = 250_000
ENSEMBLE_PER_CANDIDATE = 3    # the ensemble is chosen among each candidate's best configurations on whole folds
MAX_SEARCH_CELLS = 50_000_000  # search sample rows x preprocessed columns (~200 MB per float32 fold matrix): on wide
                               # one-hot data each worker preparing a fold holds a few such matrices at once
Y_COLUMN = "__tabpipe_y__"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of rows whose every prefix holds each class in (nearly) its overall share."""
    rng = np.random.default_rng(seed)
    rank = np.empty(len(y))
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rank[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(rank, kind="stable")


# --------------------------------------------------------------------------- prepared folds (files)

@dataclass(frozen=True)
class FoldFiles:
    """One prepared fold for one resampling kind: training rows (resampled, stratified order) and validation rows."""
    x_fit: Path
    y_fit: Path
    x_val: Path
    n_fit: int


_CACHE: dict[str, object] = {}   # per process: the search sample and memory-mapped folds, read once


def _load(path: Path) -> np.ndarray:
    key = str(path)
    if key not in _CACHE:
        _CACHE[key] = np.load(path, mmap_mode="c")   # copy-on-write: shared pages, writable for estimators
    return _CACHE[key]


def _sample(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    key = str(path)
    if key not in _CACHE:
        frame = pd.read_parquet(path)
        _CACHE[key] = (frame.drop(columns=Y_COLUMN), frame[Y_COLUMN].to_numpy())
    return _CACHE[key]


def prepare_fold(sample_path: Path, schema: Schema, max_categories: int, tr: np.ndarray, va: np.ndarray,
                 kinds: tuple[str, ...], seed: int, out: Path) -> dict[str, FoldFiles]:
    """Fit the preprocessing on the fold's training rows, resample those rows once per kind, write the files."""
    X, y = _sample(sample_path)
    pre = build_preprocessor(schema, max_categories)
    X_tr, X_va = fit_transform(pre, X.iloc[tr], X.iloc[va])   # float32
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "x_val.npy", X_va)
    del X_va
    files = {}
    for kind in kinds:
        X_fit, y_fit = resample(X_tr, y[tr], kind, seed)
        order = stratified_order(y_fit, seed)
        paths = FoldFiles(out / f"x_fit_{kind}.npy", out / f"y_fit_{kind}.npy", out / "x_val.npy", len(y_fit))
        np.save(paths.x_fit, np.asarray(X_fit, dtype=np.float32)[order])
        np.save(paths.y_fit, np.asarray(y_fit)[order])
        files[kind] = paths
        del X_fit, y_fit
    return files


def fit_fold(trial: Trial, fold: FoldFiles, rows: int, seed: int) -> np.ndarray:
    """Fit ``trial`` on the first ``rows`` training rows of a prepared fold; P(positive) of its validation rows."""
    X, y = _load(fold.x_fit)[:rows], _load(fold.y_fit)[:rows]
    if len(np.unique(y)) < 2:
        raise DataError(f"the first {rows} training rows of a fold hold only one class")
    est = make_estimator(trial, seed).fit(X, y)
    return est.predict_proba(_load(fold.x_val))[:, list(est.classes_).index(1)]


def original_labels(target: pd.Series, positive) -> tuple:
    """(negative, positive) label values exactly as they appear in the data."""
    values = pd.Series(target.dropna().unique())
    mask = positive_mask(values, positive)
    native = [v.item() if hasattr(v, "item") else v for v in (values[~mask].iloc[0], values[mask].iloc[0])]
    return tuple(native)


class _OutOfTime(Exception):
    """Preparing the folds took longer than its part of the budget."""


# --------------------------------------------------------------------------- the trainer

class ModelTrainer:
    def __init__(self, config: TrainerConfig, validation: ValidationArtifact, transformation: TransformationArtifact,
                 progress: SearchProgress | None = None):
        self.config, self.validation, self.transformation = config, validation, transformation
        self.progress = progress or NoProgress()
        self.workers = cpu_count() if config.n_jobs < 0 else config.n_jobs

    def run(self) -> TrainerArtifact:
        cfg = self.config
        start = time.monotonic()
        self.deadline = start + cfg.time_budget_s
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        train = cfg.rows.read_frame(self.validation.train_path)
        X, y = split_xy(train, cfg.schema)
        if min(np.bincount(y, minlength=2)) < cfg.cv_folds:
            raise DataError(f"the training split has {y.sum()} positive and {len(y) - y.sum()} negative rows; "
                            f"training.cv_folds={cfg.cv_folds} needs at least that many of each")
        rounds = trial_rounds(cfg.candidates, cfg.seed, cfg.resampling, cfg.search_rounds)
        kinds = tuple(dict.fromkeys(t.fold_key for todo in rounds for t in todo))   # only the kinds in use
        # the search sample holds the feature values in clear: with sensitive columns not in the run folder
        work = Path(tempfile.mkdtemp(prefix="tabpipe-folds-")) if cfg.rows.in_memory else cfg.out_dir / "folds"
        try:
            with self._pool(work) as pool:
                warm_up = threading.Thread(target=pool.start, name="start-workers", daemon=True)
                warm_up.start()   # workers import scikit-learn while this process sizes the search sample
                sample = self._search_sample(X, y, kinds)
                warm_up.join()
                t0 = time.monotonic()
                folds, val_index, sample = self._prepare_in_time(pool, X, y, sample, kinds, work)
                prep_seconds = time.monotonic() - t0
                y_s = y[sample]
                evaluations = self._search(pool, rounds, folds, val_index, y_s)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        target = train[cfg.schema.target.name]
        del train, X   # the refit works on the transformation stage's arrays
        (cfg.out_dir / "cv_results.json").write_text(json.dumps([e.record() for e in evaluations], indent=2, default=str))
        best = best_of(evaluations)
        members, cv_score, oof = self._ensemble(evaluations, best, val_index, y_s)
        search_seconds = time.monotonic() - start
        log.info("search: %.1fs of training.time_budget_s=%.0f (folds %.1fs); best: %s %s=%.4f on %d rows per fold; "
                 "final model: %s %s=%.4f", search_seconds, cfg.time_budget_s, prep_seconds, best.trial.candidate.name,
                 cfg.metric, best.score, best.rows, _describe(members), cfg.metric, cv_score)
        if cv_score < cfg.min_cv_score:
            raise ModelQualityError(f"best candidate {_describe(members)} scored {cfg.metric}={cv_score:.4f} "
                                    f"in cross-validation, below training.min_cv_score={cfg.min_cv_score}")
        threshold, _ = best_f1_threshold(y_s, oof)
        t0 = time.monotonic()
        model = self._fit_final(members, threshold, target)
        refit_seconds = time.monotonic() - t0
        log.info("final refit of %s on %d training rows: %.1fs", model.candidate, len(y), refit_seconds)
        with open(cfg.out_dir / "model.pkl", "wb") as fh:
            dill.dump(model, fh)
        stopped = {}
        for e in evaluations:
            stopped[e.stopped] = stopped.get(e.stopped, 0) + 1
        return TrainerArtifact(
            model_path=cfg.out_dir / "model.pkl", cv_results_path=cfg.out_dir / "cv_results.json",
            best_candidate=model.candidate, best_params=_params_of(members), best_resampling=model.resampling,
            cv_score=cv_score, threshold=threshold,
            configs_tried=sum(e.score is not None for e in evaluations), configs_total=len(evaluations),
            stopped=stopped, search_rows=len(sample), search_seconds=round(search_seconds, 2),
            prep_seconds=round(prep_seconds, 2), refit_seconds=round(refit_seconds, 2),
        )

    def _pool(self, work: Path) -> WorkerPool:
        """Where the tasks run (``training.executor``): local worker processes, or a Dask cluster whose
        size then sets ``self.workers``."""
        executor = self.config.executor
        if executor.type == "dask":
            from tabpipe.executors.dask import DaskPool

            pool = DaskPool(executor.address, n_workers=executor.n_workers or self.workers, files_under=work,
                            preload=(__name__,))
            self.workers = pool.n_workers
            return pool
        return WorkerPool(self.workers, threads_per_worker=max(1, cpu_count() // self.workers), preload=(__name__,))

    # ------------------------------------------------------------------ 1. search sample

    def _search_sample(self, X: pd.DataFrame, y: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
        """Row positions the search uses: all, or a stratified sample whose folds can be prepared in time."""
        cfg, n = self.config, len(y)
        if n <= PROBE_ABOVE:
            return np.arange(n)
        probe, k = [], cfg.cv_folds
        for rows in PROBE_ROWS:   # one fold's work: fit + transform its training rows, transform its validation rows
            idx = self._stratified(y, rows + rows // (k - 1), salt=rows)
            tr, va = train_test_split(idx, train_size=rows, stratify=y[idx], random_state=cfg.seed)
            t0 = time.monotonic()
            X_tr = fit_transform(build_preprocessor(cfg.schema, cfg.max_categories), X.iloc[tr], X.iloc[va])[0]
            for kind in kinds:
                resample(X_tr, y[tr], kind, cfg.seed)
            probe.append((rows, time.monotonic() - t0))
        width = X_tr.shape[1]
        allowed = PREP_SHARE * cfg.time_budget_s   # no credit for parallel workers: start-up and I/O eat into it
        rows = min(affordable_rows(n, probe, allowed, k, floor_rows=MIN_SEARCH_ROWS), MAX_SEARCH_ROWS,
                   max(MIN_SEARCH_ROWS, MAX_SEARCH_CELLS // max(width, 1)))
        log.info("fold preparation probe (%s): %s; %d columns after preprocessing; search sample: %d of %d training rows",
                 "+".join(kinds), ", ".join(f"{r} rows {s:.2f}s" for r, s in probe), width, rows, n)
        return np.arange(n) if rows >= n else self._stratified(y, rows, salt=0)

    def _stratified(self, y: np.ndarray, rows: int, salt: int) -> np.ndarray:
        if rows >= len(y):
            return np.arange(len(y))
        idx, _ = train_test_split(np.arange(len(y)), train_size=rows, stratify=y, random_state=self.config.seed + salt)
        return np.sort(idx)

    # ------------------------------------------------------------------ 2. folds

    def _prepare_in_time(self, pool: WorkerPool, X: pd.DataFrame, y: np.ndarray, sample: np.ndarray,
                         kinds: tuple[str, ...], work: Path):
        """Prepare the folds of ``sample``; if that outlives PREP_LIMIT of the time left (a busy machine, a
        wrong estimate), start again on a quarter of the rows. Returns (folds, validation rows, sample)."""
        while True:
            deadline = time.monotonic() + PREP_LIMIT * (self.deadline - time.monotonic())
            last = len(sample) <= MIN_SEARCH_ROWS
            try:
                folds, val_index = self._prepare(pool, X.iloc[sample], y[sample], kinds, work,
                                                 math.inf if last else deadline)
                return folds, val_index, sample
            except _OutOfTime:
                rows = max(MIN_SEARCH_ROWS, len(sample) // 4)
                log.warning("preparing the folds of %d rows outlived %.0f%% of training.time_budget_s; "
                            "starting again on %d rows", len(sample), 100 * PREP_LIMIT, rows)
                shutil.rmtree(work, ignore_errors=True)
                sample = self._stratified(y, rows, salt=len(sample))

    def _prepare(self, pool: WorkerPool, X: pd.DataFrame, y: np.ndarray, kinds: tuple[str, ...],
                 work: Path, deadline: float) -> tuple[dict[str, list[FoldFiles]], list[np.ndarray]]:
        cfg = self.config
        work.mkdir(parents=True, exist_ok=True)
        sample_path = work / "sample.parquet"
        X.assign(**{Y_COLUMN: y}).to_parquet(sample_path)
        splits = list(StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed).split(X, y))
        log.info("preparing %d folds: preprocessing + %s on ~%d training rows each", len(splits), " / ".join(kinds),
                 len(y) * (cfg.cv_folds - 1) // cfg.cv_folds)
        t0 = time.monotonic()
        calls = [(sample_path, cfg.schema, cfg.max_categories, tr, va, kinds, cfg.seed, work / f"fold{i}")
                 for i, (tr, va) in enumerate(splits)]
        if self.workers == 1:   # in this process, one fold after another
            prepared = [prepare_fold(*args) for args in calls]
        else:
            prepared = [None] * len(calls)
            for out in pool.run([Task(i, prepare_fold, args, timeout_s=math.inf, deadline=deadline)
                                 for i, args in enumerate(calls)]):
                if out.status == "timeout":
                    raise _OutOfTime
                if out.status != "done":
                    raise DataError(f"preparing fold {out.key + 1} failed: {out.value}")
                prepared[out.key] = out.value
        log.info("prepared %d folds (preprocess + %s) in %.1fs", len(splits), " / ".join(kinds), time.monotonic() - t0)
        return {kind: [p[kind] for p in prepared] for kind in kinds}, [va for _, va in splits]

    # ------------------------------------------------------------------ 3. successive halving

    def _search(self, pool: WorkerPool, rounds: list[list[Trial]], folds: dict[str, list[FoldFiles]],
                val_index: list[np.ndarray], y: np.ndarray) -> list[Evaluation]:
        """Round after round of successive halving while the next round is predicted to fit the time left."""
        cfg = self.config
        evaluations: list[Evaluation] = []
        fold_rows = min(len(y) - len(va) for va in val_index)
        self._counts = {"done": 0, "planned": 0}
        self.progress.begin(len(rounds[0]), _planned(len(rounds[0]), fold_rows), cfg.time_budget_s)
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
                self._halving(pool, evaluations, batch, r, len(rounds), folds, val_index, y)
                last = (time.monotonic() - t0, len(batch))
                if time.monotonic() >= self.deadline:
                    break
            for e in evaluations:
                if e.stopped == PENDING:
                    e.stopped, e.note = OUT_OF_BUDGET, e.note or "the budget ran out first"
            if best_of(evaluations) is None:
                self._last_resort(pool, evaluations, rung_fractions(len(rounds[0]), fold_rows), folds, val_index, y)
        finally:
            self.progress.end()
        return evaluations

    def _halving(self, pool: WorkerPool, evaluations: list[Evaluation], batch: list[Evaluation], round_no: int,
                 rounds: int, folds: dict[str, list[FoldFiles]], val_index: list[np.ndarray], y: np.ndarray) -> None:
        """One round: successive halving of ``batch`` (appended to ``evaluations`` already)."""
        fold_rows = min(len(y) - len(va) for va in val_index)
        fractions = rung_fractions(len(batch), fold_rows)
        self._counts["planned"] += _planned(len(batch), fold_rows)
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
            self._rung(pool, evaluations, alive, r, len(fractions), fraction, share, folds, val_index, y)
            finished = [e for e in alive if e.rung == r]
            if r == len(fractions) - 1:
                for e in finished:
                    e.stopped = FINISHED
                break
            alive, pruned = promote(finished)
            for e in pruned:
                e.stopped, e.note = PRUNED, f"not in the best 1/{ETA} of rung {r + 1}"

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

    def _rung(self, pool: WorkerPool, evaluations: list[Evaluation], alive: list[Evaluation], r: int, rungs: int,
              fraction: float, share: float, folds: dict[str, list[FoldFiles]], val_index: list[np.ndarray],
              y: np.ndarray) -> None:
        cfg, k = self.config, self.config.cv_folds
        timeout = share / waves(k, self.workers)
        tasks = []
        for e in alive:
            for i, fold in enumerate(folds[e.trial.fold_key]):
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
                    self._score(e, r, fraction, probas.pop(index), span, val_index, y, folds)
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
               val_index: list[np.ndarray], y: np.ndarray, folds: dict[str, list[FoldFiles]]) -> None:
        metric = self.config.metric
        oof = np.empty(len(y))
        scores = []
        for fold_no, va in enumerate(val_index):
            oof[va] = probas[fold_no]
            scores.append(ranking_score(metric, y[va], probas[fold_no]))
        rows = int(round(min(f.n_fit for f in folds[e.trial.fold_key]) * fraction))
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
                     folds: dict[str, list[FoldFiles]], val_index: list[np.ndarray], y: np.ndarray) -> None:
        """No configuration finished within the budget: evaluate the first that did not fail on the
        smallest rung anyway (bounded), so the run still ends with a model, and say so."""
        candidates = [e for e in evaluations if e.stopped != FAILED]
        if not candidates:
            raise ModelQualityError("every configuration failed in cross-validation; the first error: "
                                    f"{evaluations[0].trial.candidate.name}: {evaluations[0].note}")
        e, k = candidates[0], self.config.cv_folds
        limit = max(0.05 * self.config.time_budget_s, 5.0)   # per fit, on at most LAST_RESORT_ROWS rows
        fraction = min(fractions[0], LAST_RESORT_ROWS / min(f.n_fit for f in folds[e.trial.fold_key]))
        log.warning("no configuration was cross-validated within training.time_budget_s=%.0f; evaluating %s anyway "
                    "on %.0f%% of the rows (at most %.0fs per fit)", self.config.time_budget_s, e.trial.candidate.name,
                    100 * fraction, limit)
        self.deadline = time.monotonic() + limit * waves(k, self.workers)
        self._rung(pool, evaluations, [e], 0, len(fractions), fraction, limit * waves(k, self.workers), folds,
                   val_index, y)
        if e.score is None:
            raise ModelQualityError(f"no configuration could be cross-validated within training.time_budget_s="
                                    f"{self.config.time_budget_s:.0f} (the last one tried: {e.note}); raise the budget")
        e.stopped, e.note = FINISHED, "evaluated after the budget ran out: a run needs one evaluated configuration"

    # ------------------------------------------------------------------ 4. ensemble

    def _ensemble(self, evaluations: list[Evaluation], best: Evaluation, val_index: list[np.ndarray],
                  y: np.ndarray) -> tuple[list[tuple[Evaluation, float]], float, np.ndarray]:
        """(members with weights, CV score, out-of-fold P(positive)) of the final model: a greedy ensemble of
        each candidate's best ENSEMBLE_PER_CANDIDATE configurations evaluated on whole folds, or ``best`` alone."""
        cfg = self.config
        ranked = sorted((e for e in evaluations if e.oof is not None and e.fraction == best.fraction),
                        key=lambda e: (-e.score, e.index))
        per_candidate: dict[str, int] = {}
        pool = []
        for e in ranked:   # the best few of each candidate: different model families make different errors
            name = e.trial.candidate.name
            if per_candidate.get(name, 0) < ENSEMBLE_PER_CANDIDATE:
                per_candidate[name] = per_candidate.get(name, 0) + 1
                pool.append(e)
        if cfg.ensemble_size <= 1 or len(pool) < 2 or best.fraction < 1.0:
            return [(best, 1.0)], best.score, best.oof
        if time.monotonic() >= self.deadline:
            log.info("no ensemble selection: training.time_budget_s=%.0f has run out", cfg.time_budget_s)
            return [(best, 1.0)], best.score, best.oof
        chosen = select([e.oof for e in pool], y, val_index, cfg.metric, cfg.ensemble_size)
        members = [(pool[i], w) for i, w in chosen.weights.items()]
        oof = sum(w * e.oof for e, w in members)
        log.info("ensemble selection among %d configurations (each candidate's best): %s, %s=%.4f (best alone %.4f)", len(pool),
                 _describe(members), cfg.metric, chosen.score, best.score)
        return members, chosen.score, oof

    # ------------------------------------------------------------------ final refit

    def _fit_final(self, members: list[tuple[Evaluation, float]], threshold: float, target: pd.Series) -> TabularModel:
        """Fit the chosen configuration(s) on the whole (resampled) training split, behind the fitted
        preprocessor; several members become one ``WeightedMean``."""
        cfg, art = self.config, self.transformation
        X, y = cfg.rows.read_array(art.x_train_path), cfg.rows.read_array(art.y_train_path)
        kinds = dict.fromkeys(e.trial.resampling for e, _ in members)
        resampled = {kind: resample(X, y, kind, cfg.seed) for kind in kinds}
        del X, y   # the fits need only the resampled rows (the same arrays when nothing is resampled)
        fitted = [make_estimator(e.trial, cfg.seed).fit(*resampled[e.trial.resampling]) for e, _ in members]
        estimator = fitted[0] if len(fitted) == 1 else WeightedMean.of_fitted(fitted, [w for _, w in members])
        with open(art.preprocessor_path, "rb") as fh:
            # bandit B301: written by this run's transformation stage
            preprocessor = dill.load(fh)  # nosec B301
        return TabularModel(schema=cfg.schema, preprocessor=preprocessor, estimator=estimator, threshold=threshold,
                            labels=original_labels(target, cfg.schema.target.positive),
                            candidate=members[0][0].trial.candidate.name if len(members) == 1 else "ensemble",
                            resampling="+".join(sorted(resampled)))


def _planned(configs: int, fold_rows: int) -> int:
    """Evaluations one round of successive halving plans for ``configs`` configurations."""
    planned, n = 0, configs
    for _ in rung_fractions(configs, fold_rows):
        planned, n = planned + n, math.ceil(n / ETA)
    return planned


def _describe(members: list[tuple[Evaluation, float]]) -> str:
    """``name`` for one configuration, ``ensemble(0.50 name#3 + ...)`` for several."""
    if len(members) == 1:
        return members[0][0].trial.candidate.name
    return "ensemble(" + " + ".join(f"{w:.2f} {e.trial.candidate.name}#{e.index + 1}" for e, w in members) + ")"


def _params_of(members: list[tuple[Evaluation, float]]) -> dict:
    """The chosen configuration's parameters, or an ensemble's members (candidate, params, resampling, weight, score)."""
    if len(members) == 1:
        return members[0][0].trial.params
    return {"members": [{"candidate": e.trial.candidate.name, "params": e.trial.params, "resampling": e.trial.resampling,
                         "weight": round(w, 4), "score": e.score} for e, w in members]}

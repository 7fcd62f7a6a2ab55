"""The search's cross-validation folds: a stratified search sample, its k folds prepared once as files.

- Search sample: above ``PROBE_ABOVE`` rows, preparing one fold is timed on two small samples and the
  search runs on the largest stratified sample whose folds are predicted to be prepared in
  ``PREP_SHARE`` of the budget and that holds at most ``MAX_SEARCH_CELLS`` values once preprocessed
  (wide one-hot data: bounded memory per worker).
- Each fold's preprocessing is fitted on its training rows only, then each resampling kind that some
  configuration uses is applied to those rows only (never to validation rows). The prepared folds are
  written once (float32 .npy, rows in a stratified order so any prefix is a stratified sample) and
  memory-mapped by every fit (``fit_fold``, run in the workers).
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from tabpipe.errors import DataError
from tabpipe.executors.local import Task, WorkerPool
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.schema import Schema
from tabpipe.training.resampling import resample
from tabpipe.training.search.schedule import affordable_rows
from tabpipe.training.search.space import Trial, make_estimator

if TYPE_CHECKING:
    from tabpipe.training.specs import TrainerConfig

log = logging.getLogger(__name__)

PROBE_ABOVE = 20_000          # training rows above which the search sample is sized by a timed probe
PROBE_ROWS = (1_000, 4_000)
PREP_SHARE = 0.25             # of the budget, for preparing the folds (planned from the probe) ...
PREP_LIMIT = 0.5              # ... and at most this share of what is left (then it starts again on fewer rows)
MIN_SEARCH_ROWS = 5_000
MAX_SEARCH_ROWS = 250_000
MAX_SEARCH_CELLS = 50_000_000  # search sample rows x preprocessed columns (~200 MB per float32 fold matrix): on wide
                               # one-hot data each worker preparing a fold holds a few such matrices at once
Y_COLUMN = "__tabpipe_y__"


@dataclass(frozen=True)
class FoldFiles:
    """One prepared fold for one resampling kind: training rows (resampled, stratified order) and validation rows."""
    x_fit: Path
    y_fit: Path
    x_val: Path
    n_fit: int


@dataclass(frozen=True)
class PreparedFolds:
    """The search sample's folds: per resampling kind one ``FoldFiles`` per fold, and each fold's validation rows."""
    files: dict[str, list[FoldFiles]]
    val_index: list[np.ndarray]   # positions in the search sample
    sample: np.ndarray            # the search sample: row positions in the training split


def stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of rows whose every prefix holds each class in (nearly) its overall share."""
    rng = np.random.default_rng(seed)
    rank = np.empty(len(y))
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rank[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(rank, kind="stable")


def stratified_rows(y: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a stratified sample of ``rows`` rows (all of them if there are no more)."""
    if rows >= len(y):
        return np.arange(len(y))
    idx, _ = train_test_split(np.arange(len(y)), train_size=rows, stratify=y, random_state=seed)
    return np.sort(idx)


# --------------------------------------------------------------------------- the search sample

def search_sample(config: TrainerConfig, X: pd.DataFrame, y: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """Row positions the search uses: all, or a stratified sample whose folds can be prepared in time."""
    n, k = len(y), config.cv_folds
    if n <= PROBE_ABOVE:
        return np.arange(n)
    probe = []
    for rows in PROBE_ROWS:   # one fold's work: fit + transform its training rows, transform its validation rows
        idx = stratified_rows(y, rows + rows // (k - 1), seed=config.seed + rows)
        tr, va = train_test_split(idx, train_size=rows, stratify=y[idx], random_state=config.seed)
        t0 = time.monotonic()
        X_tr = fit_transform(build_preprocessor(config.schema, config.max_categories), X.iloc[tr], X.iloc[va])[0]
        for kind in kinds:
            resample(X_tr, y[tr], kind, config.seed)
        probe.append((rows, time.monotonic() - t0))
    width = X_tr.shape[1]
    allowed = PREP_SHARE * config.time_budget_s   # no credit for parallel workers: start-up and I/O eat into it
    rows = min(affordable_rows(n, probe, allowed, k, floor_rows=MIN_SEARCH_ROWS), MAX_SEARCH_ROWS,
               max(MIN_SEARCH_ROWS, MAX_SEARCH_CELLS // max(width, 1)))
    log.info("fold preparation probe (%s): %s; %d columns after preprocessing; search sample: %d of %d training rows",
             "+".join(kinds), ", ".join(f"{r} rows {s:.2f}s" for r, s in probe), width, rows, n)
    return np.arange(n) if rows >= n else stratified_rows(y, rows, seed=config.seed)


# --------------------------------------------------------------------------- preparing the folds

class _OutOfTime(Exception):
    """Preparing the folds took longer than its part of the budget."""


def prepare_in_time(config: TrainerConfig, pool: WorkerPool, workers: int, X: pd.DataFrame, y: np.ndarray,
                    sample: np.ndarray, kinds: tuple[str, ...], work: Path, deadline: float) -> PreparedFolds:
    """Prepare the folds of ``sample`` under ``work``; if that outlives PREP_LIMIT of the time left before
    ``deadline`` (a busy machine, a wrong estimate), start again on a quarter of the rows."""
    while True:
        prep_deadline = time.monotonic() + PREP_LIMIT * (deadline - time.monotonic())
        last = len(sample) <= MIN_SEARCH_ROWS
        try:
            files, val_index = _prepare(config, pool, workers, X.iloc[sample], y[sample], kinds, work,
                                        math.inf if last else prep_deadline)
            return PreparedFolds(files, val_index, sample)
        except _OutOfTime:
            rows = max(MIN_SEARCH_ROWS, len(sample) // 4)
            log.warning("preparing the folds of %d rows outlived %.0f%% of training.time_budget_s; "
                        "starting again on %d rows", len(sample), 100 * PREP_LIMIT, rows)
            shutil.rmtree(work, ignore_errors=True)
            sample = stratified_rows(y, rows, seed=config.seed + len(sample))


def _prepare(config: TrainerConfig, pool: WorkerPool, workers: int, X: pd.DataFrame, y: np.ndarray,
             kinds: tuple[str, ...], work: Path, deadline: float) -> tuple[dict[str, list[FoldFiles]], list[np.ndarray]]:
    """Write the sample once, then prepare its k folds: in the pool, or here one after another with one worker."""
    work.mkdir(parents=True, exist_ok=True)
    sample_path = work / "sample.parquet"
    X.assign(**{Y_COLUMN: y}).to_parquet(sample_path)
    k = config.cv_folds
    splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed).split(X, y))
    log.info("preparing %d folds: preprocessing + %s on ~%d training rows each", len(splits), " / ".join(kinds),
             len(y) * (k - 1) // k)
    t0 = time.monotonic()
    calls = [(sample_path, config.schema, config.max_categories, tr, va, kinds, config.seed, work / f"fold{i}")
             for i, (tr, va) in enumerate(splits)]
    if workers == 1:   # in this process, one fold after another
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


# --------------------------------------------------------------------------- in the workers

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

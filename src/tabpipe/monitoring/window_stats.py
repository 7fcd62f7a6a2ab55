"""What a monitoring run needs from its rows, counted chunk by chunk and merged, so memory stays bounded.

``chunk_stats`` checks and counts one chunk, ``merge`` adds the next chunk's result, ``finish`` makes
the arrays; the result does not depend on where the rows were cut.
Design notes: docs/monitoring.md#counting-a-window-chunk-by-chunk
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabpipe.errors import DataError
from tabpipe.drift.psi import bucket_counts, column_values
from tabpipe.monitoring.score_sketch import ScoreSketch
from tabpipe.schema import absent_columns, positive_mask

ROW_BITS = 40   # a sampled row's place: file number << ROW_BITS | row within the file


@dataclass(frozen=True, kw_only=True)
class Spill:
    """When a window's per-row scores give way to a ``ScoreSketch``: beyond ``exact_rows`` kept rows (the sketch's
    threshold, calibration map and score PSI reference with it)."""

    exact_rows: int                      # monitoring.exact_rows
    threshold: float
    calibration: dict | None = None      # profile.json "calibration"
    score_reference: dict | None = None  # profile.json "scores"

    def sketch(self) -> ScoreSketch:
        return ScoreSketch(threshold=self.threshold, calibration=self.calibration, score_reference=self.score_reference)


@dataclass(frozen=True, kw_only=True)
class ChunkSpec:
    """How to count a chunk: the model, its profile's features, the outcome column, the sample's size and seed."""

    model: object                        # TabularModel
    profile_features: dict | None        # profile.json "features" (None: no PSI)
    labels: str | None = None            # column of a file holding the outcomes
    keep: int | None = 0                 # sample size (None: every row, 0: none)
    seed: int                            # run.seed
    categorical: bool = False            # rows with logged probabilities: text Categoricals checked as such
    spill: Spill | None = None           # None: every row's score kept, however many


@dataclass
class WindowStats:
    """Partial (mergeable) or finished statistics of a window's rows; see the module docstring."""

    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, np.ndarray] = field(default_factory=dict)
    rules: dict[tuple, list] = field(default_factory=dict)        # (column, rule, message, hard) -> [rows, first row]
    column_rows: dict[tuple, int] = field(default_factory=dict)   # (column, hard) -> rows
    rows_with_problems: int = 0
    proba: list = field(default_factory=list)       # arrays per chunk until ``finish``, then one array
    labelled: list | None = None                    # None: the window has no outcomes at all
    y: list | None = None
    sample_keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_place: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    sample: pd.DataFrame | None = None
    keep: int | None = 0
    spill: Spill | None = None
    sketch: ScoreSketch | None = None               # the scores beyond ``spill.exact_rows`` (then ``proba`` is None)
    kept: int = 0                                   # rows in ``proba`` (not yet in the sketch)

    def merge(self, later: WindowStats) -> WindowStats:
        """Add the counts of ``later`` (the rows after these) to these; returns self."""
        self.spill = self.spill or later.spill
        for name, count in later.nulls.items():
            self.nulls[name] = self.nulls.get(name, 0) + count
        for name, counts in later.buckets.items():
            self.buckets[name] = self.buckets[name] + counts if name in self.buckets else counts
        for key, (rows, first) in later.rules.items():
            if key in self.rules:
                self.rules[key][0] += rows
            else:
                self.rules[key] = [rows, first + self.rows]
        for key, rows in later.column_rows.items():
            self.column_rows[key] = self.column_rows.get(key, 0) + rows
        self.rows_with_problems += later.rows_with_problems
        if not self.proba:              # nothing yet: outcomes or not, as the later chunks have them
            self.labelled, self.y = (None, None) if later.labelled is None else ([], [])
        if later.proba and (later.labelled is None) != (self.labelled is None):
            raise ValueError("the chunks of one window must all have outcomes, or none")
        self.proba.extend(later.proba)
        if later.labelled is not None:
            self.labelled.extend(later.labelled)
            self.y.extend(later.y)
        self.kept += later.kept
        if later.sketch is not None:
            self.sketch = later.sketch if self.sketch is None else self.sketch.merge(later.sketch)
        if self.spill is not None and self.kept > self.spill.exact_rows:
            self._spill()
        self.rows += later.rows
        self._merge_sample(later)
        return self

    def _spill(self) -> None:
        """Move the kept per-row scores into the sketch (memory: the sketch's bins, whatever the rows)."""
        self.sketch = self.sketch if self.sketch is not None else self.spill.sketch()
        for i, proba in enumerate(self.proba):
            self.sketch.add(proba, None if self.labelled is None else self.labelled[i],
                            None if self.y is None else self.y[i])
        self.proba, self.kept = [], 0
        if self.labelled is not None:
            self.labelled, self.y = [], []

    def _merge_sample(self, later: WindowStats) -> None:
        if later.sample is None:
            return
        if self.sample is None:
            self.sample, self.sample_keys, self.sample_place = later.sample, later.sample_keys, later.sample_place
        else:
            self.sample = pd.concat([self.sample, later.sample], ignore_index=True)
            self.sample_keys = np.r_[self.sample_keys, later.sample_keys]
            self.sample_place = np.r_[self.sample_place, later.sample_place]
        self._trim()

    def _trim(self) -> None:
        """Keep the ``keep`` rows with the smallest keys, in row order."""
        if self.keep is None or len(self.sample) <= self.keep:
            return
        chosen = np.argpartition(self.sample_keys, self.keep - 1)[:self.keep]
        chosen = chosen[np.argsort(self.sample_place[chosen], kind="stable")]
        self.sample = self.sample.iloc[chosen].reset_index(drop=True)
        self.sample_keys, self.sample_place = self.sample_keys[chosen], self.sample_place[chosen]

    def smallest(self, k: int) -> pd.DataFrame | None:
        """The sampled rows with the ``k`` smallest keys, in row order: exactly the sample ``keep=k`` would
        have kept (one sample serves evidently and the domain classifier at their own sizes). With
        ``keep=None`` (every row kept) the whole sample."""
        if self.keep is None or self.sample is None or len(self.sample) <= k:
            return self.sample
        chosen = np.argpartition(self.sample_keys, k - 1)[:k]
        chosen = chosen[np.argsort(self.sample_place[chosen], kind="stable")]
        return self.sample.iloc[chosen].reset_index(drop=True)

    def finish(self) -> WindowStats:
        """The per-row lists as single arrays (probabilities, and outcomes when any chunk had them); the sample's
        Categorical columns (``ChunkSpec.categorical``) as object text, as ``coerce_frame`` types them."""
        if self.sample is not None:
            kinds = {name: object for name in self.sample.columns
                     if isinstance(self.sample[name].dtype, pd.CategoricalDtype)}
            self.sample = self.sample.astype(kinds) if kinds else self.sample
        if self.sketch is not None:            # beyond exact_rows: every score in the sketch, none kept
            self._spill()
            self.proba = self.labelled = self.y = None
            return self
        self.proba = np.concatenate(self.proba) if self.proba else np.empty(0)
        if self.labelled is not None:
            self.labelled = np.concatenate(self.labelled) if self.labelled else np.zeros(0, dtype=bool)
            self.y = np.concatenate(self.y) if self.y else np.zeros(0, dtype=np.int8)
        return self

    def quality(self, schema) -> dict:
        """Null rate per feature, the share of rows breaking each rule — hard rules (the row cannot be
        scored) and expectations (scored with a warning) apart — and one score (share of clean rows)."""
        n = self.rows
        per_column: dict[str, dict] = {name: {"null_rate": self.nulls.get(name, 0) / n if n else 0.0,
                                              "rule_violation_rate": 0.0, "expectation_violation_rate": 0.0}
                                       for name in schema.features}
        position = {name: i for i, name in enumerate(schema.columns)}
        ordered = sorted(self.rules.items(), key=lambda kv: (position.get(kv[0][0], len(position)), kv[1][1]))
        rules = [{"column": column, "rule": rule, "message": message, "rows": rows, "rate": rows / n if n else 0.0,
                  "hard": hard} for (column, rule, message, hard), (rows, _) in ordered]
        for (column, hard), rows in self.column_rows.items():
            key = "rule_violation_rate" if hard else "expectation_violation_rate"
            per_column.setdefault(column, {"null_rate": None})[key] = rows / n if n else 0.0
        return {"rows": n, "rows_with_problems": self.rows_with_problems,
                "score": 1 - self.rows_with_problems / n if n else 1.0, "columns": per_column, "rules": rules}


def chunk_stats(rows: pd.DataFrame, spec: ChunkSpec, *, proba: np.ndarray | None = None,
                outcomes: pd.Series | None = None, keys: np.ndarray | None = None, place: int = 0,
                where: str = "the data", above: float | None = None) -> WindowStats:
    """The statistics of one chunk of rows.

    ``proba``: logged probabilities (None: score the rows with ``spec.model``; ``MissingColumns``
    naming ``where`` if a feature column is absent); ``outcomes``: labels as given, NaN where unknown;
    ``keys``: the rows' sample keys (``keep`` > 0); ``place``: the first row's place (see ``ROW_BITS``); ``above``:
    the largest key of a full sample already kept (rows with larger keys cannot be among the smallest: not kept)."""
    model, n = spec.model, len(rows)
    rows = rows.reset_index(drop=True)
    if proba is None and n:
        from tabpipe.scoring.batch import MissingColumns   # scoring (and scikit-learn) only when rows are scored

        absent = absent_columns(rows.columns, model.schema)
        if absent:
            raise MissingColumns(absent, where)
    counted = spec.categorical and proba is not None          # typed rows counted, never scored
    typed, problems = ((model.check(rows, categorical=True) if counted else model.check(rows)) if n
                       else (pd.DataFrame(columns=model.schema.features), []))
    stats = WindowStats(rows=n, keep=spec.keep, spill=spec.spill)
    stats.buckets = {name: bucket_counts(name, ref, column_values(ref, typed[name]))
                     for name, ref in (spec.profile_features or {}).items() if name in typed.columns}
    stats.nulls = {name: _nulls(typed[name], stats.buckets.get(name), (spec.profile_features or {}).get(name))
                   for name in model.schema.features}
    _count_problems(stats, problems, n)
    if proba is None:
        from tabpipe.scoring.batch import probabilities

        proba = probabilities(model, typed, problems) if n else np.empty(0)
    proba = np.asarray(proba, dtype=float)
    stats.proba, stats.kept = [proba], n
    if outcomes is not None:
        outcomes = outcomes.reset_index(drop=True)
        labelled = outcomes.notna().to_numpy() & ~np.isnan(proba)
        y = np.zeros(n, dtype=np.int8)
        y[labelled] = _positive(outcomes[labelled], model.schema.target.positive).astype(np.int8)
        stats.labelled, stats.y = [labelled], [y]
    if spec.keep is None:
        stats.sample = typed
    elif spec.keep > 0 and n:
        keys = np.asarray(keys, dtype=float)
        if above is None:
            stats.sample, stats.sample_keys = typed, keys
            stats.sample_place = place + np.arange(n, dtype=np.int64)
        else:                      # only the rows that can still be among the ``keep`` smallest keys
            chosen = np.flatnonzero(keys <= above)
            stats.sample, stats.sample_keys = typed.iloc[chosen].reset_index(drop=True), keys[chosen]
            stats.sample_place = place + chosen.astype(np.int64)
        stats._trim()
    return stats


def _positive(outcomes: pd.Series, positive) -> np.ndarray:
    """``positive_mask`` of the outcomes, read once per distinct text when they are all text (the log stores
    outcomes as text): each value is matched alone, and whether all are numbers is the same over the distinct
    values as over the rows."""
    if len(outcomes) and pd.api.types.infer_dtype(outcomes, skipna=False) == "string":
        codes, uniques = pd.factorize(outcomes.to_numpy(dtype=object))
        return positive_mask(pd.Series(uniques, dtype=object), positive)[codes]
    return positive_mask(outcomes, positive)


def _nulls(column: pd.Series, counts: np.ndarray | None, reference: dict | None) -> int:
    """Missing values of a typed feature column: the last bucket of its PSI counts when it has them (the same
    rows: NaN / None), else counted."""
    if counts is not None and (reference["kind"] == "categorical" or column.dtype == np.float64):
        return int(counts[-1])
    return int(column.isna().sum())


def _count_problems(stats: WindowStats, problems: list, n: int) -> None:
    bad = np.zeros(n, dtype=bool)
    per_column: dict[tuple, np.ndarray] = {}
    for p in problems:
        rows = list(p.rows) if p.rows else slice(None)     # no rows named: the whole column (absent)
        bad[rows] = True
        mask = per_column.setdefault((p.column, p.hard), np.zeros(n, dtype=bool))
        mask[rows] = True
        count = len(p.rows) if p.rows else n
        key = (p.column, p.rule, p.message, p.hard)
        if key in stats.rules:
            stats.rules[key][0] += count
        else:
            stats.rules[key] = [count, min(p.rows) if p.rows else 0]
    stats.column_rows = {key: int(mask.sum()) for key, mask in per_column.items()}
    stats.rows_with_problems = int(bad.sum())


def frame_stats(rows: pd.DataFrame, spec: ChunkSpec, *, proba: np.ndarray | None = None,
                outcomes: pd.Series | None = None, where: str = "the data") -> WindowStats:
    """A window held in memory as one chunk (file number 0), finished."""
    keys = np.random.default_rng([spec.seed, 0]).random(len(rows)) if spec.keep else None
    return chunk_stats(rows, spec, proba=proba, outcomes=outcomes, keys=keys, where=where).finish()


def file_stats(spec: ChunkSpec, part, number: int) -> WindowStats:
    """One Parquet file (``tabpipe.scoring.partitions.Partition``) counted a row group at a time: a partial result
    (not finished). Module-level and picklable: the Dask task of one file."""
    from tabpipe.scoring.partitions import read_partition

    rng = np.random.default_rng([spec.seed, number])
    total, offset = WindowStats(keep=spec.keep), 0
    for frame in read_partition(part):
        outcomes = None
        if spec.labels is not None:
            if spec.labels not in frame.columns:
                raise DataError(f"{part.path}: no column {spec.labels!r} for --labels; "
                                f"columns: {', '.join(map(str, frame.columns))}")
            outcomes = frame[spec.labels]
        keys = rng.random(len(frame)) if spec.keep else None
        total.merge(chunk_stats(frame, spec, outcomes=outcomes, keys=keys, place=(number << ROW_BITS) + offset,
                                where=part.path))
        offset += len(frame)
    return total


def merged(partials: Iterable[WindowStats], keep: int | None) -> WindowStats:
    """The partial results of a window's files, in file order, merged and finished."""
    total = WindowStats(keep=keep)
    for partial in partials:
        total.merge(partial)
    return total.finish()


def dataset_stats(parts: list, spec: ChunkSpec, *, dask: bool = False, dask_address: str | None = None,
                  n_workers: int = 1) -> WindowStats:
    """Every file of a Parquet dataset (``tabpipe.scoring.partitions.partitions``), here or one Dask task per file."""
    if dask:
        from tabpipe.scoring.partitions import map_on_dask

        partials: Iterator = map_on_dask(file_stats, spec, [(part, i) for i, part in enumerate(parts)],
                                         dask_address, n_workers)
    else:
        partials = (file_stats(spec, part, i) for i, part in enumerate(parts))
    return merged(partials, spec.keep)


def stream_stats(chunks: Iterable, spec: ChunkSpec, *, where: str = "the log", first_row: int = 0,
                 finish: bool = True) -> WindowStats:
    """A window read chunk by chunk (``history.logread.log_chunks``: rows, logged ``proba``, ``outcomes`` with
    None where no label arrived), merged and finished. The sample keys are one seeded stream over the rows
    in order, so the sample does not depend on where the chunks were cut (nor on the log's format).
    ``first_row``: the window's rows before these (counted elsewhere): the key stream starts there, and the
    sample's places count from there; ``finish``: False leaves a partial result to ``merge`` after those rows'."""
    rng = np.random.default_rng([spec.seed, 0])
    rng.bit_generator.advance(first_row)          # one 64-bit draw per key (``Generator.random``)
    total, offset = WindowStats(keep=spec.keep), first_row
    for chunk in chunks:
        n = len(chunk.proba)
        keys = rng.random(n) if spec.keep else None
        full = spec.keep and total.sample is not None and len(total.sample) >= spec.keep
        total.merge(chunk_stats(chunk.rows, spec, proba=chunk.proba, outcomes=chunk.outcomes, keys=keys,
                                place=offset, where=where, above=total.sample_keys.max() if full else None))
        offset += n
    if offset == first_row and finish:   # no rows: an empty window's counts (every feature's empty buckets)
        total.merge(chunk_stats(pd.DataFrame(), spec, proba=np.empty(0), where=where))
    return total.finish() if finish else total

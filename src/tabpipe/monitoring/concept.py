"""Concept drift: the gap between the realised ROC-AUC and the label-free estimate on the same rows (pure).

The estimate (``estimate.py``) assumes P(label | features) is what it was when the calibration map was
fitted; once outcomes exist for a window, realised minus estimated ROC-AUC on the labelled rows measures
how wrong that assumption has become. Both AUCs are exact, from one ranking of the scores. Their
confidence interval comes from a bootstrap of the rows, drawn as counts per cell: the rows are grouped
into cells of (score bin, label) — every distinct score its own bin when there are at most ``BINS``,
else ``BINS`` bins of equal row counts — and each resampling draws the cells' counts from one
multinomial (rows in one cell are interchangeable once their scores are binned), so a resampling costs
the cells, not the rows. The interval is the exact gap plus the resamplings' spread around the binned
gap (with a bin per distinct score, the binned gap is the exact one: a plain percentile bootstrap).
Design notes: docs/monitoring.md#concept-drift-estimate-against-outcomes
"""
from __future__ import annotations

import numpy as np

from tabpipe.monitoring.estimate import apply_calibration

RESAMPLINGS = 200
CONFIDENCE = 0.95
BINS = 4096      # score bins per class for the resamplings (2 x 4,096 cells at most)


def weighted_auc(starts: np.ndarray | None, positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of rows already sorted by score (highest first), ``positive`` and
    ``negative`` their weights as a positive and as a negative; ``starts``: the first index of each run
    of equal scores (None: no ties). A negative scores every positive ranked above it, and half of each
    positive tied with it (the trapezoid, as scikit-learn). NaN when either total weight is zero."""
    if starts is not None:
        positive, negative = np.add.reduceat(positive, starts), np.add.reduceat(negative, starts)
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return float("nan")
    above = np.cumsum(positive) - 0.5 * positive
    return float((negative * above).sum() / (total_positive * total_negative))   # not np.dot: BLAS threads


def binned_aucs(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """``weighted_auc`` of each row of ``positive`` / ``negative`` (resamplings x bins, bins highest score
    first, each bin a run of tied scores); NaN where either total weight is zero."""
    total_positive, total_negative = positive.sum(axis=1), negative.sum(axis=1)
    above = np.cumsum(positive, axis=1) - 0.5 * positive
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (negative * above).sum(axis=1) / (total_positive * total_negative)
    return np.where((total_positive > 0) & (total_negative > 0), auc, np.nan)


def _bins(s: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each row of ``s`` (scores, highest first): a bin per distinct score when there are at most
    ``bins``, else ``bins`` bins of about equal row counts whose edges never split tied scores."""
    new = np.r_[False, np.diff(s) != 0]
    group = np.cumsum(new)
    if group[-1] < bins:
        return group
    edges = np.unique(group[np.linspace(0, len(s) - 1, bins + 1).astype(np.int64)[1:-1]])
    return np.searchsorted(edges, group, side="right")


def concept_gap(y: np.ndarray, proba: np.ndarray, calibration: dict, *, resamplings: int = RESAMPLINGS,
                confidence: float = CONFIDENCE, seed: int = 0, bins: int = BINS) -> dict:
    """Realised minus estimated ROC-AUC of labelled rows (``y`` 0/1, the model's raw ``proba``), with a
    bootstrap interval at ``confidence`` (module docstring; ``bins``: score bins for the resamplings).
    ``{"status": "ok", "realised", "estimated", "gap", "ci": [low, high], ...}``, or
    ``{"status": "insufficient_data", "message"}`` without both classes (or with so few of one that over a
    tenth of the resamplings miss it)."""
    y, p = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return {"status": "insufficient_data", "rows": len(y),
                "message": "the labelled rows do not have both classes: no realised ROC-AUC"}
    order = np.argsort(-p)                 # ties are summed as one run: the order within a run does not matter
    s, y = p[order], y[order]
    del order
    c = apply_calibration(s, calibration)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    exact_starts = None if len(starts) == len(s) else starts
    realised = weighted_auc(exact_starts, y, 1 - y)
    estimated = weighted_auc(exact_starts, c, 1 - c)

    n, cell = len(y), _bins(s, bins) * 2 + y.astype(np.int64)   # cell = bin x label
    cells = int(cell[-1] // 2 + 1) * 2
    rows = np.bincount(cell, minlength=cells).astype(float)
    mean_c = np.bincount(cell, weights=c, minlength=cells) / np.maximum(rows, 1)
    del s, c, cell
    return gap_interval(rows, mean_c, realised, estimated, resamplings=resamplings, confidence=confidence, seed=seed,
                        method=("realised minus label-free estimated ROC-AUC on the same rows; bootstrap of rows drawn "
                                f"as counts of (score bin, label) cells, at most {bins} score bins"))


def gap_interval(rows: np.ndarray, mean_c: np.ndarray, realised: float, estimated: float, *, resamplings: int,
                 confidence: float, seed: int, method: str) -> dict:
    """``concept_gap``'s result from its cells: ``rows`` per (score bin, label) cell (bins highest score first,
    label 0 then 1 within a bin) and ``mean_c``, each cell's mean calibrated probability; ``realised`` and
    ``estimated``: the two AUCs the gap is taken between (the interval is their gap plus the resamplings'
    spread around the cells' own gap)."""
    n, positives = int(rows.sum()), int(rows[1::2].sum())

    def gaps(counts: np.ndarray) -> np.ndarray:
        """Binned realised minus estimated AUC for rows of cell counts (resamplings x cells)."""
        pos_label, neg_label = counts[:, 1::2], counts[:, 0::2]
        expected = counts * mean_c
        pos_c = expected[:, 0::2] + expected[:, 1::2]
        return binned_aucs(pos_label, neg_label) - binned_aucs(pos_c, pos_label + neg_label - pos_c)

    binned = gaps(rows[None, :])[0]
    rng = np.random.default_rng([seed, 7])
    drawn = rng.multinomial(n, rows / n, size=resamplings).astype(float)
    spread = gaps(drawn) - binned
    spread = spread[~np.isnan(spread)]    # a resampling without one of the classes
    if len(spread) < 0.9 * resamplings:
        return {"status": "insufficient_data", "rows": n, "positives": positives,
                "message": f"{resamplings - len(spread)} of {resamplings} bootstrap resamplings had only one class: "
                           "too few rows of one class for an interval"}
    gap = realised - estimated
    tail = (1 - confidence) / 2
    low, high = gap + np.quantile(spread, [tail, 1 - tail])
    return {"status": "ok", "metric": "roc_auc", "realised": realised, "estimated": estimated,
            "gap": gap, "ci": [float(low), float(high)], "confidence": confidence,
            "rows": n, "positives": positives, "resamplings": resamplings, "method": method}


def excludes_zero(result: dict) -> bool:
    """Whether the gap's interval lies entirely on one side of 0."""
    low, high = result["ci"]
    return bool(low > 0 or high < 0)

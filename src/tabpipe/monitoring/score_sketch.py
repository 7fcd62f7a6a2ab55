"""The scores of a window too large to keep row by row: fine histograms per class, so memory is flat in the rows.

Up to ``monitoring.exact_rows`` rows, a monitoring run keeps every row's probability and outcome and its
metrics are exact (``window_stats``). Beyond it, the rows are counted into ``BINS`` equal-width probability bins
per class (a few MB whatever the window's size), and:

- exact, from sums kept alongside: the confusion counts at the threshold (so precision, recall, F1), the Brier
  score, the log loss, the expected confusion counts of the estimate, the score's PSI buckets;
- binned, rows of one bin taken as tied: ROC-AUC (the result states the largest error this can make,
  ``roc_auc_max_error``: half the share of positive-negative pairs that share a bin), average precision, the ECE's
  equal-frequency groups (cut at bin edges), the label-free estimate's curves and the concept-drift gap.

Bins are 1/65,536 wide: only rows whose probabilities agree to about five decimals are taken as tied.
Design notes: docs/monitoring.md#windows-beyond-exact_rows
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from tabpipe.drift.psi import bucket_counts
from tabpipe.monitoring.concept import BINS as CONCEPT_BINS, gap_interval, weighted_auc
from tabpipe.monitoring.estimate import _average_precision, _roc_auc, apply_calibration, estimate_result
from tabpipe.training.metrics import ECE_BINS, LOG_LOSS_EPS, confusion_ratios

BINS = 1 << 16


def bin_of(proba: np.ndarray) -> np.ndarray:
    """The bin of each probability: ``floor(p * BINS)``, 1.0 in the last bin (outside [0, 1]: the end bins)."""
    return np.clip((proba * BINS).astype(np.int64), 0, BINS - 1)


def _zeros() -> np.ndarray:
    return np.zeros(BINS)


@dataclass(kw_only=True)
class ScoreSketch:
    """Mergeable counts of a window's scores (module docstring). Arrays are per bin, lowest probability first."""

    threshold: float
    calibration: dict | None = None          # profile.json "calibration" (None: no estimate)
    score_reference: dict | None = None      # profile.json "scores" (None: no score PSI buckets)
    scored: np.ndarray = field(default_factory=_zeros)          # scored rows
    expected: np.ndarray = field(default_factory=_zeros)        # sum of calibrated probabilities of scored rows
    positive: np.ndarray = field(default_factory=_zeros)        # labelled positives
    negative: np.ndarray = field(default_factory=_zeros)        # labelled negatives
    expected_positive: np.ndarray = field(default_factory=_zeros)   # calibrated sums of the labelled positives
    expected_negative: np.ndarray = field(default_factory=_zeros)   # ... and of the labelled negatives
    labelled_proba: np.ndarray = field(default_factory=_zeros)      # sum of the labelled rows' probabilities (ECE)
    score_buckets: np.ndarray | None = None
    predicted: float = 0.0             # scored rows with probability >= threshold
    expected_predicted: float = 0.0    # their calibrated sum
    tp: float = 0.0                    # labelled positives with probability >= threshold
    fp: float = 0.0                    # labelled negatives with probability >= threshold
    squared_error: float = 0.0         # labelled rows: sum of (probability - label)^2
    log_loss_sum: float = 0.0          # labelled rows: sum of -log likelihood (probabilities clipped as log_loss)

    def add(self, proba: np.ndarray, labelled: np.ndarray | None = None, y: np.ndarray | None = None) -> ScoreSketch:
        """Count a chunk: ``proba`` (NaN: not scored), ``labelled`` (rows with an outcome and a probability) and
        ``y`` (0/1 where labelled). Returns self."""
        proba = np.asarray(proba, dtype=float)
        s = proba[~np.isnan(proba)]
        b = bin_of(s)
        self.scored += np.bincount(b, minlength=BINS)
        at = s >= self.threshold
        self.predicted += int(at.sum())
        if self.calibration:
            c = apply_calibration(s, self.calibration)
            self.expected += np.bincount(b, weights=c, minlength=BINS)
            self.expected_predicted += float(c[at].sum())
        if self.score_reference is not None:
            counts = bucket_counts("probability", self.score_reference, s)
            self.score_buckets = counts if self.score_buckets is None else self.score_buckets + counts
        if labelled is None or not labelled.any():
            return self
        p, label = proba[labelled], np.asarray(y)[labelled].astype(bool)
        bl = bin_of(p)
        self.positive += np.bincount(bl[label], minlength=BINS)
        self.negative += np.bincount(bl[~label], minlength=BINS)
        self.labelled_proba += np.bincount(bl, weights=p, minlength=BINS)
        if self.calibration:
            c = apply_calibration(p, self.calibration)
            self.expected_positive += np.bincount(bl[label], weights=c[label], minlength=BINS)
            self.expected_negative += np.bincount(bl[~label], weights=c[~label], minlength=BINS)
        at = p >= self.threshold
        self.tp += int((at & label).sum())
        self.fp += int((at & ~label).sum())
        self.squared_error += float(np.sum((p - label) ** 2))
        clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        self.log_loss_sum += float(-np.sum(np.where(label, np.log(clipped), np.log1p(-clipped))))
        return self

    def merge(self, other: ScoreSketch) -> ScoreSketch:
        """Add ``other``'s counts (the same threshold, calibration and reference); returns self."""
        for f in fields(self):
            if f.name in ("threshold", "calibration", "score_reference"):
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if theirs is not None:
                setattr(self, f.name, theirs.copy() if mine is None else mine + theirs)
        return self

    # ---- counts

    @property
    def scored_rows(self) -> int:
        return int(self.scored.sum())

    @property
    def labelled_rows(self) -> int:
        return int(self.positive.sum() + self.negative.sum())

    # ---- realised metrics of the labelled rows (RankedScores' interface, for the dashboard)

    def roc_auc(self) -> float:
        """ROC-AUC, rows of a bin taken as tied (``roc_auc_max_error``); ValueError without both classes."""
        p, n = self.positive[::-1], self.negative[::-1]
        if p.sum() == 0 or n.sum() == 0:
            raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
        return weighted_auc(None, p, n)

    def roc_auc_max_error(self) -> float:
        """The most the binned ROC-AUC can differ from the exact one: pairs of a positive and a negative in one bin
        count a half each; exactly, each counts 0, a half or 1."""
        return float(0.5 * np.sum(self.positive * self.negative) / (self.positive.sum() * self.negative.sum()))

    def _cumulative(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labelled positives and negatives at or above each non-empty bin (highest first), and that bin."""
        nonempty = np.flatnonzero((self.positive + self.negative)[::-1] > 0)
        return np.cumsum(self.positive[::-1])[nonempty], np.cumsum(self.negative[::-1])[nonempty], nonempty

    def average_precision(self) -> float:
        """Sum over the bins holding positives of (their share of the positives) x (precision down to the bin)."""
        total = self.positive.sum()
        if total == 0:
            return float("nan")
        tp, fp, bins = self._cumulative()
        share = self.positive[::-1][bins] / total
        return float(np.sum(share * tp / (tp + fp)))

    def confusion(self, threshold: float | None = None) -> dict[str, int]:
        """tn, fp, fn, tp of ``proba >= threshold`` (exact: counted at the sketch's own threshold)."""
        if threshold is not None and threshold != self.threshold:
            raise ValueError(f"the sketch counted the confusion at {self.threshold}, not {threshold}")
        positives, negatives = int(self.positive.sum()), int(self.negative.sum())
        return {"tn": negatives - int(self.fp), "fp": int(self.fp), "fn": positives - int(self.tp), "tp": int(self.tp)}

    def curves(self, points: int = 2000) -> dict[str, np.ndarray]:
        """About ``points`` points of the ROC and precision-recall curves, at bin edges (``RankedScores.curves``)."""
        tp, fp, _ = self._cumulative()
        pick = np.unique(np.linspace(0, len(tp) - 1, min(points, len(tp))).astype(np.int64))
        tp, fp = tp[pick], fp[pick]
        n1, n0 = max(self.positive.sum(), 1), max(self.negative.sum(), 1)
        return {"fpr": np.r_[0.0, fp / n0], "tpr": np.r_[0.0, tp / n1],
                "recall": np.r_[0.0, tp / n1], "precision": np.r_[1.0, tp / np.maximum(tp + fp, 1)]}

    def histogram(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labelled negatives, labelled positives and all scored rows per interval of ``edges`` (each bin falls
        in the interval of its centre)."""
        centres = (np.arange(BINS) + 0.5) / BINS
        return tuple(np.histogram(centres, edges, weights=w)[0] for w in (self.negative, self.positive, self.scored))

    def _ece(self) -> float:
        """ECE over ``ECE_BINS`` groups of about equal rows, cut at bin edges (``expected_calibration_error``)."""
        rows = self.positive + self.negative
        n = rows.sum()
        cumulative = np.cumsum(rows)
        cuts = np.unique(np.searchsorted(cumulative, n * np.arange(1, ECE_BINS) / ECE_BINS, side="left") + 1)
        groups = np.split(np.arange(BINS), cuts[cuts < BINS])
        return float(sum(abs(self.positive[g].sum() - self.labelled_proba[g].sum()) for g in groups) / n)

    def realised(self) -> dict | None:
        """``holdout_metrics`` plus ``confusion`` of the labelled rows, or None without both classes."""
        positives, rows = int(self.positive.sum()), self.labelled_rows
        if positives == 0 or positives == rows:
            return None
        cm = self.confusion()
        return {"roc_auc": self.roc_auc(), "pr_auc": self.average_precision(), "ece": self._ece(),
                "brier": self.squared_error / rows, "log_loss": self.log_loss_sum / rows, **confusion_ratios(cm),
                "threshold": float(self.threshold), "positives": positives, "rows": rows, "confusion": cm,
                "binned": self.note()}

    def note(self) -> dict:
        """How the binned figures were computed, for the result."""
        out = {"bins": BINS, "exact": ["confusion", "precision", "recall", "f1", "brier", "log_loss"],
               "binned": ["roc_auc", "pr_auc", "ece"]}
        if self.positive.sum() and self.negative.sum():
            out["roc_auc_max_error"] = self.roc_auc_max_error()
        return out

    # ---- the label-free estimate and the concept-drift gap

    def estimated(self) -> dict | None:
        """``estimate.estimate``'s result from the bins (its curves binned, its confusion counts exact); None
        without a calibration map."""
        if not self.calibration:
            return None
        nonempty = np.flatnonzero(self.scored[::-1] > 0)
        tp = np.cumsum(self.expected[::-1])[nonempty]
        fp = np.cumsum((self.scored - self.expected)[::-1])[nonempty]
        n, total, predicted = self.scored_rows, float(self.expected.sum()), self.expected_predicted
        areas = {"roc_auc": _roc_auc(tp, fp), "pr_auc": _average_precision(tp, fp), "positives": total,
                 "confusion": {"tp": predicted, "fp": self.predicted - predicted, "fn": total - predicted,
                               "tn": (n - self.predicted) - (total - predicted)}}
        return {**estimate_result(areas, n, self.threshold, self.calibration),
                "binned": {"bins": BINS, "exact": ["expected_confusion", "precision", "recall", "f1"],
                           "binned": ["roc_auc", "pr_auc"]}}

    def concept(self, *, resamplings: int, confidence: float, seed: int, bins: int = CONCEPT_BINS) -> dict:
        """``concept.concept_gap``'s result from the bins: both AUCs binned, the bootstrap over cells of at most
        ``bins`` groups of adjacent bins holding about equal labelled rows."""
        pos, neg = self.positive[::-1], self.negative[::-1]
        rows = pos + neg
        if pos.sum() == 0 or neg.sum() == 0:
            return {"status": "insufficient_data", "rows": int(rows.sum()),
                    "message": "the labelled rows do not have both classes: no realised ROC-AUC"}
        c_pos, c_neg = self.expected_positive[::-1], self.expected_negative[::-1]
        realised = weighted_auc(None, pos, neg)
        estimated = weighted_auc(None, c_pos + c_neg, rows - c_pos - c_neg)
        kept = np.flatnonzero(rows > 0)
        if len(kept) > bins:   # about equal rows per group, never splitting a bin
            cumulative = np.cumsum(rows[kept])
            group = np.minimum((cumulative - rows[kept]) * bins // cumulative[-1], bins - 1).astype(np.int64)
        else:
            group = np.arange(len(kept))
        groups = int(group[-1]) + 1
        cell_rows = np.zeros(2 * groups)
        cell_c = np.zeros(2 * groups)
        np.add.at(cell_rows, 2 * group, neg[kept])
        np.add.at(cell_rows, 2 * group + 1, pos[kept])
        np.add.at(cell_c, 2 * group, c_neg[kept])
        np.add.at(cell_c, 2 * group + 1, c_pos[kept])
        mean_c = cell_c / np.maximum(cell_rows, 1)
        return gap_interval(cell_rows, mean_c, realised, estimated, resamplings=resamplings, confidence=confidence,
                            seed=seed, method=("realised minus label-free estimated ROC-AUC on the same rows, from "
                                               f"{BINS} probability bins (the window is over monitoring.exact_rows); "
                                               f"bootstrap of rows drawn as counts of (score group, label) cells, at "
                                               f"most {bins} groups"))

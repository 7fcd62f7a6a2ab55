"""A window's scores counted into fine bins: the exact figures equal the row-by-row ones, the binned ones are within
their stated error, chunks merge to the whole, and memory does not grow with the rows."""
from __future__ import annotations

import numpy as np
import pytest

from tabpipe.monitoring.concept import concept_gap
from tabpipe.monitoring.estimate import estimate
from tabpipe.monitoring.score_sketch import BINS, ScoreSketch, bin_of
from tabpipe.ranked import RankedScores
from tabpipe.training.metrics import holdout_metrics

PLATT = {"method": "platt", "a": 1.3, "b": -0.2}
SCORES = {"kind": "numeric", "edges": [0.1, 0.2, 0.4, 0.7], "shares": [0.2] * 5 + [0.0], "rows": 1000}


def window(n: int, seed: int, *, decimals: int | None = None, labelled_share: float = 0.4):
    rng = np.random.default_rng(seed)
    proba = rng.beta(2, 5, n)
    if decimals is not None:
        proba = proba.round(decimals)
    y = (rng.random(n) < proba).astype(np.int8)
    proba[rng.random(n) < 0.01] = np.nan                 # rows that could not be scored
    labelled = (rng.random(n) < labelled_share) & ~np.isnan(proba)
    return proba, labelled, y


def sketch_of(proba, labelled, y, chunk: int | None = None, threshold: float = 0.3) -> ScoreSketch:
    total = ScoreSketch(threshold=threshold, calibration=PLATT, score_reference=SCORES)
    step = chunk or len(proba)
    for at in range(0, len(proba), step):
        part = ScoreSketch(threshold=threshold, calibration=PLATT, score_reference=SCORES)
        total.merge(part.add(proba[at:at + step], labelled[at:at + step], y[at:at + step]))
    return total


def test_exact_figures_equal_the_row_by_row_ones_and_binned_ones_are_within_their_bound():
    proba, labelled, y = window(200_000, 1)
    sketch = sketch_of(proba, labelled, y)
    exact = holdout_metrics(y[labelled], proba[labelled], 0.3, RankedScores.of(y[labelled], proba[labelled]))
    binned = sketch.realised()
    for key in ("precision", "recall", "f1", "brier", "log_loss", "positives", "rows"):
        assert binned[key] == pytest.approx(exact[key], rel=1e-9, abs=1e-12), key
    assert binned["confusion"] == RankedScores.of(y[labelled], proba[labelled]).confusion(0.3)
    bound = binned["binned"]["roc_auc_max_error"]
    assert 0 < bound < 1e-4
    assert abs(binned["roc_auc"] - exact["roc_auc"]) <= bound
    assert binned["pr_auc"] == pytest.approx(exact["pr_auc"], abs=1e-3)
    assert binned["ece"] == pytest.approx(exact["ece"], abs=2e-3)
    assert sketch.scored_rows == int((~np.isnan(proba)).sum()) and sketch.labelled_rows == int(labelled.sum())


def test_probabilities_that_differ_only_in_ties_give_the_exact_auc():
    proba, labelled, y = window(50_000, 2, decimals=3)      # 1,001 distinct values, each in its own bin
    binned = sketch_of(proba, labelled, y).realised()
    exact = RankedScores.of(y[labelled], proba[labelled])
    assert binned["roc_auc"] == pytest.approx(exact.roc_auc(), abs=1e-12)
    assert binned["pr_auc"] == pytest.approx(exact.average_precision(), abs=1e-12)


def test_the_estimate_from_bins_matches_the_row_by_row_estimate():
    proba, labelled, y = window(200_000, 3)
    scored = proba[~np.isnan(proba)]
    exact = estimate(scored, 0.3, PLATT)
    binned = sketch_of(proba, labelled, y).estimated()
    for key in ("tp", "fp", "fn", "tn"):
        assert binned["expected_confusion"][key] == pytest.approx(exact["expected_confusion"][key], rel=1e-9)
    for key in ("precision", "recall", "f1", "expected_positive_rate"):
        assert binned[key] == pytest.approx(exact[key], rel=1e-9)
    assert binned["roc_auc"] == pytest.approx(exact["roc_auc"], abs=1e-5)
    assert binned["pr_auc"] == pytest.approx(exact["pr_auc"], abs=1e-4)
    assert binned["rows"] == exact["rows"]


def test_the_concept_gap_from_bins_matches_the_row_by_row_gap():
    proba, labelled, y = window(200_000, 4)
    exact = concept_gap(y[labelled], proba[labelled], PLATT, seed=5)
    binned = sketch_of(proba, labelled, y).concept(resamplings=200, confidence=0.95, seed=5)
    assert binned["status"] == exact["status"] == "ok"
    assert binned["gap"] == pytest.approx(exact["gap"], abs=1e-4)
    assert binned["rows"] == exact["rows"] and binned["positives"] == exact["positives"]
    width, exact_width = np.diff(binned["ci"])[0], np.diff(exact["ci"])[0]
    assert width == pytest.approx(exact_width, rel=0.25)
    assert binned["ci"][0] < binned["gap"] < binned["ci"][1]


def test_a_flipped_label_relation_is_seen_from_the_bins():
    proba, labelled, y = window(100_000, 6)
    result = sketch_of(proba, labelled, 1 - y).concept(resamplings=200, confidence=0.95, seed=0)
    assert result["gap"] < -0.3 and result["ci"][1] < 0


def test_chunks_merge_to_the_whole():
    proba, labelled, y = window(30_000, 7)
    whole, chunked = sketch_of(proba, labelled, y), sketch_of(proba, labelled, y, chunk=4_099)
    for name in ("scored", "expected", "positive", "negative", "expected_positive", "expected_negative",
                 "labelled_proba", "score_buckets"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-12, err_msg=name)
    assert (chunked.tp, chunked.fp, chunked.predicted) == (whole.tp, whole.fp, whole.predicted)
    assert chunked.log_loss_sum == pytest.approx(whole.log_loss_sum, rel=1e-12)
    from tabpipe.drift.psi import bucket_counts

    np.testing.assert_array_equal(whole.score_buckets, bucket_counts("probability", SCORES, proba[~np.isnan(proba)]))


def test_one_class_and_no_calibration_say_so():
    proba, labelled, y = window(5_000, 8)
    one = sketch_of(proba, labelled, np.zeros_like(y))
    assert one.realised() is None
    assert one.concept(resamplings=50, confidence=0.95, seed=0)["status"] == "insufficient_data"
    plain = ScoreSketch(threshold=0.5).add(proba, labelled, y)
    assert plain.estimated() is None and plain.realised()["rows"] == int(labelled.sum())
    with pytest.raises(ValueError, match="0.5, not 0.4"):
        plain.confusion(0.4)


def test_memory_is_the_bins_whatever_the_rows():
    small, large = sketch_of(*window(1_000, 9)), sketch_of(*window(300_000, 9), chunk=65_536)
    size = lambda s: sum(a.nbytes for a in vars(s).values() if isinstance(a, np.ndarray))   # noqa: E731
    assert size(small) == size(large) <= 8 * 8 * BINS + 1_000


def test_curves_and_histogram_for_the_dashboard():
    proba, labelled, y = window(100_000, 10)
    sketch = sketch_of(proba, labelled, y)
    curves = sketch.curves()
    assert curves["fpr"][0] == 0 and curves["fpr"][-1] == pytest.approx(1) and curves["tpr"][-1] == pytest.approx(1)
    assert len(curves["fpr"]) <= 2001 and np.all(np.diff(curves["fpr"]) >= 0)
    trapezoid = np.sum(np.diff(curves["fpr"]) * (curves["tpr"][1:] + curves["tpr"][:-1]) / 2)
    assert trapezoid == pytest.approx(sketch.roc_auc(), abs=2e-3)
    edges = np.linspace(0, 1, 41)
    negatives, positives, scored = sketch.histogram(edges)
    p, lab = proba[labelled], y[labelled]
    assert positives.sum() == lab.sum() and negatives.sum() == len(lab) - lab.sum()
    straddling = np.isin(bin_of(p[lab == 1]), bin_of(edges[1:-1]))    # rows of a bin an edge cuts may move over it
    moved = np.abs(positives - np.histogram(p[lab == 1], edges)[0]).sum()
    assert moved <= 2 * straddling.sum() < 20
    assert scored.sum() == sketch.scored_rows

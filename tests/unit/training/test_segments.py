"""Segments: weighted metrics equal scikit-learn's, the per-segment refusal rule, the worst-slice search."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from tabpipe.training.segments import (
    MISSING,
    benjamini_hochberg,
    column_bins,
    compare_segments,
    refusal_reason,
    segment_labels,
    weighted_metric,
    worst_slices,
)

RULE = dict(metric="roc_auc", new_threshold=0.5, production_threshold=0.5, min_rows=200, max_drop=0.02,
            resamplings=400, seed=0)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "f1"])
def test_weighted_metric_equals_sklearn_with_sample_weights(metric):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    proba = np.round(rng.random(300), 2)          # rounded: many tied scores
    weights = rng.integers(0, 4, size=(5, 300)).astype(float)
    got = weighted_metric(metric, y, proba, 0.5, weights)
    for row, value in zip(weights, got):
        if metric == "roc_auc":
            expected = roc_auc_score(y, proba, sample_weight=row)
        elif metric == "pr_auc":
            expected = average_precision_score(y, proba, sample_weight=row)
        else:
            expected = f1_score(y, proba >= 0.5, sample_weight=row)
        assert value == pytest.approx(expected, abs=1e-12)


def test_roc_auc_without_both_classes_is_nan():
    assert np.isnan(weighted_metric("roc_auc", np.zeros(10), np.linspace(0, 1, 10), 0.5, np.ones((1, 10)))[0])


def _scores(y, rng, quality):
    """Probabilities whose ROC-AUC grows with ``quality`` (0: random)."""
    return 1 / (1 + np.exp(-(quality * (2 * y - 1) + rng.normal(size=len(y)))))


def _two_segments(n_big: int, n_small: int, seed: int = 0):
    """A challenger better on average (much better on segment A) but clearly worse on segment B."""
    rng = np.random.default_rng(seed)
    y_a, y_b = rng.integers(0, 2, n_big * 2), rng.integers(0, 2, n_small)
    new = np.r_[_scores(y_a, rng, 3.0), _scores(y_b, rng, 0.2)]
    prod = np.r_[_scores(y_a, rng, 1.0), _scores(y_b, rng, 2.0)]
    y = np.r_[y_a, y_b]
    seg = np.array(["A"] * len(y_a) + ["B"] * len(y_b), dtype=object)
    return y, new, prod, seg


def test_better_on_average_but_clearly_worse_on_a_big_segment_is_refused():
    y, new, prod, seg = _two_segments(n_big=1000, n_small=600)
    assert roc_auc_score(y, new) > roc_auc_score(y, prod)            # the average gate alone would accept
    report = compare_segments({"region": seg}, y, new, prod, **RULE)
    assert report["refused"] == ["region=B"]
    b = next(s for s in report["segments"] if s["segment"] == "B")
    assert b["status"] == "compared" and b["difference"]["ci"][1] < -0.02
    assert b["new"]["ci"][0] <= b["new"]["value"] <= b["new"]["ci"][1]
    assert "region=B (600 rows)" in refusal_reason(report)


def test_worse_on_a_segment_below_min_rows_is_not_refused():
    y, new, prod, seg = _two_segments(n_big=1000, n_small=150)
    report = compare_segments({"region": seg}, y, new, prod, **RULE)
    b = next(s for s in report["segments"] if s["segment"] == "B")
    assert b["status"] == "too_small" and b["difference"]["value"] < -0.2   # clearly worse, but too few rows
    assert report["refused"] == [] and refusal_reason(report) is None


def test_a_small_difference_within_max_drop_is_not_refused():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4000)
    prod = _scores(y, rng, 1.5)
    new = prod + rng.normal(scale=0.01, size=len(y))                # practically the same model
    report = compare_segments({"all": np.array(["x"] * len(y), dtype=object)}, y, new, prod, **RULE)
    assert report["refused"] == []
    assert report["segments"][0]["difference"]["ci"][1] > -0.02


def test_one_class_segment_is_reported_not_gated():
    rng = np.random.default_rng(4)
    y = np.r_[rng.integers(0, 2, 500), np.zeros(300, dtype=int)]
    p = rng.random(len(y))
    seg = np.array(["mixed"] * 500 + ["negatives"] * 300, dtype=object)
    report = compare_segments({"c": seg}, y, p, p[::-1].copy(), **RULE)
    neg = next(s for s in report["segments"] if s["segment"] == "negatives")
    assert neg["status"] == "one_class" and neg["new"] is None and not neg["refused"]


def test_without_production_only_the_new_model_is_reported():
    y, new, _, seg = _two_segments(n_big=300, n_small=300)
    report = compare_segments({"c": seg}, y, new, None, **RULE)
    assert {s["status"] for s in report["segments"]} == {"no_production"}
    assert all(s["new"]["ci"] is not None and s["production"] is None for s in report["segments"])
    assert report["refused"] == []


def test_numeric_bins_from_training_values_and_missing():
    train = pd.Series(np.arange(100, dtype=float))
    spec = column_bins(train, "float", 4)
    assert len(spec["edges"]) == 3
    labels = segment_labels(pd.Series([0.0, 30.0, 99.0, np.nan, 1e6]), spec)
    assert labels[0] == labels[0] and labels[0].startswith("<=") and labels[2].startswith(">")
    assert labels[3] == MISSING and labels[4] == labels[2]
    cats = segment_labels(pd.Series(["a", None, "b"], dtype="category"), column_bins(pd.Series(["a"]), "category", 4))
    assert cats.tolist() == ["a", MISSING, "b"]


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = [0.01, 0.04, 0.03, 0.5, 0.005]
    rejected, q = benjamini_hochberg(p, 0.05)
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 vs 0.01, 0.02, 0.03, 0.04, 0.05 -> the first four rejected
    assert rejected.tolist() == [True, True, True, False, True]
    assert q[4] == pytest.approx(0.025) and q[3] == pytest.approx(0.5)


def test_worst_slice_search_finds_a_planted_weak_slice_and_little_else():
    rng = np.random.default_rng(7)
    n = 6000
    frame = pd.DataFrame({"vendor": rng.choice(["a", "b", "c", "d"], n), "noise": rng.random(n),
                          "other": rng.choice(["x", "y", "z"], n)})
    y = rng.integers(0, 2, n)
    quality = np.where(frame["vendor"] == "c", 0.3, 2.5)          # the model is nearly blind on vendor c
    proba = 1 / (1 + np.exp(-(quality * (2 * y - 1) + rng.normal(size=n))))
    slices = {c: segment_labels(frame[c], column_bins(frame[c], "float" if c == "noise" else "category", 4))
              for c in frame.columns}
    found = worst_slices(slices, y, proba, metric="roc_auc", threshold=0.5, min_rows=50, fdr=0.05,
                         resamplings=300, seed=0, top=5)
    assert found["tested"] == 4 + 4 + 3
    assert found["slices"][0]["column"] == "vendor" and found["slices"][0]["slice"] == "c"
    assert found["slices"][0]["weak"] and found["slices"][0]["q_value"] < 0.001
    weak = [(s["column"], s["slice"]) for s in found["slices"] if s["weak"]]
    assert weak == [("vendor", "c")]                  # the other slices are no worse than average

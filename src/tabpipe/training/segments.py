"""Segments: the gate's metric per segment of the test rows, with paired bootstrap intervals, the
per-segment refusal rule, and the worst-slice search over single columns.

A *segment* is the set of test rows sharing one value of a configured column (``segments.columns``
in pipeline.yaml): a category (missing values form their own ``missing`` segment) or, for a numeric
column, one of ``segments.bins`` quantile bins whose edges come from the **training** rows (the
test rows are only scored). Everything here is a pure function of labels, probabilities and
segment labels.

The refusal rule (``compare_segments``): for every segment with at least ``min_rows`` rows and both
classes, the challenger's metric minus production's is bootstrapped by resampling the segment's
rows with replacement, the same rows for both models (paired). The challenger is refused when the
upper end of the two-sided 95 % percentile interval of that difference is below ``-max_drop``: at
95 % confidence (one-sided 97.5 %), it is worse on that segment by more than ``max_drop``.

The worst-slice search (``worst_slices``) tests, for each slice of each single column (categories,
numeric quantile bins), whether the model's metric on the slice is lower than on all test rows: the
paired bootstrap gives the standard error of (slice - overall), a one-sided normal p-value follows,
and Benjamini-Hochberg keeps the false discovery rate among the slices called weak at ``fdr``.
Design notes: docs/model_card.md#segments-and-the-gate
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

MISSING = "missing"
NUMERIC_KINDS = ("int", "float", "bool", "datetime")
_CHUNK_CELLS = 500_000      # bootstrap weights per step (resamplings x rows), ~4 MB: cache-sized steps are fastest


# ------------------------------------------------------------------ segment labels


def column_bins(train: pd.Series, kind: str, bins: int) -> dict:
    """How a column is cut into segments: ``{"kind": "numeric", "edges": [...]}`` (interior quantile cut
    points of the training values; right-closed bins) or ``{"kind": "category"}``."""
    if kind in NUMERIC_KINDS:
        values = _as_float(train)
        finite = values[~np.isnan(values)]
        if len(finite) == 0:
            return {"kind": "numeric", "edges": []}
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        spec = {"kind": "numeric", "edges": [float(e) for e in edges]}
        return {**spec, "datetime": True} if kind == "datetime" else spec
    return {"kind": "category"}


def segment_labels(values: pd.Series, spec: Mapping) -> np.ndarray:
    """Each row's segment name under ``spec`` (``column_bins``): the category as text, or the numeric
    bin as ``(low, high]``; ``missing`` for missing values."""
    if spec["kind"] == "numeric":
        x, edges = _as_float(values), np.asarray(spec["edges"], dtype=float)
        names = bin_names(edges, datetime=bool(spec.get("datetime")))
        which = np.searchsorted(edges, x, side="left")   # right-closed: x == edge falls in the lower bin
        out = np.asarray(names, dtype=object)[np.minimum(which, len(names) - 1)]
        out[np.isnan(x)] = MISSING
        return out
    text = values.astype(object)
    return np.where(values.isna().to_numpy(), MISSING, text.astype(str).to_numpy()).astype(object)


def bin_names(edges: Sequence[float], *, datetime: bool = False) -> list[str]:
    """Names of the len(edges)+1 right-closed bins: ``<= a``, ``(a, b]``, ..., ``> z`` (``datetime``: edges
    are nanoseconds since the epoch, named as UTC times)."""
    if len(edges) == 0:
        return ["all values"]
    e = ([pd.Timestamp(int(v), tz="UTC").isoformat(timespec="seconds") for v in edges] if datetime
         else [f"{v:.4g}" for v in edges])
    return [f"<= {e[0]}"] + [f"({e[i - 1]}, {e[i]}]" for i in range(1, len(e))] + [f"> {e[-1]}"]


def _ordered(names: np.ndarray) -> list:
    """The distinct segment names in reading order: numeric bins from low to high, categories
    alphabetically, ``missing`` last."""
    def key(name):
        text = str(name)
        if text == MISSING:
            return (1, np.inf, text)
        if text.startswith("<= "):
            return (0, -np.inf, text)
        if text.startswith("> "):
            return (0, np.inf, text)
        if text.startswith("(") and text.endswith("]"):
            return (0, _low(text), text)
        return (0, 0.0, text)
    return sorted(set(names.tolist()), key=key)


def _low(text: str) -> float:
    """The lower edge of a bin named ``(low, high]``."""
    low = text[1:].split(", ")[0]
    try:
        return float(low)
    except ValueError:
        return float(pd.Timestamp(low).value)


def _as_float(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):   # nanoseconds since the epoch (UTC), NaN for NaT
        since = pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")
        return (since / pd.Timedelta(1, "ns")).to_numpy(dtype=float)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


# ------------------------------------------------------------------ weighted metrics, many resamples at once


def weighted_metric(metric: str, y: np.ndarray, proba: np.ndarray, threshold: float, weights: np.ndarray) -> np.ndarray:
    """The metric of ``proba`` against ``y`` under each row of ``weights`` (shape (resamples, rows);
    a bootstrap resample is the count of each row drawn). NaN where it is undefined (ROC-AUC without
    both classes, average precision without a positive). ``roc_auc`` / ``pr_auc`` / ``f1`` (at
    ``threshold``), equal to scikit-learn's with ``sample_weight``.

    One sort of the scores serves every resample: cumulative weights along the sorted scores give, for
    each row, the weight of the other class below (ROC-AUC) or above (average precision) its score;
    tied scores are looked up at the ends of their group."""
    y = np.asarray(y, dtype=bool)
    proba = np.asarray(proba, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "f1":
            pred = proba >= threshold
            tp, fp, fn = w[:, y & pred].sum(axis=1), w[:, ~y & pred].sum(axis=1), w[:, y & ~pred].sum(axis=1)
            denominator = 2 * tp + fp + fn
            return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)
        if metric not in ("roc_auc", "pr_auc"):
            raise ValueError(f"unknown metric {metric!r}")
        descending = metric == "pr_auc"
        order = np.argsort(-proba if descending else proba, kind="mergesort")
        s, ys = proba[order], y[order]
        ws = w if np.array_equal(order, np.arange(len(order))) else w[:, order]
        neg = ws * ~ys                                                  # the other class's weight...
        pos_w = ws * ys
        P, N = pos_w.sum(axis=1), neg.sum(axis=1)
        if metric == "roc_auc":
            below = np.cumsum(neg, axis=1)     # ...at or below each score (a positive's own row adds nothing)
            tied = np.diff(s) == 0
            if tied.any():                                              # ties: half of the group's other class
                first, last = _group_ends(tied)
                before = np.where(first > 0, below[:, np.maximum(first - 1, 0)], 0.0)
                below = before + 0.5 * (below[:, last] - before)
            auc = (pos_w * below).sum(axis=1) / (P * N)
            return np.where((P > 0) & (N > 0), auc, np.nan)
        tp, fp = np.cumsum(pos_w, axis=1), np.cumsum(neg, axis=1)       # scores descending: tp/fp at each threshold
        tied = np.diff(s) == 0
        if tied.any():                                                  # a threshold takes its whole tie group
            _, last = _group_ends(tied)
            tp, fp = tp[:, last], fp[:, last]
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        return np.where(P > 0, (pos_w * precision).sum(axis=1) / np.where(P > 0, P, 1), np.nan)


def _group_ends(tied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of a sorted array (``tied[i]``: positions i and i+1 hold the same value), the
    first and last position of its group of equal values."""
    n = len(tied) + 1
    starts = np.r_[0, np.flatnonzero(~tied) + 1]
    ends = np.r_[starts[1:] - 1, n - 1]
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    return starts[group], ends[group]


def _resample_weights(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n) counts of each row in ``resamples`` bootstrap draws of n rows with replacement."""
    draws = rng.integers(0, n, size=(resamples, n)) + np.arange(resamples)[:, None] * n
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def _chunks(total: int, n: int):
    size = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, total, size):
        yield min(size, total - start)


def _interval(values: np.ndarray, confidence: float) -> list[float] | None:
    """Percentile interval of the finite ``values`` (None if fewer than half of them are finite)."""
    finite = values[np.isfinite(values)]
    if len(finite) < max(10, len(values) // 2):
        return None
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


# ------------------------------------------------------------------ the gate's per-segment comparison


def compare_segments(labels: Mapping[str, np.ndarray], y: np.ndarray, new: np.ndarray, production: np.ndarray | None,
                     *, metric: str, new_threshold: float, production_threshold: float | None, min_rows: int,
                     max_drop: float, resamplings: int, seed: int, confidence: float = 0.95) -> dict:
    """Each segment's metric for the challenger (``new``) and production on the same rows, with paired
    bootstrap intervals; which segments refuse the challenger (module docstring: the rule).

    ``labels``: column -> each row's segment name; ``production``: production's probabilities on the
    same rows (None: no production to compare, nothing refused). Returns a JSON-ready dict whose
    ``refused`` lists ``column=segment`` names (empty: the segments let the challenger pass)."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    rows, refused = [], []
    for column, names in labels.items():
        names = np.asarray(names, dtype=object)
        for segment in _ordered(names):
            mask = names == segment
            n, positives = int(mask.sum()), int(y[mask].sum())
            entry = {"column": column, "segment": str(segment), "rows": n, "positives": positives}
            ys, ps = y[mask], np.asarray(new)[mask]
            one_class = positives in (0, n) and metric != "f1"
            entry["new"] = _estimate(metric, ys, ps, new_threshold) if not one_class else None
            entry["production"] = entry["difference"] = None
            if one_class:
                entry["status"] = "one_class"
                entry["note"] = f"only one class in this segment ({positives} positives): {metric} is undefined"
            elif production is None:
                entry["status"] = "no_production"
            elif n < min_rows:
                entry["status"] = "too_small"
            else:
                entry["status"] = "compared"
            if not one_class:
                pp = None if production is None else np.asarray(production)[mask]
                if pp is not None:
                    entry["production"] = _estimate(metric, ys, pp, production_threshold)
                entry["difference"] = _paired(metric, ys, ps, pp, new_threshold, production_threshold,
                                              resamplings, rng, confidence, entry)
            entry["refused"] = bool(entry["status"] == "compared" and entry["difference"]["ci"] is not None
                                    and entry["difference"]["ci"][1] < -max_drop)
            if entry["refused"]:
                refused.append(f"{column}={segment}")
            rows.append(entry)
    return {"metric": metric, "min_rows": min_rows, "max_drop": max_drop, "confidence": confidence,
            "resamplings": resamplings, "seed": seed, "segments": rows, "refused": refused,
            "rule": (f"refuse when, on a segment with >= {min_rows} rows and both classes, the upper end of the "
                     f"{confidence:.0%} paired bootstrap interval of (new - production) {metric} is below "
                     f"-{max_drop}")}


def _estimate(metric: str, y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """The metric on every row once (no interval yet: ``_paired`` adds it)."""
    value = float(weighted_metric(metric, y, p, threshold, np.ones((1, len(y))))[0])
    return {"value": value if np.isfinite(value) else None, "ci": None}


def _paired(metric: str, y: np.ndarray, p_new: np.ndarray, p_prod: np.ndarray | None, t_new: float,
            t_prod: float | None, resamplings: int, rng: np.random.Generator, confidence: float,
            entry: dict) -> dict | None:
    """Bootstrap both models on the same resamples: fills the models' intervals into ``entry`` and
    returns the difference's point value and interval (None without production)."""
    new_v, prod_v = [], []
    for size in _chunks(resamplings, len(y)):
        w = _resample_weights(rng, len(y), size)
        new_v.append(weighted_metric(metric, y, p_new, t_new, w))
        if p_prod is not None:
            prod_v.append(weighted_metric(metric, y, p_prod, t_prod, w))
    new_b = np.concatenate(new_v)
    entry["new"]["ci"] = _interval(new_b, confidence)
    if p_prod is None:
        return None
    prod_b = np.concatenate(prod_v)
    entry["production"]["ci"] = _interval(prod_b, confidence)
    point = (entry["new"]["value"] - entry["production"]["value"]
             if entry["new"]["value"] is not None and entry["production"]["value"] is not None else None)
    return {"value": point, "ci": _interval(new_b - prod_b, confidence)}


def metric_intervals(y: np.ndarray, proba: np.ndarray, threshold: float, *, resamplings: int, seed: int,
                     confidence: float = 0.95) -> dict:
    """Each holdout metric (roc_auc, pr_auc, f1 at ``threshold``) with its bootstrap percentile interval."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    boot: dict[str, list] = {m: [] for m in ("roc_auc", "pr_auc", "f1")}
    for size in _chunks(resamplings, len(y)):
        w = _resample_weights(rng, len(y), size)
        for m in boot:
            boot[m].append(weighted_metric(m, y, proba, threshold, w))
    out = {}
    for m, parts in boot.items():
        value = float(weighted_metric(m, y, proba, threshold, np.ones((1, len(y))))[0])
        out[m] = {"value": value if np.isfinite(value) else None, "ci": _interval(np.concatenate(parts), confidence)}
    return out


def refusal_reason(report: Mapping) -> str | None:
    """Why the segments refuse the challenger (one sentence), or None when they do not."""
    if not report.get("refused"):
        return None
    worst = [s for s in report["segments"] if s["refused"]]
    parts = [f"{s['column']}={s['segment']} ({s['rows']} rows): new - production {report['metric']} "
             f"{s['difference']['value']:+.4f}, {report['confidence']:.0%} interval "
             f"[{s['difference']['ci'][0]:+.4f}, {s['difference']['ci'][1]:+.4f}]" for s in worst]
    return (f"worse on segment{'s' if len(worst) > 1 else ''} {'; '.join(parts)}: below "
            f"-segments.max_drop={report['max_drop']} at {report['confidence']:.0%} confidence")


# ------------------------------------------------------------------ the worst-slice search


def benjamini_hochberg(p_values: Sequence[float], fdr: float) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, q-values) of Benjamini-Hochberg at false discovery rate ``fdr``."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q <= fdr, q


def worst_slices(slices: Mapping[str, np.ndarray], y: np.ndarray, proba: np.ndarray, *, metric: str,
                 threshold: float, min_rows: int, fdr: float, resamplings: int, seed: int, top: int,
                 confidence: float = 0.95) -> dict:
    """The weakest single-column slices of the test rows for one model (module docstring: the test).

    ``slices``: column -> each row's slice name. Slices with fewer than ``min_rows`` rows or one class
    are not tested (counted). Returns the ``top`` slices with the lowest metric among those tested,
    each with its difference to the overall metric, interval, p-value, BH q-value and ``weak`` (rejected
    at ``fdr``), and how many were tested and found weak."""
    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    n = len(y)
    # rows in score order once: every slice's rows are then already sorted, so no resample is reordered per slice
    order = np.argsort(-proba if metric == "pr_auc" else proba, kind="mergesort")
    y, proba = y[order], proba[order]
    slices = {column: np.asarray(names, dtype=object)[order] for column, names in slices.items()}
    candidates = []
    skipped = {"too_small": 0, "one_class": 0}
    for column, names in slices.items():
        names = np.asarray(names, dtype=object)
        for name in _ordered(names):
            mask = names == name
            rows, positives = int(mask.sum()), int(y[mask].sum())
            if rows < min_rows:
                skipped["too_small"] += 1
            elif positives in (0, rows) and metric != "f1":
                skipped["one_class"] += 1
            else:
                candidates.append((column, str(name), mask, rows, positives))
    overall = float(weighted_metric(metric, y, proba, threshold, np.ones((1, n)))[0])
    rng = np.random.default_rng(seed)
    diffs = [[] for _ in candidates]
    for size in _chunks(resamplings, n):
        w = _resample_weights(rng, n, size)
        base = weighted_metric(metric, y, proba, threshold, w)
        for i, (_, _, mask, _, _) in enumerate(candidates):
            diffs[i].append(weighted_metric(metric, y[mask], proba[mask], threshold, w[:, mask]) - base)
    found = []
    for (column, name, mask, rows, positives), parts in zip(candidates, diffs):
        d = np.concatenate(parts) if parts else np.empty(0)
        value = float(weighted_metric(metric, y[mask], proba[mask], threshold, np.ones((1, rows)))[0])
        finite = d[np.isfinite(d)]
        se = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        diff = value - overall
        p = float(norm.cdf(diff / se)) if se > 0 else (0.0 if diff < 0 else 1.0)
        found.append({"column": column, "slice": name, "rows": rows, "positives": positives, "value": value,
                      "difference": diff, "ci": _interval(d, confidence), "p_value": p})
    rejected, q = benjamini_hochberg([f["p_value"] for f in found], fdr)
    for f, r, qv in zip(found, rejected, q):
        f["q_value"], f["weak"] = float(qv), bool(r)
    found.sort(key=lambda f: (f["value"], f["p_value"]))
    return {"metric": metric, "overall": overall, "fdr": fdr, "min_rows": min_rows, "resamplings": resamplings,
            "tested": len(found), "weak": int(rejected.sum()), "not_tested": skipped, "slices": found[:top],
            "method": ("per slice, H0: slice metric >= overall metric on all test rows; one-sided p-value from the "
                       "paired bootstrap standard error of (slice - overall) under a normal approximation; "
                       f"Benjamini-Hochberg over the {len(found)} slices tested at FDR {fdr}")}


# ------------------------------------------------------------------ the gate's call


def segment_checks(settings, schema, *, metric: str, seed: int, train: pd.DataFrame, test: pd.DataFrame,
                   y: np.ndarray, proba: np.ndarray, threshold: float, compared: np.ndarray | None,
                   production_proba: np.ndarray | None, production_threshold: float | None) -> dict:
    """What the gate adds to blessing.json: ``segments`` (the configured columns, challenger against
    production on the compared rows) and ``worst_slices`` (the challenger on every test row, each
    non-sensitive feature). ``settings``: the ``segments`` section; ``train``/``test``: typed splits;
    ``y``/``proba``: every test row's label and challenger probability; ``compared``: boolean mask of
    the rows production is compared on (None: all); ``production_proba``: production on those rows."""
    keep = np.ones(len(y), dtype=bool) if compared is None else np.asarray(compared, dtype=bool)
    columns = {c: column_bins(train[c], schema.columns[c].type, settings.bins) for c in settings.columns}
    report = compare_segments({c: segment_labels(test[c], spec)[keep] for c, spec in columns.items()},
                              y[keep], proba[keep], production_proba, metric=metric, new_threshold=threshold,
                              production_threshold=production_threshold, min_rows=settings.min_rows,
                              max_drop=settings.max_drop, resamplings=settings.resamplings, seed=seed)
    report["columns"] = columns
    report["rows"] = int(keep.sum())
    whole = compare_segments({"all test rows": np.full(int(keep.sum()), "all", dtype=object)}, y[keep], proba[keep],
                             production_proba, metric=metric, new_threshold=threshold,
                             production_threshold=production_threshold, min_rows=1, max_drop=1.0,
                             resamplings=settings.resamplings, seed=seed)["segments"][0]
    out = {"segments": report, "worst_slices": None,
           "intervals": {"confidence": 0.95, "resamplings": settings.resamplings,
                         "new": metric_intervals(y, proba, threshold, resamplings=settings.resamplings, seed=seed),
                         "compared": {k: whole[k] for k in ("rows", "new", "production", "difference")}}}
    if settings.worst_slices:
        features = [c for c in schema.features if not schema.columns[c].sensitive]
        slices = {c: segment_labels(test[c], column_bins(train[c], schema.columns[c].type, settings.bins))
                  for c in features}
        out["worst_slices"] = worst_slices(slices, y, proba, metric=metric, threshold=threshold,
                                           min_rows=settings.slice_min_rows, fdr=settings.fdr,
                                           resamplings=settings.slice_resamplings, seed=seed,
                                           top=settings.worst_slices)
        out["worst_slices"]["sensitive_columns_left_out"] = sorted(
            c for c in schema.features if schema.columns[c].sensitive)
    return out


def segment_metrics(frame: pd.DataFrame, columns: Mapping[str, Mapping], y: np.ndarray, proba: np.ndarray,
                    threshold: float) -> list[dict]:
    """Realised metrics per segment of labelled rows (``tabpipe monitor``): ``columns`` as published with
    the version (``column_bins`` specs); ROC-AUC / average precision None where a segment has one class."""
    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    out = []
    for column, spec in columns.items():
        if column not in frame.columns:
            continue
        names = segment_labels(frame[column].reset_index(drop=True), spec)
        for name in _ordered(names):
            mask = names == name
            row = {"column": column, "segment": str(name), "rows": int(mask.sum()), "positives": int(y[mask].sum())}
            for metric in ("roc_auc", "pr_auc", "f1"):
                value = float(weighted_metric(metric, y[mask], proba[mask], threshold, np.ones((1, int(mask.sum()))))[0])
                row[metric] = value if np.isfinite(value) else None
            out.append(row)
    return out

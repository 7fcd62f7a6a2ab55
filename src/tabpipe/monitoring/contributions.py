"""Drift of the model's reasons: per input column, the mean |contribution| to the raw score's log-odds
(``tabpipe.scoring.explain``: exact for linear and spline terms, Tree SHAP for trees) on a sample of the
reference rows and on a sample of the window's rows.

A column whose mean |contribution| grows is pushing more of the window's scores than it pushed the
training rows' (its values moved to where the model is steep, or a shift elsewhere made it decisive); one
that shrinks carries less. The ratio window / reference is reported per column, largest change first; it
is information for the monitoring report, not a governance rule. Samples: at most ``sample_rows`` rows
of each, drawn with ``seed``; rows the schema check refuses are left out."""
from __future__ import annotations

import numpy as np
import pandas as pd


def mean_abs_contributions(model, rows: pd.DataFrame) -> tuple[np.ndarray, int]:
    """(per feature column the mean |contribution|, rows explained) of ``rows`` (raw or typed records)."""
    from tabpipe.scoring.explain import explainer_for

    typed, problems = model.check(rows)
    hard = sorted({r for p in problems if p.hard for r in p.rows})
    if hard:
        typed = typed.drop(index=typed.index[hard])
    if len(typed) == 0:
        return np.zeros(len(model.schema.features)), 0
    reasons = explainer_for(model).explain(model.preprocessor.transform(typed))
    return np.abs(reasons.contributions).mean(axis=0), len(typed)


def contribution_drift(model, reference: pd.DataFrame, window: pd.DataFrame, *, sample_rows: int,
                       min_rows: int, seed: int) -> dict:
    """``{status: ok, rows: {reference, window}, columns: [{column, reference, window, ratio}]}`` (largest
    |log ratio| first), or ``{status, message}`` saying why there is none (``columns_missing``,
    ``not_explainable``, ``insufficient_data``)."""
    from tabpipe.scoring.explain import NotExplainable

    rng = np.random.default_rng(seed)

    def sample(frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame) <= sample_rows:
            return frame.reset_index(drop=True)
        return frame.iloc[np.sort(rng.choice(len(frame), sample_rows, replace=False))].reset_index(drop=True)

    features = model.schema.features
    absent = [c for c in features if c not in reference.columns or c not in window.columns]
    if absent:   # e.g. sensitive columns: the reference and the window sample never keep them in clear
        return {"status": "columns_missing", "message": "the reference or the window sample lacks "
                f"{', '.join(absent)} (sensitive columns are not kept), so the model cannot be explained on them"}
    try:
        ref, ref_rows = mean_abs_contributions(model, sample(reference[features]))
        win, win_rows = mean_abs_contributions(model, sample(window[features]))
    except NotExplainable as exc:
        return {"status": "not_explainable", "message": str(exc)}
    if min(ref_rows, win_rows) < min_rows:
        return {"status": "insufficient_data", "rows": {"reference": ref_rows, "window": win_rows},
                "message": f"{win_rows} window rows and {ref_rows} reference rows explained; at least {min_rows} "
                           "of each are needed (monitoring.contributions.min_rows)"}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref > 0, win / np.where(ref > 0, ref, 1.0), np.where(win > 0, np.inf, 1.0))
    columns = [{"column": c, "reference": round(float(r), 6), "window": round(float(w), 6),
                "ratio": None if not np.isfinite(q) else round(float(q), 4)}
               for c, r, w, q in zip(features, ref, win, ratio)]
    columns.sort(key=lambda c: -abs(np.log(c["ratio"])) if c["ratio"] else -np.inf)
    return {"status": "ok", "rows": {"reference": ref_rows, "window": win_rows},
            "of": "mean |contribution| to the raw score logit", "columns": columns}

"""Data drift of new data against a reference sample: evidently 0.7's DataDriftPreset rules, computed directly.

The verdicts (``check_drift``) use every row; evidently's own report is written on a sample. Sensitive
columns are never checked nor given to evidently.
Design notes: docs/monitoring.md#evidentlys-drift-rules-computed-directly
"""
from __future__ import annotations

import html as html_lib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

SENSITIVE = "sensitive (schema.yaml): not checked for drift, and left out of evidently's report"
INTEGER_CARDINALITY_LIMIT = 10   # evidently: an int column with at most this many values is categorical
SMALL_REFERENCE = 1_000          # evidently: p-value tests up to this many reference values, distances above


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: evidently's method name, its score and threshold."""

    kind: str            # "num" | "cat"
    method: str
    score: float
    threshold: float
    drifted: bool


def column_kind(values: pd.Series) -> str | None:
    """evidently's inferred type of a column: "num", "cat", "text", or None (not checked)."""
    name = values.dtype.name
    if name.startswith("float"):
        return "num"
    if name.startswith("int"):
        return "cat" if values.nunique() <= INTEGER_CARDINALITY_LIMIT else "num"
    if name in ("string", "str"):
        return "text" if values.nunique() > values.count() * 0.5 else "cat"
    if name == "object":
        present = values.dropna()
        if len(present) == 0:
            return None
        if isinstance(present.iloc[0], str) and isinstance(present.iloc[-1], str):
            return "text" if values.nunique() > values.count() * 0.5 else "cat"
        return None
    if name in ("bool", "category"):
        return "cat"
    return None


def _clean(values: pd.Series) -> pd.Series:
    if values.dtype.kind == "f":
        array = values.to_numpy()
        return pd.Series(array[np.isfinite(array)])
    return values.dropna()


def _counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts of every value seen in either frame, aligned (unused levels of a categorical dtype left out)."""
    both = pd.concat([ref.value_counts(), cur.value_counts()], axis=1, sort=False).fillna(0)
    ref_counts, cur_counts = both.iloc[:, 0].to_numpy(dtype=float), both.iloc[:, 1].to_numpy(dtype=float)
    seen = (ref_counts + cur_counts) > 0
    return ref_counts[seen], cur_counts[seen]


def _z_test(ref: pd.Series, cur: pd.Series) -> float:
    """Two-sided two-proportion Z-test p-value of "equals the smallest value" (evidently's z_stattest)."""
    ref_values, cur_values = ref.unique(), cur.unique()
    if len(ref_values) == 1 and len(cur_values) == 1 and ref_values[0] == cur_values[0]:
        return 1.0
    first = sorted(set(ref_values) | set(cur_values))[0]
    n1, n2 = len(ref), len(cur)
    p1, p2 = float((ref != first).sum()) / n1, float((cur != first).sum()) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _chi_square(ref: pd.Series, cur: pd.Series) -> float:
    ref_counts, cur_counts = _counts(ref, cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(cur_counts, ref_counts * (len(cur) / len(ref)))[1])


def column_drift(ref: pd.Series, cur: pd.Series, kind: str) -> ColumnDrift:
    """evidently's default drift test for one column (NaN/inf already kept in, dropped here)."""
    ref, cur = _clean(ref), _clean(cur)
    n_values = pd.concat([ref, cur], ignore_index=True).nunique()
    if len(ref) <= SMALL_REFERENCE:
        if kind == "num" and n_values > 5:
            p = float(stats.ks_2samp(ref.to_numpy(), cur.to_numpy())[1])
            return ColumnDrift(kind=kind, method="K-S p_value", score=p, threshold=0.05, drifted=p <= 0.05)
        if n_values > 2:
            p = _chi_square(ref, cur)
            return ColumnDrift(kind=kind, method="chi-square p_value", score=p, threshold=0.05, drifted=p < 0.05)
        p = _z_test(ref, cur)
        return ColumnDrift(kind=kind, method="Z-test p_value", score=p, threshold=0.05, drifted=p < 0.05)
    if kind == "num" and n_values > 5:
        ref_values = ref.to_numpy(dtype=float)
        norm = max(float(np.std(ref_values)), 0.001)
        score = float(stats.wasserstein_distance(ref_values, cur.to_numpy(dtype=float))) / norm
        return ColumnDrift(kind=kind, method="Wasserstein distance (normed)", score=score, threshold=0.1,
                           drifted=score >= 0.1)
    ref_counts, cur_counts = _counts(ref, cur)
    score = float(distance.jensenshannon(ref_counts / len(ref), cur_counts / len(cur)))
    return ColumnDrift(kind=kind, method="Jensen-Shannon distance", score=score, threshold=0.1, drifted=score >= 0.1)


def drift_columns(reference: pd.DataFrame, current: pd.DataFrame,
                  sensitive: Iterable[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Columns evidently's preset would test (typed from ``current``), and the others with the reason."""
    checked, skipped, sensitive = [], {}, set(sensitive)
    for name in current.columns:
        if name in sensitive or name not in reference.columns:
            skipped[name] = SENSITIVE if name in sensitive else "not in the reference"
            continue
        kind = column_kind(current[name])
        if kind is None:
            skipped[name] = f"type {current[name].dtype} is not checked (datetime, mixed or empty)"
        elif kind == "text":
            skipped[name] = "free text (more than half the values distinct) is not checked"
        elif _clean(reference[name]).empty or _clean(current[name]).empty:
            skipped[name] = "no values in one of the frames"
        else:
            checked.append(name)
    return checked, skipped


def check_drift(reference: pd.DataFrame, current: pd.DataFrame,
                sensitive: Iterable[str] = ()) -> dict[str, ColumnDrift]:
    """Per-column verdicts on the full frames, for the columns ``drift_columns`` selects."""
    columns, _ = drift_columns(reference, current, sensitive)
    return {name: column_drift(reference[name], current[name], column_kind(current[name])) for name in columns}


def _evidently_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path, drift_share: float,
                      note: str) -> tuple[Path, Path]:
    from evidently import Report  # slow import (~5 s): only when a reference exists
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(current_data=current, reference_data=reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    html, raw_json = out_dir / "drift_report.html", out_dir / "drift_report.json"
    snapshot.save_html(str(html))
    page = html.read_text()
    banner = (f'<div style="font-family:sans-serif;padding:8px;background:#fff3cd;border:1px solid #e0c36c">'
              f"{html_lib.escape(note)}</div>")
    html.write_text(page.replace("<body>", "<body>" + banner, 1) if "<body>" in page else banner + page)
    raw = {"tabpipe_note": note, **snapshot.dict()}
    raw_json.write_text(json.dumps(raw, indent=2, default=str))
    return html, raw_json


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path, *, drift_share: float,
                 max_rows: int, seed: int, sensitive: Iterable[str] = (), window_rows: int | None = None,
                 html: bool = True) -> dict:
    """Verdicts on the full frames, evidently's HTML + JSON on at most ``max_rows`` rows of each; a summary.

    ``window_rows``: when ``current`` is itself a random sample of a larger window (``tabpipe monitor``
    reading a dataset a partition at a time), that window's row count: the note then says the verdicts
    are on a sample. ``html`` false: the verdicts only, no evidently report (``tabpipe monitor`` over the
    log writes it on demand, ``--report``: it costs far more than the verdicts).

    Summary: ``{"status": "drift"|"no_drift", "drift_share", "drifted_columns", "columns": {name:
    {"drifted", "score", "method", "threshold"}}, "skipped_columns", "reference_rows", "current_rows",
    "report_sampled", "report_reference_rows", "report_current_rows", "html", "json"}``.
    """
    verdicts = check_drift(reference, current, sensitive)
    columns, skipped = drift_columns(reference, current, sensitive)
    ref = reference[columns].sample(n=min(max_rows, len(reference)), random_state=seed) if columns else reference
    cur = current[columns].sample(n=min(max_rows, len(current)), random_state=seed) if columns else current
    sampled = len(ref) < len(reference) or len(cur) < len(current)
    whole = max(window_rows or 0, len(current))
    on = (f"all rows ({len(reference):,} reference, {len(current):,} current)" if whole == len(current) else
          f"all {len(reference):,} reference rows and a seeded random sample of {len(current):,} of the window's "
          f"{whole:,} current rows")
    note = (f"tabpipe drift verdicts are computed on {on} with evidently's default tests; this evidently report "
            + (f"is on a random sample of {len(ref):,} reference and {len(cur):,} current rows, so its "
               f"figures can differ slightly." if sampled else "is on all rows."))
    written, raw_json = (_evidently_report(ref, cur, out_dir, drift_share, note) if columns and html
                         else (None, None))
    drifted = sorted(n for n, c in verdicts.items() if c.drifted)
    share = len(drifted) / len(verdicts) if verdicts else 0.0
    summary = {
        "status": "drift" if verdicts and share >= drift_share else "no_drift",
        "drift_share": share,
        "drifted_columns": drifted,
        "columns": {n: {k: v for k, v in asdict(c).items() if k != "kind"} for n, c in verdicts.items()},
        "skipped_columns": skipped,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "window_rows": whole,
        "report_sampled": sampled,
        "report_reference_rows": len(ref),
        "report_current_rows": len(cur),
        "report_note": note,
    }
    if written is not None:
        summary.update(html=str(written), json=str(raw_json))
    elif columns:
        summary["report_note"] = ("evidently's HTML report was not written (on demand: tabpipe monitor --report); "
                                  "the verdicts above do not depend on it")
    return summary

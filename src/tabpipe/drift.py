"""Data drift: an evidently (0.7 API) DataDrift report of new data against a reference sample.

The reference is the training data of the current production model, stored with it in the
registry. Per column evidently picks a test (K-S / chi-square / Z-test p-values for small samples,
Wasserstein / Jensen-Shannon distances for large ones); a column drifts when a p-value is below
its threshold, or a distance is at or above it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _column_drift(metric: dict) -> tuple[str, bool, float, str] | None:
    config = metric.get("config", {})
    if not config.get("type", "").endswith("ValueDrift"):
        return None
    method, value, threshold = config.get("method", ""), float(metric["value"]), float(config.get("threshold", 0.05))
    drifted = value < threshold if "p_value" in method else value >= threshold
    return config["column"], drifted, value, method


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path, *, drift_share: float,
                 max_rows: int, seed: int) -> dict:
    """Run evidently on the common columns (sampled to ``max_rows``), save HTML + JSON, return a summary.

    Summary: ``{"status": "drift"|"no_drift", "drift_share", "drifted_columns", "columns": {name:
    {"drifted", "score", "method"}}, "html", "json"}``; datetime columns are left out.
    """
    from evidently import Report  # slow import (~5 s): only when a reference exists
    from evidently.presets import DataDriftPreset

    cols = [c for c in reference.columns if c in current.columns and not pd.api.types.is_datetime64_any_dtype(reference[c])]
    ref = reference[cols].sample(n=min(max_rows, len(reference)), random_state=seed)
    cur = current[cols].sample(n=min(max_rows, len(current)), random_state=seed)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(current_data=cur, reference_data=ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    html, raw_json = out_dir / "drift_report.html", out_dir / "drift_report.json"
    snapshot.save_html(str(html))
    raw = snapshot.dict()
    raw_json.write_text(json.dumps(raw, indent=2, default=str))
    columns = {}
    for metric in raw.get("metrics", []):
        found = _column_drift(metric)
        if found:
            name, drifted, score, method = found
            columns[name] = {"drifted": drifted, "score": score, "method": method}
    drifted = sorted(n for n, c in columns.items() if c["drifted"])
    share = len(drifted) / len(columns) if columns else 0.0
    return {
        "status": "drift" if columns and share >= drift_share else "no_drift",
        "drift_share": share,
        "drifted_columns": drifted,
        "columns": columns,
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "html": str(html),
        "json": str(raw_json),
    }

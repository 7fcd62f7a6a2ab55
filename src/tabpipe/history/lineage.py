"""Lineage: a model version back to its training run, config snapshot, data fingerprint and source
(for a joined source, each part's rows and fingerprint),
and forward to the monitoring windows, drift and alerts recorded for it. Also how a training run
is recorded in the history store (``record_train_run``, called once by the CLI after a run).

Sources: the registry's version metadata (run_id, data_fingerprint, rows, candidate, metrics),
the store's ``runs`` row (source description, stage seconds, where run.json is), and run.json
itself (the config snapshot) when that file is still on this machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tabpipe.history.store import SCORE_FEATURE, HistoryStore
from tabpipe.sources.base import describe_source  # noqa: F401  (the one description of a source; used here by callers)


def record_train_run(store: HistoryStore, record: dict, run_dir: Path, source: str,
                     trigger_run_id: str | None = None) -> None:
    """Copy a training run's run.json ``record`` (finished or failed) into the store's ``runs`` table;
    ``trigger_run_id``: the monitoring run that started it (``monitor --retrain``)."""
    ingestion = (record.get("stages", {}).get("ingestion") or {}).get("artifact") or {}
    stage_seconds = {name: stage.get("seconds") for name, stage in record.get("stages", {}).items()}
    store.record_run(kind="train", run_id=record["run_id"], started_at=record.get("started_at"),
                     data_fingerprint=ingestion.get("fingerprint"), source=source,
                     config_ref=str(Path(run_dir) / "run.json"), rows=ingestion.get("n_rows"),
                     trigger_run_id=trigger_run_id)
    store.finish_run(record["run_id"], status=record.get("status", "failed"), error=record.get("error"),
                     finished_at=record.get("finished_at"), stage_seconds=stage_seconds,
                     model_version=record.get("model_version"))


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (timestamps as ISO text, NaN as None)."""
    out = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
            for row in out.to_dict("records")]


def lineage(version: str, metadata: dict, store: HistoryStore, *, is_production: bool = False) -> dict:
    """Everything known about ``version``: ``model`` (registry metadata), ``training`` (run, data,
    source, config snapshot, and for a retrained version the monitoring run — window, alerts — that
    started it), ``predictions`` (logged / labelled counts), ``windows`` (metric trend,
    estimated vs realised), ``drift`` (per window: features checked, drifted, their max PSI, and the
    PSI of the score apart) and ``alerts``."""
    run_id = metadata.get("run_id")
    run = store.run(run_id) if run_id else None
    snapshot, snapshot_note = None, None
    if run and run.get("config_ref"):
        path = Path(run["config_ref"])
        if path.is_file():
            snapshot = json.loads(path.read_text()).get("config")
        else:
            snapshot_note = f"run.json not on this machine: {path}"
    logged = store.prediction_summary(version=version)
    drift = store.drift(version=version)
    drift_summary = []
    if not drift.empty:
        grouped = drift.groupby(["window_start", "window_end"], dropna=False)
        for (start, end), part in grouped:
            score = part[part["feature"] == SCORE_FEATURE]      # the probabilities' PSI: reported, not a feature
            features = part[part["feature"] != SCORE_FEATURE]
            drift_summary.append({
                "window_start": None if pd.isna(start) else start.isoformat(),
                "window_end": None if pd.isna(end) else end.isoformat(),
                "features": int(len(features)), "drifted": int((features["verdict"] == "drift").sum()),
                "max_psi": None if features["psi"].isna().all() else float(features["psi"].max()),
                "score_psi": None if score["psi"].isna().all() else float(score["psi"].iloc[-1]),
                "run_id": part["run_id"].iloc[-1]})
    return {
        "version": version,
        "is_production": is_production,
        "model": {key: metadata.get(key) for key in ("created_at", "candidate", "metrics", "run_id")},
        "training": {
            "run_id": run_id,
            "data_fingerprint": metadata.get("data_fingerprint") or (run or {}).get("data_fingerprint"),
            "rows": metadata.get("rows") or (run or {}).get("rows"),
            "source": (run or {}).get("source"),
            "sources": metadata.get("sources"),   # a joined source's parts: rows, matched rows, fingerprint each
            "status": (run or {}).get("status"),
            "started_at": (run or {}).get("started_at").isoformat() if run else None,
            "stage_seconds": (run or {}).get("stage_seconds"),
            "config_ref": (run or {}).get("config_ref"),
            "config_snapshot": snapshot,
            "triggered_by": _trigger(store, (run or {}).get("trigger_run_id")),
            **({"note": snapshot_note} if snapshot_note else {}),
            **({} if run else {"note": f"run {run_id} is not in the history store {store.url}"}),
        },
        "predictions": {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in logged.items()},
        "windows": _records(store.metric_trend(version)),
        "drift": drift_summary,
        "alerts": _records(store.alerts(version=version)[["created_at", "run_id", "rule", "observed", "threshold", "window_start",
                                                           "window_end", "status", "attempts", "message"]]),
        "monitor_runs": _records(store.runs(kind="monitor", model_version=version)[["run_id", "status", "started_at", "rows"]]),
    }


def _trigger(store: HistoryStore, run_id: str | None) -> dict | None:
    """The monitoring run that started a training run: its window, rows, and the alerts it raised."""
    if run_id is None:
        return None
    run = store.run(run_id)
    alerts = store.alerts(run_id=run_id)
    drift = store.drift(run_id=run_id)
    window = drift if not drift.empty else alerts
    start = window["window_start"].iloc[0] if not window.empty else None
    end = window["window_end"].iloc[0] if not window.empty else None
    return {"run_id": run_id, "model_version": (run or {}).get("model_version"), "window": (run or {}).get("source"),
            "window_start": None if start is None or pd.isna(start) else start.isoformat(),
            "window_end": None if end is None or pd.isna(end) else end.isoformat(), "rows": (run or {}).get("rows"),
            "alerts": _records(alerts[["created_at", "rule", "observed", "threshold", "status", "message"]])}


def run_details(store: HistoryStore, run_id: str) -> dict | None:
    """One run with the data quality, drift and alerts recorded under it (JSON-ready), or None."""
    run = store.run(run_id)
    if run is None:
        return None
    details = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in run.items()}
    details["quality"] = _records(store.quality(run_id))
    details["drift"] = _records(store.drift(run_id=run_id))
    details["alerts"] = _records(store.alerts(run_id=run_id))
    return details

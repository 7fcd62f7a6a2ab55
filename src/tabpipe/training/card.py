"""The model card of a published version (``model_card.json`` + ``model_card.html``), built by the pusher
from the run's own evidence: what the model is for (``model_card:`` in pipeline.yaml), the data it saw,
its test metrics with intervals, calibration and whatever else the evaluation recorded, its segments and
weakest slices, the gate's decision against the previous version, the expectation warnings training saw,
and how sensitive columns were handled.

The card is published with the version, listed in its signed metadata like model.pkl, so it is verified
on every read. It is a document for people: every number in it is read from blessing.json, run artifacts
or the config, never recomputed here. The evaluation's blessing.json is read generically: keys this module
does not know (calibration, importance, ...) are carried over as they are.
Design notes: docs/model_card.md
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tabpipe.jsonable import to_json_ready
from tabpipe.reports.model_card import CARD_FORMAT, write_card_html
from tabpipe.sources import redact_urls_in

CARD_JSON = "model_card.json"
CARD_HTML = "model_card.html"
# blessing.json keys the card places itself; every other key is carried over under "evaluation"
_PLACED = {"accepted", "reason", "metric", "min_score", "min_improvement", "new", "production_version", "production",
           "new_on_compared_rows", "compared_rows", "segments", "worst_slices", "intervals", "calibration"}


def describe_source(source: Mapping[str, Any]) -> dict:
    """The data source as the card shows it: its settings with every URL's password hidden and file
    paths reduced to the file's name (the trainer's folders are nobody's business). Environment
    variable *names* stay; their values are never read here."""
    def strip(value, key=None):
        if isinstance(value, Mapping):
            return {k: strip(v, k) for k, v in value.items()}
        if key == "path" and isinstance(value, str):
            return Path(value).name
        return value
    return strip(redact_urls_in(dict(source)))


def sensitive_handling(schema, monitoring_sensitive: str, hash_key_env: str) -> dict:
    """How the schema's ``sensitive: true`` columns are treated (docs/monitoring_store.md#sensitive-columns)."""
    columns = sorted(schema.sensitive)
    if not columns:
        return {"columns": [], "handling": ["no column of the schema is marked sensitive: true"]}
    logs = (f"keyed hash (HMAC-SHA256 under ${hash_key_env}; left out when it is unset)"
            if monitoring_sensitive == "hash" else "left out (monitoring.sensitive: drop)")
    return {"columns": columns, "handling": [
        "the model is trained on the clear values",
        f"prediction log, history store and run folders: {logs}",
        "sensitive categories are one-hot encoded on pseudonyms (h: + SHA-256 of column name and value)",
        "left out of reference.parquet, profile.json (no drift check) and the worst-slice search",
        "not allowed as segments (their values would appear in this card)",
    ]}


def build_card(*, version: str, created_at: str | None, run_id: str, blessing: Mapping, validation, trainer,
               ingestion_metadata: Mapping, context: Mapping, features: list[str], target: Mapping) -> dict:
    """The card's JSON document (``context``: what the config says — ``model_card``, ``source``,
    ``sensitive``; ``ingestion_metadata``: the version metadata's data fingerprint and row count)."""
    intervals = blessing.get("intervals") or {}
    card = {
        "card_format": CARD_FORMAT,
        "version": version,
        "created_at": created_at,
        "run_id": run_id,
        "purpose": {"owner": context["model_card"].get("owner"),
                    "intended_use": context["model_card"].get("intended_use"),
                    "limitations": list(context["model_card"].get("limitations") or [])},
        "model": {"candidate": trainer.best_candidate, "resampling": trainer.best_resampling,
                  "cv_score": trainer.cv_score, "threshold": trainer.threshold, "features": list(features),
                  "target": dict(target), "configurations_tried": trainer.configs_tried},
        "data": {"source": context["source"], "fingerprint": ingestion_metadata.get("data_fingerprint"),
                 "rows": ingestion_metadata.get("rows"), "train_rows": validation.n_train,
                 "test_rows": validation.n_test, "rows_dropped": validation.rows_dropped,
                 "drift": {"status": validation.drift_status, "share": validation.drift_share}},
        "metrics": {"metric": blessing.get("metric"), "test": dict(blessing.get("new") or {}),
                    "intervals": intervals.get("new"), "confidence": intervals.get("confidence"),
                    "resamplings": intervals.get("resamplings")},
        "calibration": _calibration(blessing),
        "gate": {"accepted": blessing.get("accepted"), "reason": blessing.get("reason"),
                 "metric": blessing.get("metric"), "min_score": blessing.get("min_score"),
                 "min_improvement": blessing.get("min_improvement"),
                 "previous_version": blessing.get("production_version"),
                 "previous_metrics": blessing.get("production"),
                 "compared_rows": blessing.get("compared_rows"),
                 "difference": (intervals.get("compared") or {}).get("difference")},
        "segments": blessing.get("segments"),
        "worst_slices": blessing.get("worst_slices"),
        "expectation_warnings": {"rows_with_warnings": validation.rows_with_warnings,
                                 "by_column": {c: dict(r) for c, r in validation.warning_counts.items()},
                                 "integrity": dict(validation.integrity_counts)},
        "sensitive_columns": context["sensitive"],
        "evaluation": {k: v for k, v in blessing.items() if k not in _PLACED},
    }
    return to_json_ready(card)


def _calibration(blessing: Mapping) -> dict | None:
    """Whatever the evaluation reports about calibration: a ``calibration`` entry of blessing.json, and
    calibration metrics among the test metrics (ECE, Brier score, log-loss), when present."""
    found = {k: v for k, v in (blessing.get("new") or {}).items()
             if any(word in k.lower() for word in ("ece", "brier", "log_loss", "logloss", "calibration"))}
    extra = blessing.get("calibration")
    if isinstance(extra, Mapping):
        found.update(extra)
    elif extra is not None:
        found["calibration"] = extra
    return found or None


def write_card(out_dir: Path, card: Mapping) -> dict[str, Path]:
    """``model_card.json`` and ``model_card.html`` of ``card`` in ``out_dir``; returns them by file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CARD_JSON
    path.write_text(json.dumps(card, indent=2, allow_nan=False))
    return {CARD_JSON: path, CARD_HTML: write_card_html(out_dir / CARD_HTML, card)}

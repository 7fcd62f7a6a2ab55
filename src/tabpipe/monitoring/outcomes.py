"""Outcomes: joining arriving labels to logged predictions, and the realised metrics they give.

A label attaches to every logged prediction with its id (``row_id``: the schema's id column, hashed when
sensitive, or ``<request_id>:<row_index>``); realised metrics are recorded per monitoring window.
Ids and the join: docs/monitoring_store.md#row-ids-and-outcomes
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from tabpipe.errors import DataError
from tabpipe.privacy import Protector, canonical
from tabpipe.history.store import HistoryStore


@dataclass
class OutcomesResult:
    """What attaching outcomes did: usable labels, skipped rows, matched predictions, unknown ids, windows."""
    labels: int                 # usable label rows in the file
    skipped: int                # rows without an id or a label
    matched: int                # logged predictions that got an outcome
    unmatched_ids: int          # label ids with no logged prediction
    windows: list[dict] = field(default_factory=list)  # {version, window_start, window_end, rows, metrics}


def realised_metrics(y: np.ndarray, proba: np.ndarray, predicted_positive: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC (None with a single class), precision, recall, F1 and the confusion matrix
    of the logged predictions against the outcomes (y, predicted_positive: 0/1 arrays)."""
    y, pred = np.asarray(y, dtype=int), np.asarray(predicted_positive, dtype=int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(roc_auc_score(y, proba)) if both else None,
        "pr_auc": float(average_precision_score(y, proba)) if both else None,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn), "positives": int(y.sum()),
    }


def label_map(labels: pd.DataFrame, id_column: str, label_column: str, protector: Protector, *,
              where: str = "labels") -> tuple[dict[str, str], int]:
    """{row id (clear and, for a hashed id column, its token): label} and the number of skipped rows.
    DataError for a missing column or one id with two different labels."""
    for name, what in ((id_column, "--id-column"), (label_column, "--label-column")):
        if name not in labels.columns:
            raise DataError(f"{where}: no column {name!r} ({what}); columns: {', '.join(map(str, labels.columns))}")
    usable = labels[[id_column, label_column]].dropna()
    ids = [canonical(v) for v in usable[id_column].tolist()]
    values = [canonical(v) for v in usable[label_column].tolist()]
    mapping: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for position, (row_id, value) in zip(usable.index, zip(ids, values)):
        if row_id in mapping and mapping[row_id] != value:
            raise DataError(f"{where}: id {row_id!r} has two different labels ({mapping[row_id]!r} in row "
                            f"{first_row[row_id] + 2}, {value!r} in row {position + 2}; rows counted as in a CSV with a header)")
        mapping[row_id] = value
        first_row.setdefault(row_id, position)
    if protector.mode == "hash" and id_column in protector.columns:
        mapping.update({protector.token(key): value for key, value in list(mapping.items())})
    return mapping, len(labels) - len(usable)


def record_outcomes(store: HistoryStore, labels: pd.DataFrame, *, id_column: str, label_column: str,
                    positive: object, protector: Protector, version: str | None = None,
                    where: str = "labels", run_id: str | None = None) -> OutcomesResult:
    """Attach ``labels`` to the logged predictions and record realised metrics per window."""
    mapping, skipped = label_map(labels, id_column, label_column, protector, where=where)
    hashed = protector.mode == "hash" and id_column in protector.columns
    clear_ids = {canonical(v) for v in labels[[id_column, label_column]].dropna()[id_column].tolist()}
    matched = store.attach_outcomes(mapping, version=version)
    found = store.predictions(labelled=True, version=version, with_inputs=False)
    found_ids = set(found["row_id"].dropna())
    unmatched = sum(1 for key in clear_ids if key not in found_ids and not (hashed and protector.token(key) in found_ids))
    result = OutcomesResult(labels=len(clear_ids), skipped=skipped, matched=matched, unmatched_ids=unmatched)
    touched = set(found.loc[found["row_id"].isin(set(mapping)), "model_version"])
    positive_text = canonical(positive)
    for model_version in sorted(touched):
        rows = found[found["model_version"] == model_version]
        windows = store.metrics(model_version)
        spans = {(s, e) for s, e in windows.loc[windows["estimated"] & windows["window_start"].notna(),
                                                ["window_start", "window_end"]].itertuples(index=False)}
        spans.add((rows["logged_at"].min(), rows["logged_at"].max() + pd.Timedelta(microseconds=1)))
        for start, end in sorted(spans):
            inside = rows[(rows["logged_at"] >= start) & (rows["logged_at"] < end)]
            if inside.empty:
                continue
            metrics = realised_metrics((inside["outcome"] == positive_text).to_numpy(),
                                       inside["probability"].to_numpy(dtype=float),
                                       (inside["prediction"] == positive_text).to_numpy())
            store.record_window_metrics(model_version, metrics, estimated=False, window_start=start, window_end=end,
                                        rows=len(inside), run_id=run_id)
            result.windows.append({"version": model_version, "window_start": start.isoformat(),
                                   "window_end": end.isoformat(), "rows": len(inside), "metrics": metrics})
    return result


def read_labels(path: Path) -> pd.DataFrame:
    """A labels file (CSV or Parquet) as read by tabpipe's file reader."""
    from tabpipe.sources import read_file

    return read_file(Path(path))

"""Integrity before training, run by the validation stage on the typed, schema-checked splits.

Repeated rows (``tabpipe.training.duplicates``) are counted: exact duplicates, identical feature rows
with opposite labels, feature rows on both sides of the split — and, by default, the copies of those
are moved to one side. Then each feature's single-column AUC on the training rows
(``tabpipe.training.leakage``) is measured; a feature reaching ``stop_at_auc`` and not on the
allow-list is a leak, which the validation stage turns into a failed run naming it. Every check is
switched by ``validation.integrity``; the counts go to ``validation_report.json`` under ``integrity``.

Design notes: docs/training.md#integrity-before-training
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabpipe.config import IntegritySection
from tabpipe.schema import Schema, positive_mask
from tabpipe.training import duplicates
from tabpipe.training.holdout import row_hashes
from tabpipe.training.leakage import single_column_aucs

log = logging.getLogger(__name__)
DISABLED = {"status": "disabled"}


@dataclass(frozen=True)
class IntegrityResult:
    """The splits after the checks (copies moved to one side), the report section, and the leaking features."""
    train: pd.DataFrame
    test: pd.DataFrame
    report: dict
    leaks: dict[str, float] = field(default_factory=dict)   # {feature: AUC} at or over stop_at_auc, not allowed


def labels(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The target as int 0/1 (1 = the schema's positive class)."""
    return positive_mask(frame[schema.target.name], schema.target.positive).astype(np.int64)


def check_integrity(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, section: IntegritySection,
                    seed: int) -> IntegrityResult:
    """Count repeated rows, keep a feature row's copies on one side (``across_split: keep_one_side``) and
    measure every feature's single-column AUC on the (final) training rows; ``seed`` draws the folds."""
    features = [c for c in schema.features if c in train.columns]
    report: dict = {"rows": {"train": len(train), "test": len(test)},   # as checked, before any row moved
                    "identity": "typed values of the schema's features in schema order; exact duplicates also share the label"}
    started = time.perf_counter()
    train, test = _repeats(train, test, features, schema, section, report)
    seconds = {"duplicates": round(time.perf_counter() - started, 3)}
    _log_repeats(report)
    leaks: dict[str, float] = {}
    if section.leakage.enabled:
        started = time.perf_counter()
        aucs = single_column_aucs(train, features, labels(train, schema), seed)
        over = {c: a for c, a in aucs.items() if a >= section.leakage.stop_at_auc}
        leaks = {c: a for c, a in over.items() if c not in section.leakage.allow}
        report["leakage"] = {"stop_at_auc": section.leakage.stop_at_auc, "stopped_by": sorted(leaks),
                             "allowed": sorted(set(over) - set(leaks)),
                             "auc": dict(sorted(aucs.items(), key=lambda item: -item[1]))}
        seconds["leakage"] = round(time.perf_counter() - started, 3)
    else:
        report["leakage"] = DISABLED
    report["seconds"] = seconds
    return IntegrityResult(train=train, test=test, report=report, leaks=leaks)


def _repeats(train: pd.DataFrame, test: pd.DataFrame, features: list[str], schema: Schema,
             section: IntegritySection, report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill the report's repeated-row sections; the splits, copies moved to one side when so configured."""
    if not (section.duplicate_rows or section.conflicting_labels or section.across_split != "off"):
        report.update(duplicate_rows=DISABLED, conflicting_labels=DISABLED, across_split=DISABLED)
        return train, test
    h_train, h_test = row_hashes(train, features), row_hashes(test, features)
    hashes = np.concatenate([h_train, h_test])
    y = np.concatenate([labels(train, schema), labels(test, schema)])
    report["duplicate_rows"] = {"rows": duplicates.exact_duplicates(hashes, y)} if section.duplicate_rows else DISABLED
    if section.conflicting_labels:
        rows, distinct = duplicates.conflicting_labels(hashes, y)
        report["conflicting_labels"] = {"rows": rows, "feature_rows": distinct}
    else:
        report["conflicting_labels"] = DISABLED
    if section.across_split == "off":
        report["across_split"] = DISABLED
        return train, test
    found = report["across_split"] = {"policy": section.across_split, **duplicates.across_split(h_train, h_test)}
    by_chance = _by_chance(train, test, features, hashes)
    found["by_chance"] = duplicates.across_split(h_train[by_chance[0]], h_test[by_chance[1]])
    if section.across_split == "keep_one_side":
        moved = {"moved_to_train": 0, "moved_to_test": 0}
        if found["feature_rows"] > found["by_chance"]["feature_rows"]:
            train, test, moved = _keep_one_side(train, test, h_train, h_test, by_chance)
        found.update(moved)
    return train, test


def _by_chance(train: pd.DataFrame, test: pd.DataFrame, features: list[str], hashes: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the train and test rows whose feature row chance alone would repeat (``duplicates.CHANCE``),
    judged on both splits together: such repeats are common profiles, not copies, and never move."""
    both = pd.concat([train[features], test[features]], ignore_index=True)
    expected = duplicates.chance_copies(both, features, hashes)
    likely = expected >= duplicates.CHANCE_RATE
    return likely[:len(train)], likely[len(train):]


def _keep_one_side(train: pd.DataFrame, test: pd.DataFrame, h_train: np.ndarray, h_test: np.ndarray,
                   by_chance: tuple[np.ndarray, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The splits with every straddling feature row's copies on one side (moved rows appended in their order);
    repeats chance explains stay where the split put them."""
    to_test, to_train = duplicates.one_side(h_train, h_test, *by_chance)
    moved = {"moved_to_train": int(to_train.sum()), "moved_to_test": int(to_test.sum())}
    return (pd.concat([train[~to_test], test[to_train]], ignore_index=True),
            pd.concat([test[~to_train], train[to_test]], ignore_index=True), moved)


def _log_repeats(report: dict) -> None:
    dup, conflict, across = report["duplicate_rows"], report["conflicting_labels"], report["across_split"]
    if dup.get("rows"):
        log.warning("%d rows repeat an earlier row exactly (features and label)", dup["rows"])
    if conflict.get("rows"):
        log.warning("%d rows share their features with a row of the opposite label (%d distinct feature rows)",
                    conflict["rows"], conflict["feature_rows"])
    if across.get("feature_rows"):
        chance = across["by_chance"]
        kept = (f"; moved {across['moved_to_train']} test rows to train and {across['moved_to_test']} train rows "
                "to test" if across["policy"] == "keep_one_side" else "")
        log.warning("%d distinct feature rows occur in both splits (%d train rows, %d test rows; of those, %d "
                    "feature rows are common enough to repeat by chance and stay where the split put them)%s",
                    across["feature_rows"], across["train_rows"], across["test_rows"], chance["feature_rows"], kept)


def leak_message(leaks: dict[str, float], section: IntegritySection) -> str:
    """The error that stops a run: every leaking feature with its AUC, and what to do about it."""
    named = ", ".join(f"{c!r} (AUC {a:.4f})" for c, a in sorted(leaks.items(), key=lambda item: -item[1]))
    return (f"target leakage: {'a feature alone ranks' if len(leaks) == 1 else 'features alone rank'} the target "
            f"almost perfectly on the training rows: {named}; validation.integrity.leakage.stop_at_auc is "
            f"{section.leakage.stop_at_auc}. Remove such a column from the features (role: ignore in the schema) "
            "if it is the target or was recorded after the outcome, or list it under "
            "validation.integrity.leakage.allow")

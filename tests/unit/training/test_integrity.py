"""Integrity before training (tabpipe.training.integrity): counts, copies kept on one side, leaks named."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tabpipe.config import IntegritySection
from tabpipe.schema import Schema
from tabpipe.training.holdout import row_hashes
from tabpipe.training.integrity import check_integrity, leak_message

SCHEMA = Schema.model_validate({"target": {"name": "label", "positive": "yes"}, "columns": {
    "a": {"type": "float"}, "b": {"type": "category"}, "c": {"type": "int"}, "leak": {"type": "category"}}})
FEATURES = ["a", "b", "c", "leak"]


def frame(n: int, seed: int, leak: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    return pd.DataFrame({
        "a": rng.normal(size=n) + 0.5 * y, "b": rng.choice(["x", "y", "z"], n).astype(object),
        "c": rng.integers(0, 100, n).astype(float),
        "leak": np.where(y, "closed", "open").astype(object) if leak else rng.choice(["p", "q"], n).astype(object),
        "label": np.where(y, "yes", "no").astype(object)})


def section(**changes) -> IntegritySection:
    return IntegritySection.model_validate(changes)


def test_defaults_are_on():
    s = IntegritySection()
    assert s.leakage.enabled and s.leakage.stop_at_auc == 0.98 and s.leakage.allow == []
    assert s.duplicate_rows and s.conflicting_labels and s.across_split == "keep_one_side"


def test_clean_data_passes_unchanged():
    train, test = frame(800, 0), frame(200, 1)
    result = check_integrity(train, test, SCHEMA, section(), seed=0)
    assert result.leaks == {}
    assert result.train is train and result.test is test   # no repeats across the split: the split is untouched
    r = result.report
    assert r["duplicate_rows"] == {"rows": 0} and r["conflicting_labels"] == {"rows": 0, "feature_rows": 0}
    assert r["across_split"] == {"policy": "keep_one_side", "train_rows": 0, "test_rows": 0, "feature_rows": 0,
                                 "by_chance": {"train_rows": 0, "test_rows": 0, "feature_rows": 0},
                                 "moved_to_train": 0, "moved_to_test": 0}
    assert set(r["leakage"]["auc"]) == set(FEATURES) and r["leakage"]["stopped_by"] == []
    assert set(r["seconds"]) == {"duplicates", "leakage"}
    json.dumps(r)   # goes into validation_report.json as it is


def test_a_leaked_column_is_named_with_its_auc():
    result = check_integrity(frame(800, 0, leak=True), frame(200, 1, leak=True), SCHEMA, section(), seed=0)
    assert result.leaks == {"leak": 1.0}
    assert result.report["leakage"]["stopped_by"] == ["leak"]
    assert list(result.report["leakage"]["auc"])[0] == "leak"   # sorted, highest first
    message = leak_message(result.leaks, section())
    assert "'leak' (AUC 1.0000)" in message and "stop_at_auc is 0.98" in message
    assert "validation.integrity.leakage.allow" in message


def test_allow_list_threshold_and_off_switch():
    train, test = frame(800, 0, leak=True), frame(200, 1, leak=True)
    allowed = check_integrity(train, test, SCHEMA, section(leakage={"allow": ["leak"]}), seed=0)
    assert allowed.leaks == {} and allowed.report["leakage"]["allowed"] == ["leak"]
    off = check_integrity(train, test, SCHEMA, section(leakage={"enabled": False}), seed=0)
    assert off.leaks == {} and off.report["leakage"] == {"status": "disabled"}
    strict = check_integrity(frame(800, 0), frame(200, 1), SCHEMA, section(leakage={"stop_at_auc": 0.51}), seed=0)
    assert "a" in strict.leaks   # the honest signal, over a (silly) threshold


def test_leakage_is_measured_on_the_training_rows_only():
    train, test = frame(800, 0), frame(200, 1, leak=True)   # the test split's column gives the target away
    assert check_integrity(train, test, SCHEMA, section(), seed=0).leaks == {}


def test_repeats_counted_and_copies_kept_on_one_side():
    train, test = frame(800, 0), frame(200, 1)
    train = pd.concat([train, train.iloc[:5]], ignore_index=True)                 # 5 exact duplicates in train
    conflict = train.iloc[[10]].assign(label="no" if train.at[10, "label"] == "yes" else "yes")
    train = pd.concat([train, conflict], ignore_index=True)                      # 1 feature row with both labels
    test = pd.concat([test, train.iloc[20:23], train.iloc[[30, 30]]], ignore_index=True)   # across the split
    result = check_integrity(train, test, SCHEMA, section(), seed=0)
    r = result.report
    assert r["duplicate_rows"] == {"rows": 5 + 3 + 2}
    assert r["conflicting_labels"] == {"rows": 2, "feature_rows": 1}   # row 10 and its opposite-label copy
    across = r["across_split"]
    assert (across["train_rows"], across["test_rows"], across["feature_rows"]) == (4, 5, 4)
    # rows 20-22: one copy each side -> train (tie); row 30: two copies in test, one in train -> test
    assert (across["moved_to_train"], across["moved_to_test"]) == (3, 1)
    assert len(result.train) + len(result.test) == len(train) + len(test)
    h_train, h_test = row_hashes(result.train, FEATURES), row_hashes(result.test, FEATURES)
    assert not np.isin(h_train, h_test).any()
    again = check_integrity(train, test, SCHEMA, section(), seed=0)
    pd.testing.assert_frame_equal(again.train, result.train)   # deterministic
    pd.testing.assert_frame_equal(again.test, result.test)


def coarse(n: int, seed: int) -> pd.DataFrame:
    """A survey's few coarse columns: the same feature row is shared by many different people."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    return pd.DataFrame({"a": rng.integers(18, 25, n).astype(float), "b": rng.choice(["x", "y", "z"], n).astype(object),
                         "c": rng.integers(0, 3, n).astype(float), "leak": rng.choice(["p", "q"], n).astype(object),
                         "label": np.where(y, "yes", "no").astype(object)})


def test_common_profiles_are_not_copies_and_stay_where_the_split_put_them():
    # 7 x 3 x 3 x 2 = 126 possible feature rows for 2,500 rows: nearly every row repeats, by chance alone
    train, test = coarse(2000, 0), coarse(500, 1)
    result = check_integrity(train, test, SCHEMA, section(), seed=0)
    across = result.report["across_split"]
    assert across["test_rows"] > 450 and across["by_chance"] == {
        k: across[k] for k in ("train_rows", "test_rows", "feature_rows")}
    assert (across["moved_to_train"], across["moved_to_test"]) == (0, 0)
    assert result.train is train and result.test is test    # the seeded split, untouched: a test split to measure on
    # a real copy among them (a continuous value no other row has) still moves
    train2 = train.assign(a=np.arange(len(train)) + 0.5)
    test2 = pd.concat([test.assign(a=np.arange(len(test)) + 10_000.5), train2.iloc[[7]]], ignore_index=True)
    moved = check_integrity(train2, test2, SCHEMA, section(), seed=0).report["across_split"]
    assert (moved["feature_rows"], moved["by_chance"]["feature_rows"], moved["moved_to_train"]) == (1, 0, 1)


def test_count_only_and_switches_off():
    train, test = frame(300, 0), frame(100, 1)
    test = pd.concat([test, train.iloc[:4]], ignore_index=True)
    counted = check_integrity(train, test, SCHEMA, section(across_split="count"), seed=0)
    assert counted.report["across_split"] == {"policy": "count", "train_rows": 4, "test_rows": 4, "feature_rows": 4,
                                              "by_chance": {"train_rows": 0, "test_rows": 0, "feature_rows": 0}}
    assert counted.test is test   # counted, not moved
    off = check_integrity(train, test, SCHEMA, section(duplicate_rows=False, conflicting_labels=False,
                                                      across_split="off", leakage={"enabled": False}), seed=0)
    assert off.report["duplicate_rows"] == off.report["conflicting_labels"] == off.report["across_split"] == \
        off.report["leakage"] == {"status": "disabled"}
    assert off.train is train and off.test is test


@pytest.mark.parametrize("bad", [{"leakage": {"stop_at_auc": 0.5}}, {"leakage": {"stop_at_auc": 1.2}},
                                 {"across_split": "drop"}, {"duplicates": True}])
def test_section_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        IntegritySection.model_validate(bad)

"""The data contract: coerce_frame rules (with row positions), target checks, infer_schema, positive_mask."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

import tabpipe  # noqa: F401
from tabpipe.schema import (
    Schema, check_value, coerce_frame, infer_schema, positive_mask, problems_report, summarize, target_problems,
    warning_counts,
)


def make_schema(columns: dict, positive=1, target="y") -> Schema:
    return Schema.model_validate({"target": {"name": target, "positive": positive}, "columns": columns})


def by_rule(problems, column, rule):
    found = [p for p in problems if p.column == column and p.rule == rule]
    assert len(found) == 1, f"expected one {rule!r} problem on {column!r}, got {problems}"
    return found[0]


def only(problems, column):
    return [p for p in problems if p.column == column]


# --------------------------------------------------------------------------- coerce_frame: one rule each

def test_clean_frame_has_no_problems_and_is_typed():
    schema = make_schema({
        "f": {"type": "float", "min": 0, "max": 10},
        "i": {"type": "int"},
        "c": {"type": "category", "categories": ["a", "b"]},
        "b": {"type": "bool"},
        "d": {"type": "datetime"},
        "key": {"type": "string", "role": "id"},
    })
    df = pd.DataFrame({
        "key": ["k1", "k2", "k3"],
        "extra": [1, 2, 3],
        "f": ["1.5", 2, None], "i": [1, "2", 3.0], "c": ["a", "b", None],
        "b": ["yes", "False", 1], "d": ["2024-01-01", "2024-01-02 10:30", None], "y": [1, 0, 1],
    })
    typed, problems = coerce_frame(df, schema, with_target=True)
    assert problems == []
    assert list(typed.columns) == ["f", "i", "c", "b", "d", "y"]  # features in schema order, then target
    assert typed["f"].dtype == np.float64 and typed["i"].dtype == np.float64 and typed["b"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(typed["d"])
    assert typed["f"].tolist()[:2] == [1.5, 2.0] and np.isnan(typed["f"].iloc[2])
    assert typed["i"].tolist() == [1.0, 2.0, 3.0]
    assert typed["b"].tolist() == [1.0, 0.0, 1.0]
    assert typed["c"].tolist()[:2] == ["a", "b"] and pd.isna(typed["c"].iloc[2])
    assert typed["d"].iloc[1] == pd.Timestamp("2024-01-02 10:30")
    assert typed["y"].tolist() == [1, 0, 1]
    without, _ = coerce_frame(df, schema, with_target=False)
    assert "y" not in without.columns


def test_wrong_type_rows_and_value_becomes_missing():
    schema = make_schema({"x": {"type": "float"}})
    df = pd.DataFrame({"x": [1.0, "abc", 2, "1,5", None], "y": [0, 1, 0, 1, 0]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "x", "type")
    assert p.rows == (1, 3)
    assert "not a number" in p.message
    assert typed["x"].isna().tolist() == [False, True, False, True, True]
    assert len(problems) == 1  # the None is allowed (nullable by default)


def test_out_of_range_is_an_expectation_by_default():
    schema = make_schema({"x": {"type": "float", "min": 0, "max": 100}})
    df = pd.DataFrame({"x": [0, -0.1, 50, 100, 100.5, -7, None], "y": [0, 1] * 3 + [0]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    low, high = by_rule([p for p in problems if "below" in p.message], "x", "range"), \
        by_rule([p for p in problems if "above" in p.message], "x", "range")
    assert low.rows == (1, 5) and not low.hard
    assert high.rows == (4,) and not high.hard
    assert typed["x"].tolist()[:6] == [0, -0.1, 50, 100, 100.5, -7]          # kept as they are
    assert np.isnan(typed["x"].iloc[6])


def test_hard_range_refuses_and_blanks_the_value():
    schema = make_schema({"x": {"type": "float", "min": 0, "max": 100, "hard": ["range"]}})
    df = pd.DataFrame({"x": [0, -0.1, 50, 100, 100.5, -7, None], "y": [0, 1] * 3 + [0]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    assert {(p.rule, p.rows, p.hard) for p in problems} == {("range", (1, 5), True), ("range", (4,), True)}
    assert typed["x"].isna().tolist() == [False, True, False, False, True, True, True]  # bounds inclusive


def test_unknown_category_warns_unless_hard():
    cats = ["3G", "4G", "5G"]
    strict = make_schema({"t": {"type": "category", "categories": cats, "allow_unknown": False}})
    hard = make_schema({"t": {"type": "category", "categories": cats, "hard": ["category"]}})
    loose = make_schema({"t": {"type": "category", "categories": cats}})
    df = pd.DataFrame({"t": ["4G", "6G", None, "5G", "wifi"], "y": [0, 1, 0, 1, 0]})
    for schema in (strict, hard):
        typed, problems = coerce_frame(df, schema, with_target=True)
        p = by_rule(problems, "t", "category")
        assert p.rows == (1, 4) and p.hard and "allowed categories [3G, 4G, 5G]" in p.message
        assert pd.isna(typed["t"].iloc[1]) and typed["t"].iloc[3] == "5G"
    typed, problems = coerce_frame(df, loose, with_target=True)
    p = by_rule(problems, "t", "category")
    assert p.rows == (1, 4) and not p.hard and "listed categories" in p.message
    assert typed["t"].iloc[1] == "6G" and typed["t"].iloc[4] == "wifi"     # the encoder's unknown handling decides


def test_long_category_lists_are_shortened_in_messages():
    schema = make_schema({"t": {"type": "category", "categories": [f"c{i}" for i in range(40)]}})
    _, problems = coerce_frame(pd.DataFrame({"t": ["zz"], "y": [1]}), schema, with_target=False)
    assert problems[0].message.endswith("c9, ... (40 in all)]")


def test_numeric_categories_compare_as_text():
    schema = make_schema({"n": {"type": "category", "categories": ["1", "2"], "allow_unknown": False}})
    df = pd.DataFrame({"n": [1.0, 2.0, np.nan, 3.0], "y": [0, 1, 0, 1]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    assert by_rule(problems, "n", "category").rows == (3,)
    assert typed["n"].iloc[0] == "1"


def test_null_in_non_nullable_column_warns_unless_hard():
    schema = make_schema({"x": {"type": "float", "nullable": False}, "c": {"type": "category", "nullable": False},
                          "h": {"type": "int", "nullable": False, "hard": ["null"]}})
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, None], "c": ["a", None, "b", " "], "h": [1, 2, None, 4],
                       "y": [0, 1, 0, 1]})
    _, problems = coerce_frame(df, schema, with_target=True)
    assert by_rule(problems, "x", "null").rows == (1, 3) and not by_rule(problems, "x", "null").hard
    assert by_rule(problems, "c", "null").rows == (1, 3)              # a blank string is missing too
    assert by_rule(problems, "h", "null").rows == (2,) and by_rule(problems, "h", "null").hard


def test_infinite_values():
    schema = make_schema({"x": {"type": "float"}})
    df = pd.DataFrame({"x": [1.0, np.inf, -np.inf, "inf", 2.0], "y": [0, 1, 0, 1, 0]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "x", "type")
    assert p.rows == (1, 2, 3)
    assert "infinite" in p.message
    assert typed["x"].isna().tolist() == [False, True, True, True, False]
    assert not np.isinf(typed["x"].to_numpy()).any()


def test_non_integer_in_int_column():
    schema = make_schema({"n": {"type": "int", "min": 0}})
    df = pd.DataFrame({"n": [1, 2.5, "3", "4.0", "7.25", None], "y": [0, 1, 0, 1, 0, 1]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "n", "type")
    assert p.rows == (1, 4)
    assert "whole number" in p.message
    assert typed["n"].tolist()[:4:2] == [1.0, 3.0] and typed["n"].iloc[3] == 4.0


def test_bad_boolean_and_bad_datetime():
    schema = make_schema({"b": {"type": "bool"}, "d": {"type": "datetime"}})
    df = pd.DataFrame({"b": ["yes", "maybe", "N", 2], "d": ["2024-03-01", "not a date", "2024-13-45", None],
                       "y": [0, 1, 0, 1]})
    _, problems = coerce_frame(df, schema, with_target=True)
    assert by_rule(problems, "b", "type").rows == (1, 3)
    assert by_rule(problems, "d", "type").rows == (1, 2)


def test_missing_column_feature_vs_id():
    schema = make_schema({"x": {"type": "float"}, "z": {"type": "category"}, "key": {"type": "string", "role": "id"}})
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    typed, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "z", "missing_column")
    assert p.rows == ()
    assert only(problems, "key") == []            # an id column may be absent
    assert "z" in typed.columns and typed["z"].isna().all()


def test_multiple_rules_on_one_column_are_all_reported():
    schema = make_schema({"x": {"type": "float", "min": 0, "nullable": False}})
    df = pd.DataFrame({"x": ["a", -1, None, 5], "y": [0, 1, 0, 1]})
    _, problems = coerce_frame(df, schema, with_target=True)
    assert {p.rule: (p.rows, p.hard) for p in problems} == {"type": ((0,), True), "range": ((1,), False),
                                                           "null": ((2,), False)}


def test_id_column_problems_are_only_warnings():
    schema = make_schema({"x": {"type": "float"}, "key": {"type": "int", "role": "id"}})
    typed, problems = coerce_frame(pd.DataFrame({"x": [1.0, 2.0], "key": [7, "K-8"]}), schema, with_target=False)
    assert [(p.column, p.rule, p.rows, p.hard) for p in problems] == [("key", "type", (1,), False)]
    assert list(typed.columns) == ["x"]


@pytest.mark.parametrize("value", [1e300, -1e300, 1e400, float("-inf"), 2**70, "1e300", True, 3.0, 2.5])
def test_any_value_in_a_category_column_is_read_never_raises(value):
    schema = make_schema({"c": {"type": "category", "categories": ["a"]}, "x": {"type": "float"}})
    for column in ([value, "a"], [value], [value, None]):
        typed, problems = coerce_frame(pd.DataFrame({"c": column, "x": 1.0}), schema, with_target=False)
        assert typed["c"].iloc[0] == check_value(value, schema.columns["c"], column="c")[0]
        assert [p.rule for p in problems] == ["category"]


# --------------------------------------------------------------------------- target

def test_target_with_three_classes():
    schema = make_schema({"x": {"type": "float"}})
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 2, 1]})
    _, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "y", "classes")
    assert "exactly two classes" in p.message and "found 3" in p.message


def test_target_with_one_class():
    schema = make_schema({"x": {"type": "float"}})
    _, problems = coerce_frame(pd.DataFrame({"x": [1.0, 2.0], "y": [1, 1]}), schema, with_target=True)
    assert "found 1" in by_rule(problems, "y", "classes").message


def test_missing_target_values_have_rows():
    schema = make_schema({"x": {"type": "float"}})
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1, None, 0, np.nan, 1]})
    _, problems = coerce_frame(df, schema, with_target=True)
    assert by_rule(problems, "y", "null").rows == (1, 3)
    assert only(problems, "y") == [by_rule(problems, "y", "null")]  # still two classes


def test_positive_class_absent():
    schema = make_schema({"x": {"type": "float"}}, positive="yes")
    df = pd.DataFrame({"x": [1.0, 2.0], "y": ["no", "maybe"]})
    _, problems = coerce_frame(df, schema, with_target=True)
    p = by_rule(problems, "y", "classes")
    assert "positive class 'yes' not found" in p.message


def test_target_column_missing():
    schema = make_schema({"x": {"type": "float"}})
    _, problems = coerce_frame(pd.DataFrame({"x": [1.0]}), schema, with_target=True)
    assert by_rule(problems, "y", "missing_column")
    _, problems = coerce_frame(pd.DataFrame({"x": [1.0]}), schema, with_target=False)
    assert problems == []
    assert target_problems(pd.DataFrame({"y": ["a", "b"]}), make_schema({"x": {"type": "float"}}, positive="B")) == []


# --------------------------------------------------------------------------- reports

def test_problems_report_and_summary():
    schema = make_schema({"x": {"type": "float", "min": 0}, "c": {"type": "category", "nullable": False}})
    df = pd.DataFrame({"x": [-1, -2, 3, -4, -5, -6, -7, 8], "c": ["a", None] + ["a"] * 6, "y": [0, 1] * 4})
    _, problems = coerce_frame(df, schema, with_target=True)
    report = problems_report(problems, len(df))
    assert report["rows_checked"] == 8
    assert report["rows_with_warnings"] == 6 and report["rows_with_errors"] == 0  # rows 0,1,3,4,5,6
    assert report["errors"] == {}
    (rng,) = report["warnings"]["x"]
    assert rng["rule"] == "range" and rng["count"] == 6 and rng["example_rows"] == [0, 1, 3, 4, 5]
    assert report["warnings"]["c"][0]["example_rows"] == [1]
    assert warning_counts(problems) == {"x": {"range": 6}, "c": {"null": 1}}
    hard = make_schema({"x": {"type": "float", "min": 0, "hard": ["range"]}, "c": {"type": "category"}})
    _, hard_problems = coerce_frame(df, hard, with_target=True)
    report = problems_report(hard_problems, len(df))
    assert report["rows_with_errors"] == 6 and report["errors"]["x"][0]["count"] == 6 and report["warnings"] == {}
    text = summarize(problems)
    assert "x: 6 rows is below the minimum 0 (rows 0, 1, 3, 4, 5, ...)" in text
    assert "c: 1 row is missing (column is not nullable) (rows 1)" in text


# --------------------------------------------------------------------------- schema model

@pytest.mark.parametrize("spec, fragment", [
    ({"type": "category", "min": 0}, "min/max only apply"),
    ({"type": "bool", "max": 1}, "min/max only apply to int/float"),
    ({"type": "float", "hard": ["range"]}, "hard: \\[range\\] needs min or max"),
    ({"type": "category", "hard": ["category"]}, "needs a list of categories"),
    ({"type": "float", "hard": ["null"]}, "needs nullable: false"),
    ({"type": "float", "min": 0, "hard": ["type"]}, "hard"),
    ({"type": "float", "min": 5, "max": 1}, "greater than max"),
    ({"type": "float", "categories": ["a"]}, "categories only apply"),
    ({"type": "category", "allow_unknown": False}, "needs a list of categories"),
    ({"type": "string"}, "cannot be features"),
    ({"type": "decimal"}, "type"),
    ({"type": "float", "colour": "red"}, "Extra inputs"),
])
def test_column_spec_rejects_inconsistent_rules(spec, fragment):
    with pytest.raises(ValidationError, match=fragment):
        make_schema({"x": spec, "ok": {"type": "float"}})


def test_schema_needs_a_feature_and_target_not_a_column():
    with pytest.raises(ValidationError, match="no column has role 'feature'"):
        make_schema({"k": {"type": "string", "role": "id"}})
    with pytest.raises(ValidationError, match="must not also be listed"):
        make_schema({"y": {"type": "int"}, "x": {"type": "float"}})


# --------------------------------------------------------------------------- infer_schema

@pytest.fixture(scope="module")
def mixed_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame({
        "row_id": np.arange(1000, 1000 + n),                                  # unique ints -> id
        "customer": [f"C{i:05d}" for i in rng.permutation(n)],               # unique strings -> id
        "count": rng.integers(0, 50, n),                                      # ints from 0
        "delta": rng.integers(-20, 20, n),
        "ratio": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 2, n)),  # floats with NaN
        "colour": rng.choice(["red", "green", "blue"], n),
        "plan": np.where(rng.random(n) < 0.05, None, rng.choice(["basic", "pro"], n)),
        "signup": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),  # dates as strings
        "active": rng.random(n) < 0.5,
        "is_vip": rng.integers(0, 2, n),                                       # 0/1 ints stay int
        "opted_in": np.where(rng.random(n) < 0.5, "True", "false"),            # true/false text -> bool
        "flag_obj": pd.Series(np.where(rng.random(n) < 0.5, True, False), dtype=object).where(rng.random(n) < 0.9),
        "churn": np.where(rng.random(n) < 0.2, "yes", "no"),
    })


def test_infer_schema_types_and_roles(mixed_frame):
    schema = infer_schema(mixed_frame, "churn")
    cols = schema.columns
    assert schema.target.name == "churn" and schema.target.positive == "yes"   # minority class
    assert "churn" not in cols
    assert (cols["row_id"].type, cols["row_id"].role) == ("int", "id")
    assert (cols["customer"].type, cols["customer"].role) == ("string", "id")
    assert (cols["count"].type, cols["count"].role) == ("int", "feature")
    assert cols["count"].min == 0 and cols["count"].max >= mixed_frame["count"].max()
    assert cols["delta"].type == "int" and cols["delta"].min < mixed_frame["delta"].min()
    assert cols["ratio"].type == "float" and cols["ratio"].nullable
    assert cols["ratio"].min < mixed_frame["ratio"].min() and cols["ratio"].max > mixed_frame["ratio"].max()
    assert not cols["count"].nullable
    assert cols["colour"].type == "category" and cols["colour"].categories == ["blue", "green", "red"]
    assert cols["colour"].allow_unknown
    assert cols["plan"].type == "category" and cols["plan"].nullable and cols["plan"].categories == ["basic", "pro"]
    assert cols["signup"].type == "datetime"
    assert cols["active"].type == "bool" and cols["opted_in"].type == "bool" and cols["flag_obj"].type == "bool"
    assert cols["flag_obj"].nullable
    assert cols["is_vip"].type == "int" and cols["is_vip"].min == 0 and cols["is_vip"].max >= 1
    assert set(schema.features) == {"count", "delta", "ratio", "colour", "plan", "signup", "active", "is_vip",
                                    "opted_in", "flag_obj"}


def test_inferred_zero_one_int_column_takes_a_two():
    df = pd.DataFrame({"code": [0, 1] * 20, "y": [0, 1, 1, 0] * 10})
    schema = infer_schema(df, "y")
    assert schema.columns["code"].type == "int"
    typed, problems = coerce_frame(pd.DataFrame({"code": [2, 0]}), schema, with_target=False)
    assert not [p for p in problems if p.hard] and typed["code"].tolist() == [2.0, 0.0]


def test_inferred_schema_accepts_its_own_data_and_round_trips_yaml(mixed_frame, tmp_path):
    schema = infer_schema(mixed_frame, "churn")
    _, problems = coerce_frame(mixed_frame, schema, with_target=True)
    assert problems == []
    doc = yaml.safe_dump(schema.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    again = Schema.model_validate(yaml.safe_load(doc))
    assert again == schema


def test_inferred_range_never_negative_for_non_negative_columns():
    df = pd.DataFrame({"amount": np.linspace(0.5, 10.0, 50), "temp": np.linspace(-5.0, 10.0, 50), "y": [0, 1] * 25})
    cols = infer_schema(df, "y").columns
    assert cols["amount"].min == 0.0 and cols["amount"].max > 10.0      # padding would go below 0: clamped
    assert cols["temp"].min < -5.0 and cols["temp"].max > 10.0


def test_inferred_bounds_contain_narrow_large_values():
    df = pd.DataFrame({"reading": [1000000.1, 1000000.2, 1000000.3] * 20,
                       "epoch_ms": np.linspace(1.7e12, 1.7e12 + 60_000, 60).round(), "y": [0, 1] * 30})
    schema = infer_schema(df, "y")
    for name in ("reading", "epoch_ms"):
        spec = schema.columns[name]
        assert spec.min <= df[name].min() and spec.max >= df[name].max(), (name, spec.min, spec.max)
    assert coerce_frame(df, schema, with_target=True)[1] == []


def test_infer_schema_numeric_target_positive_is_minority():
    df = pd.DataFrame({"x": np.arange(10.0), "y": [0] * 7 + [1] * 3})
    schema = infer_schema(df, "y")
    assert schema.target.positive == 1 and isinstance(schema.target.positive, int)
    with pytest.raises(KeyError):
        infer_schema(df, "nope")


# --------------------------------------------------------------------------- positive_mask

@pytest.mark.parametrize("values, positive, expected", [
    ([1, 0, 1], 1, [True, False, True]),
    ([1, 0, 1], 1.0, [True, False, True]),
    ([1, 0, 1], "1", [True, False, True]),
    ([1.0, 0.0], 1, [True, False]),
    (["1", "0"], 1, [True, False]),
    (["1.0", "0"], 1, [True, False]),
    (["1", "0"], "1.0", [True, False]),
    ([0, 1], 0, [True, False]),
    (["Yes", "No", "yes"], "yes", [True, False, True]),
    (["yes", "no"], "Yes", [True, False]),
    ([" yes", "no "], "yes", [True, False]),
    ([True, False], True, [True, False]),
    (["True", "False"], True, [True, False]),
    ([1, 0], "yes", [False, False]),
    (["a", "b"], 1, [False, False]),
])
def test_positive_mask_numeric_aware(values, positive, expected):
    assert positive_mask(pd.Series(values), positive).tolist() == expected


def test_positive_mask_bool_positive_matches_truthy_labels():
    assert yaml.safe_load("positive: yes")["positive"] is True
    assert positive_mask(pd.Series(["yes", "no"]), True).tolist() == [True, False]
    assert positive_mask(pd.Series([1, 0]), True).tolist() == [True, False]


# --------------------------------------------------------------------------- one rule set: the record path and the frame path agree

PARITY_SCHEMA = make_schema({
    "f": {"type": "float", "min": -10, "max": 10},
    "i": {"type": "int", "min": 0, "nullable": False},
    "h": {"type": "float", "max": 5, "hard": ["range"]},
    "b": {"type": "bool"},
    "c": {"type": "category", "categories": ["a", "b", "1"]},
    "s": {"type": "category", "categories": ["x", "y"], "allow_unknown": False, "nullable": False, "hard": ["null"]},
    "d": {"type": "datetime"},
})
PARITY_VALUES = [None, "", " ", True, False, 0, 1, 2, -1, 3.0, 2.5, 11, -11.5, 1e300, -1e300, float("inf"), 2**70,
                 "1", "0", "1.0", "2.5", " 7 ", "1e3", "1_000", "0x10", "١٢", "nan", "NaN", "inf", "-Infinity",
                 "true", "FALSE", "yes", "n", "maybe", "a", "b", "x", "z", "2024-03-01T10:00", "2024-03-01T05:00Z",
                 "2024-02-30", "2024", "not a date", "NaT", [1], {"k": 1}, (), "None"]


def _frame_view(record: dict) -> tuple[dict, set]:
    typed, problems = coerce_frame(pd.DataFrame([record]), PARITY_SCHEMA, with_target=False)
    values = {name: typed[name].iloc[0] for name in PARITY_SCHEMA.features}
    return values, set(problems)


def _same_value(a, b) -> bool:
    if a is None or (not isinstance(a, str) and pd.isna(a)):
        return b is None or (not isinstance(b, str) and pd.isna(b))
    return a == b


@pytest.mark.parametrize("value", PARITY_VALUES, ids=repr)
@pytest.mark.parametrize("field", PARITY_SCHEMA.features)
def test_parity_table_one_value(field, value):
    """The same problems (field, rule, hard, message, row) and the same typed value, whichever path checks it."""
    from tabpipe.schema import RecordChecker

    base = {"f": 1.0, "i": 3, "h": 1.0, "b": True, "c": "a", "s": "x", "d": "2024-03-01T10:00"}
    record = {**base, field: value}
    values, problems = RecordChecker(PARITY_SCHEMA)(record)
    frame_values, frame_problems = _frame_view(record)
    assert set(problems) == frame_problems
    for name, got in zip(PARITY_SCHEMA.features, values):
        assert _same_value(frame_values[name], got), (name, frame_values[name], got)


@pytest.mark.parametrize("field", PARITY_SCHEMA.features)
def test_parity_omitted_key_is_absent_in_both_paths(field):
    from tabpipe.schema import ABSENT, Problem, RecordChecker

    record = {k: v for k, v in {"f": 1.0, "i": 3, "h": 1.0, "b": True, "c": "a", "s": "x", "d": "2024-03-01"}.items()
              if k != field}
    _, problems = RecordChecker(PARITY_SCHEMA)(record)
    assert problems == [Problem(field, "missing_column", ABSENT, rows=(0,), hard=True)]
    assert _frame_view(record)[1] == {Problem(field, "missing_column", ABSENT, rows=(), hard=True)}   # the whole column


@pytest.mark.parametrize("field", PARITY_SCHEMA.features)
def test_parity_many_rows_mixed_types(field):
    """A column mixing every kind of value (the batch path reads it value by value or per distinct
    text): each row gets exactly what the record path says for that value."""
    from tabpipe.schema import check_value

    spec = PARITY_SCHEMA.columns[field]
    texts = [v for v in PARITY_VALUES if isinstance(v, str)]
    for column in (PARITY_VALUES, texts * 3):
        typed, problems = coerce_frame(pd.DataFrame({field: pd.Series(column, dtype=object)}),
                                       make_schema({field: spec.model_dump()}), with_target=False)
        for row, value in enumerate(column):
            expected_value, expected = check_value(value, spec, column=field, row=row)
            got = {(p.column, p.rule, p.hard, p.message) for p in problems if row in p.rows}
            assert got == {(p.column, p.rule, p.hard, p.message) for p in expected}, (row, value)
            assert all(p.rows == (row,) for p in expected)
            assert _same_value(typed[field].iloc[row], expected_value), (row, value, typed[field].iloc[row])


def test_schema_pickled_before_the_hard_key_still_loads():
    """Models in a registry were pickled with the ColumnSpec of their time: a field added since gets its default."""
    import pickle

    spec = make_schema({"x": {"type": "float", "min": 0}}).columns["x"]
    state = spec.__getstate__()
    del state["__dict__"]["hard"]                      # what an older pickle holds

    class Old:
        def __reduce__(self):
            return (object.__new__, (type(spec),), state)

    loaded = pickle.loads(pickle.dumps(Old()))
    assert loaded.hard == [] and loaded.is_hard("range") is False and loaded.is_hard("type") is True
    assert loaded.model_dump()["hard"] == []


@pytest.mark.parametrize("field", PARITY_SCHEMA.features)
def test_categorical_of_text_checks_as_the_same_text(field):
    """A Categorical of text (a text column read from Parquet as a dictionary) is checked once per category:
    the typed frame and every problem (rule, message, rows, order) are exactly those of the same values as text."""
    rng = np.random.default_rng(0)
    texts = [v for v in PARITY_VALUES if isinstance(v, str)] + [None]
    values = [texts[i] for i in rng.integers(0, len(texts), 500)]
    base = {"f": 1.0, "i": 3, "h": 1.0, "b": True, "c": "a", "s": "x", "d": "2024-03-01T10:00"}
    frame = pd.DataFrame({name: [v] * len(values) for name, v in base.items()})
    as_text = frame.assign(**{field: pd.Series(values, dtype="str")})
    as_category = frame.assign(**{field: pd.Series(values, dtype="category")})
    typed, problems = coerce_frame(as_text, PARITY_SCHEMA, with_target=False)
    typed_c, problems_c = coerce_frame(as_category, PARITY_SCHEMA, with_target=False)
    pd.testing.assert_frame_equal(typed_c, typed)
    assert problems_c == problems
    kept, problems_k = coerce_frame(as_category, PARITY_SCHEMA, with_target=False, categorical=True)
    assert problems_k == problems
    if PARITY_SCHEMA.columns[field].type in ("category", "string"):
        assert isinstance(kept[field].dtype, pd.CategoricalDtype)      # the same values, kept as a Categorical
        kept[field] = kept[field].astype(object)
    pd.testing.assert_frame_equal(kept, typed)
    assert problems                                   # the values break rules: the comparison says something
    only_missing = pd.Series([None, None], dtype="str").astype("category")   # no category at all
    empty = coerce_frame(frame.iloc[:2].assign(**{field: only_missing}), PARITY_SCHEMA, with_target=False)
    assert empty[1] == coerce_frame(frame.iloc[:2].assign(**{field: pd.Series([None, None], dtype="str")}),
                                    PARITY_SCHEMA, with_target=False)[1]

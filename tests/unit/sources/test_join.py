"""Joined sources (tabpipe.sources.join): plain, as-of and aggregated joins, the point-in-time rule, name
clashes and the config's errors. Tables are given in memory: ``read`` maps a file source's path to a frame."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from tabpipe.errors import DataError
from tabpipe.sources import JoinSource, PointInTimeError, SourceConfig
from tabpipe.sources.base import parse_duration
from tabpipe.sources.join import check_point_in_time, join_sources

T = pd.Timestamp


def applications() -> pd.DataFrame:
    return pd.DataFrame({
        "app_id": [1, 2, 3, 4],
        "applicant": ["a", "b", "a", "c"],
        "applied_at": pd.to_datetime(["2024-03-01", "2024-03-10", "2024-06-01", "2024-03-05"]),
        "income": [10.0, 20.0, 30.0, 40.0],
    })


def bureau() -> pd.DataFrame:
    """Reports per applicant; the ones stamped after an application are planted future records."""
    return pd.DataFrame({
        "applicant": ["a", "a", "a", "b", "b", "c"],
        "reported_at": pd.to_datetime(["2024-01-01", "2024-02-20", "2024-03-01",   # a: the last is AT label time
                                       "2023-01-01", "2024-03-11",                  # b: too old / one day late
                                       "2024-03-05 00:00:01"], format="ISO8601"),   # c: one second late
        "score": [600, 650, 999, 500, 999, 999],
        "income": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],                                    # clashes with the base
    })


def payments() -> pd.DataFrame:
    return pd.DataFrame({
        "applicant": ["a", "a", "a", "a", "b", "b"],
        "paid_at": pd.to_datetime(["2024-01-15", "2024-02-15", "2024-03-01", "2024-05-15", "2024-03-09", "2024-04-01"]),
        "amount": [100.0, 50.0, 7000.0, 25.0, 10.0, 9000.0],
        "days_late": [0, 3, 99, np.nan, 1, 99],
    })


TABLES = {"apps.csv": applications, "bureau.csv": bureau, "payments.csv": payments}


def source(joins: list[dict], **extra) -> JoinSource:
    return TypeAdapter(SourceConfig).validate_python(
        {"type": "join", "base": {"type": "file", "path": "apps.csv"}, "label_time": "applied_at", "joins": joins, **extra})


def run(cfg: JoinSource, tables: dict | None = None):
    tables = {**TABLES, **(tables or {})}
    return join_sources(cfg, lambda leaf: tables[str(leaf.path)]())


def bureau_join(**as_of) -> dict:
    return {"name": "bureau", "source": {"type": "file", "path": "bureau.csv"}, "on": ["applicant"],
            "as_of": {"column": "reported_at", **as_of}}


def test_as_of_takes_the_latest_record_strictly_before_the_label_time():
    table = run(source([bureau_join()])).frame
    # row 0 (a, 03-01): the 03-01 report is at the label time -> excluded; 02-20 is the latest before
    # row 2 (a, 06-01): the 03-01 report is now in the past; row 3 (c): its only report is 1 s late
    assert table["score"].tolist()[:3] == [650, 500, 999]
    assert np.isnan(table["score"].iloc[3])
    assert table["app_id"].tolist() == [1, 2, 3, 4]                 # the base's rows, in the base's order
    assert (table["reported_at"].dropna() < table.loc[table["reported_at"].notna(), "applied_at"]).all()


def test_exact_matches_opt_in_counts_a_record_stamped_at_the_label_time():
    table = run(source([bureau_join(exact_matches=True)])).frame
    assert table["score"].iloc[0] == 999 and np.isnan(table["score"].iloc[3])


def test_tolerance_drops_records_older_than_the_window():
    table = run(source([bureau_join(tolerance="30d")])).frame
    # row 1 (b, 03-10): its only earlier report (2023-01-01) is older than 30 days
    assert table["score"].iloc[0] == 650 and np.isnan(table["score"].iloc[1])
    assert np.isnan(table["score"].iloc[2])                            # a's 03-01 report is 92 days before 06-01


def test_planted_future_records_never_reach_a_row():
    """Every joined value comes from a record stamped before its row's label time: planted future records
    carry the marker 999 and a far-future copy of every applicant's report is added."""
    future = bureau()
    future = pd.concat([future, future.assign(reported_at=T("2030-01-01"), score=999)], ignore_index=True)
    table = run(source([bureau_join(tolerance="3650d")]), {"bureau.csv": lambda: future}).frame
    seen = table.dropna(subset=["reported_at"])
    assert len(seen) == 3
    assert (seen["reported_at"] < seen["applied_at"]).all()
    assert 999 not in seen.loc[seen["app_id"] != 3, "score"].tolist()    # row 2's 999 is its genuine past record


def test_inner_join_drops_rows_without_a_record_and_counts_matches():
    joined = run(source([{**bureau_join(), "how": "inner"}]))
    assert joined.frame["app_id"].tolist() == [1, 2, 3]
    assert [(p.name, len(p.frame), p.matched) for p in joined.parts] == [("base", 4, None), ("bureau", 6, 3)]


def test_clashing_columns_are_prefixed_with_the_join_name():
    table = run(source([bureau_join()])).frame
    assert table["income"].tolist() == [10.0, 20.0, 30.0, 40.0]       # the base's own column is untouched
    assert table["bureau_income"].tolist()[:3] == [2.0, 4.0, 3.0]
    assert list(table.columns).count("applicant") == 1                  # keys are not repeated


def test_plain_join_needs_unique_keys():
    outcomes = lambda: pd.DataFrame({"app_id": [4, 3, 2, 1], "default": [1, 0, 1, 0]})  # noqa: E731
    table = run(source([{"name": "outcome", "source": {"type": "file", "path": "out.csv"}, "on": ["app_id"]}]),
                {"out.csv": outcomes}).frame
    assert table["default"].tolist() == [0, 1, 0, 1]
    with pytest.raises(DataError, match=r"source.joins\[0\] \(bureau\): 3 record\(s\).*repeat the keys.*add as_of"):
        run(source([{"name": "bureau", "source": {"type": "file", "path": "bureau.csv"}, "on": ["applicant"]}]))


def test_aggregation_summarises_the_window_before_the_label_time():
    join = {"name": "pay", "source": {"type": "file", "path": "payments.csv"}, "on": ["applicant"],
            "as_of": {"column": "paid_at", "tolerance": "100d"},
            "aggregate": {"amount": ["sum", "mean", "max", "count"], "days_late": ["max", "last"]}}
    table = run(source([join])).frame
    # row 0 (a, 03-01): 01-15 and 02-15 (the 03-01 payment is at the label time, 05-15 in the future)
    # row 1 (b, 03-10): 03-09; row 2 (a, 06-01): 03-01 and 05-15 (01-15, 02-15 are over 100 days old); row 3: none
    assert table["pay_count"].tolist() == [2, 1, 2, 0]
    assert table["pay_amount_sum"].tolist() == [150.0, 10.0, 7025.0, 0.0]
    assert table["pay_amount_mean"].tolist()[:3] == [75.0, 10.0, 3512.5] and np.isnan(table["pay_amount_mean"].iloc[3])
    assert table["pay_amount_max"].tolist()[:3] == [100.0, 10.0, 7000.0]
    assert table["pay_amount_count"].tolist() == [2, 1, 2, 0]
    assert table["pay_days_late_max"].tolist()[:3] == [3.0, 1.0, 99.0]
    last = table["pay_days_late_last"].tolist()
    assert last[:2] == [3.0, 1.0] and np.isnan(last[2]) and np.isnan(last[3])   # row 2's latest payment has none
    assert "paid_at" not in table.columns and "amount" not in table.columns


def test_aggregation_without_as_of_uses_every_record_of_the_key():
    join = {"name": "pay", "source": {"type": "file", "path": "payments.csv"}, "on": ["applicant"],
            "aggregate": {"amount": ["sum"]}}
    table = run(source([join])).frame
    assert table["pay_amount_sum"].tolist() == [7175.0, 9010.0, 7175.0, 0.0]


def test_the_runtime_check_refuses_a_record_at_or_after_the_label_time():
    labels = pd.Series(pd.to_datetime(["2024-03-01", "2024-03-10"], utc=True))
    records = pd.Series(pd.to_datetime(["2024-02-01", "2024-03-10"], utc=True))
    rows = pd.Series([0, 7])
    with pytest.raises(PointInTimeError, match="1 joined record.*base row 7"):
        check_point_in_time(rows, labels, records, exact_matches=False, window=None, where="source.joins[0] (x)")
    check_point_in_time(rows, labels, records, exact_matches=True, window=None, where="x")   # allowed when opted in
    with pytest.raises(PointInTimeError, match="within the tolerance"):
        check_point_in_time(rows, labels, records, exact_matches=True, window=parse_duration("7d"), where="x")


def test_the_join_runs_the_runtime_check(monkeypatch):
    """If the as-of merge ever handed over a late record, the join would stop instead of returning it."""
    import tabpipe.sources.join as join_module

    real = pd.merge_asof
    monkeypatch.setattr(join_module.pd, "merge_asof", lambda *a, **k: real(*a, **{**k, "direction": "forward"}))
    with pytest.raises(PointInTimeError, match=r"source.joins\[0\] \(bureau\)"):
        run(source([bureau_join()]))


def test_data_errors_name_the_config_key():
    with pytest.raises(DataError, match=r"source.joins\[0\].on: 'applicant_id' is not a column of the table built"):
        run(source([{**bureau_join(), "on": ["applicant_id"]}]))
    with pytest.raises(DataError, match=r"source.joins\[0\].as_of.column: 'seen_at' is not a column of joined table 'bureau'"):
        run(source([bureau_join(column="seen_at")]))
    with pytest.raises(DataError, match=r"source.label_time: 'decided_at' is not a column"):
        run(source([bureau_join()], label_time="decided_at"))
    with pytest.raises(DataError, match=r"source.label_time: column 'income' of the base holds numbers"):
        run(source([bureau_join()], label_time="income"))
    no_time = lambda: applications().assign(applied_at=[T("2024-03-01"), pd.NaT, T("2024-03-01"), pd.NaT])  # noqa: E731
    with pytest.raises(DataError, match=r"2 row\(s\) of the base have no time .*first rows: 1, 3"):
        run(source([bureau_join()]), {"apps.csv": no_time})
    text_keys = lambda: bureau().assign(applicant=range(6))  # noqa: E731
    with pytest.raises(DataError, match=r"key 'applicant' holds .* in the table built so far but int64"):
        run(source([bureau_join()]), {"bureau.csv": text_keys})


def test_undated_records_are_left_out(caplog):
    undated = lambda: bureau().assign(reported_at=[T("2024-02-20"), None, None, None, None, None])  # noqa: E731
    table = run(source([bureau_join()]), {"bureau.csv": undated}).frame
    assert table["score"].tolist()[0::2] == [600, 600] and table["score"].iloc[1::2].isna().all()
    assert "5 record(s) without a time" in caplog.text


@pytest.mark.parametrize("change, message", [
    ({"tolerance": "90x"}, "bad duration '90x'"),
    ({"tolerance": "3m"}, "bad duration '3m'"),             # minutes or months? neither: write 'min' or days
    ({"tolerance": "0d"}, "more than zero"),
])
def test_bad_tolerance_is_a_config_error(change, message):
    with pytest.raises(ValidationError, match=message):
        source([bureau_join(**change)])


@pytest.mark.parametrize("joins, extra, message", [
    ([bureau_join(), bureau_join()], {}, "join names must be unique"),
    ([bureau_join()], {"label_time": None}, r"joins\[0\] \(bureau\) has as_of but no label time"),
    ([{**bureau_join(), "on": []}], {}, "at least 1 item"),
    ([{**bureau_join(), "on": ["applicant", "reported_at"]}], {}, "also a key"),
    ([{**bureau_join(), "as_of": None, "aggregate": {"score": ["last"]}}], {}, "'last' needs as_of"),
    ([{**bureau_join(), "aggregate": {"score": ["median"]}}], {}, "Input should be"),
    ([{**bureau_join(), "name": "bad name"}], {}, "should match pattern"),
    ([{**bureau_join(), "source": {"type": "join"}}], {}, "does not match any of the expected tags"),
])
def test_config_errors(joins, extra, message):
    with pytest.raises(ValidationError, match=message):
        source(joins, **extra)


def test_parse_duration_units():
    assert parse_duration("90d").days == 90 and parse_duration("12h").total_seconds() == 43200
    assert parse_duration("2w").days == 14 and parse_duration("30min").total_seconds() == 1800


def test_records_without_a_key_match_no_row(caplog):
    """pandas matches a missing key with a missing key; a join must not."""
    no_key = lambda: applications().assign(applicant=["a", None, "a", "c"])  # noqa: E731
    keyless = lambda: pd.DataFrame({"applicant": [None, "a"], "segment": ["ghost", "retail"]})  # noqa: E731
    table = run(source([{"name": "seg", "source": {"type": "file", "path": "seg.csv"}, "on": ["applicant"]}]),
                {"apps.csv": no_key, "seg.csv": keyless}).frame
    assert table["segment"].tolist()[0::2] == ["retail", "retail"] and table["segment"].iloc[1::2].isna().all()
    assert "1 record(s) with a missing key" in caplog.text


def test_joins_chain_after_an_inner_join():
    """A later join sees the rows an earlier inner join kept, and attaches its values to the right ones."""
    joins = [{**bureau_join(), "how": "inner"},
             {"name": "pay", "source": {"type": "file", "path": "payments.csv"}, "on": ["applicant"],
              "as_of": {"column": "paid_at", "tolerance": "100d"}, "aggregate": {"amount": ["sum"]}},
             {"name": "pay2", "source": {"type": "file", "path": "payments.csv"}, "on": ["applicant"],
              "as_of": {"column": "paid_at"}}]
    table = run(source(joins)).frame
    assert table["app_id"].tolist() == [1, 2, 3]
    assert table["pay_amount_sum"].tolist() == [150.0, 10.0, 7025.0]
    assert table["paid_at"].tolist() == [T("2024-02-15"), T("2024-03-09"), T("2024-05-15")]
    assert table["amount"].tolist() == [50.0, 10.0, 25.0]            # pay2's payment amount: no clash, kept as is


def test_description_names_every_part_and_hides_passwords():
    from tabpipe.sources.base import describe_source

    cfg = source([{**bureau_join(), "source": {"type": "sql", "url": "postgresql://bob:Pw-secret-1@db/loans",
                                               "query": "SELECT * FROM bureau"}}])
    text = describe_source(cfg)
    assert text == "join of base = file apps.csv; bureau = sql postgresql://bob:***@db/loans: SELECT * FROM bureau"
    assert "Pw-secret-1" not in text

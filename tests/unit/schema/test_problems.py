"""``Problem`` and its forms at the edges: the service's JSON details, counts, report and text."""
from __future__ import annotations

from tabpipe.schema import Problem, problem_rows, problems_report, rule_counts, summarize, warning_counts

RANGE = Problem("amount", "range", "is above the maximum 100", (2, 5), hard=False)
TYPE = Problem("amount", "type", "is not a number (expected float)", (5,))
ABSENT = Problem("kind", "missing_column", "is absent from the input")


def test_details_are_the_service_json_one_per_row():
    assert RANGE.details() == [{"row": 2, "field": "amount", "rule": "range", "message": RANGE.message},
                               {"row": 5, "field": "amount", "rule": "range", "message": RANGE.message}]
    assert ABSENT.details() == [{"row": None, "field": "kind", "rule": "missing_column", "message": ABSENT.message}]
    assert TYPE.details(with_hard=True) == [{"row": 5, "field": "amount", "rule": "type", "message": TYPE.message,
                                             "hard": True}]


def test_counts_rows_and_text():
    problems = [RANGE, TYPE, ABSENT]
    assert warning_counts(problems) == rule_counts(problems, hard=False) == {"amount": {"range": 2}}
    assert rule_counts(problems, hard=True) == {"amount": {"type": 1}, "kind": {"missing_column": 1}}
    assert problem_rows(problems, hard=True) == {5} and problem_rows(problems, hard=False) == {2, 5}
    assert TYPE.text == "amount (type): is not a number (expected float)"
    assert summarize([RANGE]) == "  amount: 2 rows is above the maximum 100 (rows 2, 5)"


def test_report_keeps_the_validation_report_shape():
    report = problems_report([RANGE, TYPE], 10)
    assert report == {
        "rows_checked": 10,
        "rows_with_errors": 1, "errors": {"amount": [{"rule": "type", "message": TYPE.message, "count": 1,
                                                      "example_rows": [5]}]},
        "rows_with_warnings": 2, "warnings": {"amount": [{"rule": "range", "message": RANGE.message, "count": 2,
                                                          "example_rows": [2, 5]}]}}
    assert list(report) == ["rows_checked", "rows_with_errors", "errors", "rows_with_warnings", "warnings"]

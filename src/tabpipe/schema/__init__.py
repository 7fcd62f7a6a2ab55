"""The data contract (`schema.yaml`): what columns exist, their types, ranges and categories.

One ``Schema`` drives three things, so they can never disagree: validation of training data, the
preprocessing built for the model, and validation of rows sent for prediction (the fitted model
carries the schema it was trained with). Every check reports ``Problem``s.

    spec      what schema.yaml declares (Schema, ColumnSpec, TargetSpec, load_schema)
    values    reading one value as its type (parse_value, is_missing)
    rules     the value rules, one table for both paths (VALUE_RULES, check_value, RecordChecker)
    frame     whole frames (coerce_frame, target_problems, positive_mask)
    problems  a broken rule (Problem) and its report/JSON/text forms
    infer     a schema proposed from data (infer_schema, for ``tabpipe init``)

The names below are ``tabpipe.schema``'s public names; saved models name ``tabpipe.schema.Schema``
and ``tabpipe.schema.ColumnSpec``, so these stay importable from here.
"""
from __future__ import annotations

from tabpipe.schema.frame import absent_columns, coerce_frame, positive_mask, target_problems
from tabpipe.schema.infer import infer_schema
from tabpipe.schema.problems import (
    EXAMPLE_ROWS, Problem, problem_rows, problems_report, rule_counts, summarize, warning_counts,
)
from tabpipe.schema.rules import SHOWN_CATEGORIES, VALUE_RULES, RecordChecker, ValueRule, check_value, rules_for
from tabpipe.schema.spec import NUMERIC_TYPES, ColumnSpec, ColumnType, Schema, SoftRule, TargetSpec, load_schema
from tabpipe.schema.values import (
    ABSENT, FALSE_STRINGS, NOT_SINGLE, TRUE_STRINGS, category_text, is_missing, missing_mask, parse_value, type_message,
)

__all__ = [
    "ABSENT", "EXAMPLE_ROWS", "FALSE_STRINGS", "NOT_SINGLE", "NUMERIC_TYPES", "SHOWN_CATEGORIES", "TRUE_STRINGS",
    "VALUE_RULES", "ColumnSpec", "ColumnType", "Problem", "RecordChecker", "Schema", "SoftRule", "TargetSpec",
    "ValueRule", "absent_columns", "category_text", "check_value", "coerce_frame", "infer_schema", "is_missing",
    "load_schema", "missing_mask", "parse_value", "positive_mask", "problem_rows", "problems_report", "rule_counts",
    "rules_for", "summarize", "target_problems", "type_message", "warning_counts",
]

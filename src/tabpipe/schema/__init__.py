"""The data contract (`schema.yaml`): what columns exist, their types, ranges and categories.

One ``Schema`` validates training data and rows sent for prediction and builds the preprocessing; every
check reports ``Problem``s. The names below stay importable from here (saved models name
``tabpipe.schema.Schema``). Modules: docs/architecture.md#the-schema-package
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

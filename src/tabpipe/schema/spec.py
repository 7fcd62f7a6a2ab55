"""What ``schema.yaml`` declares: the target, and each column's type, role, ranges and categories.

Pure declarations, validated when the file loads; checking data against them is ``rules`` and
``frame``. These classes live inside saved models: ``tabpipe.schema`` re-exports them by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from tabpipe.config_base import StrictModel

ColumnType = Literal["int", "float", "bool", "category", "datetime", "string"]
SoftRule = Literal["range", "category", "null"]
NUMERIC_TYPES = ("int", "float", "bool")


class ColumnSpec(StrictModel):
    """One column. ``role: feature`` columns feed the model; ``id``/``ignore`` columns do not.

    ``hard`` lists the expectations (``range``, ``category``, ``null``) that refuse a row instead of
    warning; ``allow_unknown: false`` is the older spelling of ``hard: [category]``.
    """

    type: ColumnType
    role: Literal["feature", "id", "ignore"] = "feature"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    allow_unknown: bool = True
    hard: list[SoftRule] = []
    description: str | None = None
    sensitive: bool = False  # personal data: keyed hash or dropped in prediction logs, reports, run folders

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max only apply to int/float columns, not type {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"categories only apply to type 'category', not {self.type!r}")
        if self.type == "category" and not self.allow_unknown and not self.categories:
            raise ValueError("allow_unknown: false needs a list of categories")
        if self.type == "string" and self.role == "feature":
            raise ValueError("free-text 'string' columns cannot be features: use type 'category' or role 'id'")
        needs = {"range": (self.min is not None or self.max is not None, "min or max"),
                 "category": (bool(self.categories), "a list of categories"),
                 "null": (not self.nullable, "nullable: false")}
        for rule in self.hard:
            if not needs[rule][0]:
                raise ValueError(f"hard: [{rule}] needs {needs[rule][1]}")
        return self

    def __setstate__(self, state: dict) -> None:
        """Unpickling a model saved before a field existed gives that field its default."""
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values:
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)

    def is_hard(self, rule: str) -> bool:
        """Does breaking ``rule`` refuse the row (True) or only warn (False)?"""
        return rule not in ("range", "category", "null") or rule in self.hard or (
            rule == "category" and not self.allow_unknown)


class TargetSpec(StrictModel):
    """The label column and which of its two values is the positive class."""

    name: str
    positive: str | int | float | bool


class Schema(StrictModel):
    """The whole contract: the target and every column (the ``role: feature`` ones feed the model)."""

    target: TargetSpec
    columns: dict[str, ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _target_not_a_column(self) -> Schema:
        if self.target.name in self.columns:
            raise ValueError(f"target {self.target.name!r} must not also be listed under columns")
        if not self.features:
            raise ValueError("no column has role 'feature'")
        return self

    @property
    def features(self) -> list[str]:
        """Names of the model's input columns, in schema order."""
        return [name for name, spec in self.columns.items() if spec.role == "feature"]

    @property
    def sensitive(self) -> frozenset[str]:
        """Names of the ``sensitive: true`` columns (any role)."""
        return frozenset(name for name, spec in self.columns.items() if spec.sensitive)

    def features_of_type(self, *types: str) -> list[str]:
        """Names of the features whose type is one of ``types``, in schema order."""
        return [name for name in self.features if self.columns[name].type in types]


def load_schema(path: Path) -> Schema:
    """Read and validate ``schema.yaml`` (errors become ConfigError via ``tabpipe.config``)."""
    with open(path) as fh:
        return Schema.model_validate(yaml.safe_load(fh) or {})

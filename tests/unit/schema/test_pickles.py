"""Saved models name the schema's classes ``tabpipe.schema.<Name>`` (the module before the split):
they load back as the classes of ``tabpipe.schema.spec`` and ``tabpipe.schema.problems``."""
from __future__ import annotations

import pickle

import dill
import pandas as pd
import pytest

import tabpipe.schema
from tabpipe.schema import ColumnSpec, Problem, Schema, TargetSpec
from tabpipe.schema.frame import coerce_frame

OLD_MODULE = b"tabpipe.schema"
CLASSES = (Schema, ColumnSpec, TargetSpec, Problem)


def _schema() -> Schema:
    return Schema.model_validate({"target": {"name": "y", "positive": "yes"}, "columns": {
        "amount": {"type": "float", "min": 0, "max": 100, "hard": ["range"]},
        "kind": {"type": "category", "categories": ["a", "b"], "sensitive": True},
        "key": {"type": "string", "role": "id"}}})


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (dill.dumps, dill.loads)],
                         ids=["pickle", "dill"])
def test_a_schema_pickled_under_the_old_module_name_loads(monkeypatch, dumps, loads):
    schema = _schema()
    problem = Problem("amount", "range", "is above the maximum 100", (3, 7), hard=True)
    for cls in CLASSES:
        monkeypatch.setattr(cls, "__module__", "tabpipe.schema")   # what a model saved before the split names
    data = dumps({"schema": schema, "problem": problem})
    monkeypatch.undo()
    assert OLD_MODULE in data and b"tabpipe.schema.spec" not in data and b"tabpipe.schema.problems" not in data

    loaded = loads(data)
    assert type(loaded["schema"]) is Schema and type(loaded["schema"].target) is TargetSpec
    assert {type(spec) for spec in loaded["schema"].columns.values()} == {ColumnSpec}
    assert loaded["schema"] == schema and loaded["problem"] == problem
    assert loaded["schema"].features == ["amount", "kind"] and loaded["schema"].sensitive == {"kind"}
    assert loaded["schema"].columns["amount"].is_hard("range")
    _, problems = coerce_frame(pd.DataFrame({"amount": [150.0], "kind": ["a"]}), loaded["schema"], with_target=False)
    assert [(p.rule, p.hard) for p in problems] == [("range", True)]


def test_every_class_a_model_can_hold_is_reexported_by_name():
    for cls in CLASSES:
        assert getattr(tabpipe.schema, cls.__name__) is cls

"""Numbers sent as text (a flat stream message, a form) are read in one pass: the same floats, and the same
refusals, as ``parse_value`` one value at a time."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from tabpipe.schema.frame import _parse_column, _plain_numbers
from tabpipe.schema.spec import ColumnSpec
from tabpipe.schema.values import missing_mask, parse_value


def _texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        mantissa = rng.choice([f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 17)}f}", str(rng.randint(-10**20, 10**20)),
                               repr(rng.random() * 10 ** rng.randint(-300, 300)), f".{rng.randint(0, 999)}",
                               f"{rng.randint(0, 99)}."])
        exponent = rng.choice(["", "", f"e{rng.randint(-330, 330)}", f"E+{rng.randint(0, 20)}"])
        out.append(mantissa if "e" in mantissa else mantissa + exponent)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_plain_numbers_are_the_floats_parse_value_reads(seed):
    texts = _texts(random.Random(seed), 5000)
    bulk = _plain_numbers(np.array(texts, dtype=object))
    assert bulk is not None
    expected = np.array([parse_value(t, ColumnSpec(type="float"))[0] for t in texts], dtype=float)
    assert np.array_equal(bulk, expected) and all(np.signbit(bulk) == np.signbit(expected))


@pytest.mark.parametrize("odd", [" 1", "1 ", "inf", "-Infinity", "nan", "1_000", "0x10", "١", "1e", "e5", "--1", "1.2.3"])
def test_a_column_with_anything_else_takes_the_value_by_value_path_and_gets_its_refusals(odd):
    spec = ColumnSpec(type="float")
    raw = pd.Series(["1.5", None, odd, "-2e3", ""], dtype=object)
    assert _plain_numbers(np.array(["1.5", odd, "-2e3"], dtype=object)) is None
    values, errors = _parse_column(raw, spec, missing_mask(raw))
    typed, error = parse_value(odd, spec) if odd.strip() else (np.nan, None)
    assert values[0] == 1.5 and values[3] == -2000.0 and np.isnan(values[1]) and np.isnan(values[4])
    if error is None:
        assert values[2] == typed and errors == {}
    else:
        assert np.isnan(values[2]) and errors == {error: [2]}


@pytest.mark.parametrize("dtype", [pd.StringDtype(storage="pyarrow"), pd.StringDtype(storage="python"), "str"])
def test_blank_text_is_missing_in_arrow_backed_columns_as_in_python_ones(dtype):
    values = ["", " ", "\t", "\u00a0", "\u2003", "\x1c", "\x85", "a", " a ", None, "\u200b", "\ufeff", "1.5"]
    raw = pd.Series(values, dtype=dtype)
    assert missing_mask(raw).tolist() == [v is None or not v.strip() for v in values]
    assert missing_mask(raw).tolist() == missing_mask(pd.Series(values, dtype=object)).tolist()

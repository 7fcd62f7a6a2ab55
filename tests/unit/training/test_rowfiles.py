"""RowFiles: plain files without sensitive columns; clear rows in memory and protected copies on disk with them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabpipe.privacy import PREFIX, Protector
from tabpipe.training.rowfiles import RowFiles


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"who": ["ann", "bob", None], "income": [51234.5, np.nan, 70000.0], "x": [1, 2, 3]},
                        index=[7, 3, 5])


def test_without_sensitive_columns_rows_are_plain_files(tmp_path):
    rows = RowFiles(Protector([], mode="hash", key=b"k"))   # a protector without columns: nothing to protect
    assert not rows.in_memory and rows.sensitive == frozenset()
    path = rows.write_frame(_frame(), tmp_path / "a.parquet", index=True)
    pd.testing.assert_frame_equal(pd.read_parquet(path), _frame())
    pd.testing.assert_frame_equal(RowFiles().read_frame(path), _frame())   # another process reads the file
    rows.write_array(np.arange(6.0).reshape(3, 2), tmp_path / "x.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(6.0).reshape(3, 2))


@pytest.mark.parametrize("mode,key", [("hash", b"secret"), ("drop", None), ("hash", None)])
def test_sensitive_columns_are_clear_in_memory_only(tmp_path, mode, key):
    rows = RowFiles(Protector(["who", "income"], mode=mode, key=key))
    assert rows.in_memory and rows.sensitive == {"who", "income"}
    path = rows.write_frame(_frame(), tmp_path / "a.parquet", index=True)
    pd.testing.assert_frame_equal(rows.read_frame(path), _frame())          # the stages read the clear rows
    on_disk = pd.read_parquet(path)
    assert on_disk["x"].tolist() == [1, 2, 3] and list(on_disk.index) == [7, 3, 5]
    if key is None:                                                          # drop, or hash without a key
        assert set(on_disk.columns) == {"x"}
    else:
        assert on_disk["who"].iloc[0].startswith(PREFIX) and pd.isna(on_disk["who"].iloc[2])
        assert on_disk["income"].iloc[0].startswith(PREFIX) and "51234" not in on_disk.to_csv()
    array = np.array([[51234.5, 1.0]])
    rows.write_array(array, tmp_path / "x.npy")
    assert not (tmp_path / "x.npy").exists()                                # derived rows: memory only
    np.testing.assert_array_equal(rows.read_array(tmp_path / "x.npy"), array)


def test_a_process_without_the_clear_rows_refuses_to_read_the_protected_copy(tmp_path):
    RowFiles(Protector(["who"], mode="drop", key=None)).write_frame(_frame(), tmp_path / "a.parquet")
    with pytest.raises(RuntimeError, match="only in the memory"):
        RowFiles(Protector(["who"], mode="drop", key=None)).read_frame(tmp_path / "a.parquet")

"""``RowFormat.column_batch`` + ``log_columns_once`` (the stream consumer's log write, column by column) store what
``RowFormat.rows`` + ``log_once`` store for the same scored records: the same rows, values and file types
(the Parquet log; a consumer logging to the SQL log writes rows)."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tabpipe.history.logged_ids import LoggedIds
from tabpipe.history.predlog import RowFormat, log_columns_once, log_once
from tabpipe.history.store import HistoryStore
from tabpipe.privacy import Protector

STAMP = datetime(2026, 6, 1, 12, 30, tzinfo=timezone.utc)
SCHEMA = SimpleNamespace(columns={"mid": SimpleNamespace(role="id"), "x": SimpleNamespace(role="feature"),
                                  "n": SimpleNamespace(role="feature"), "c": SimpleNamespace(role="feature"),
                                  "secret": SimpleNamespace(role="feature")})


def _records(text: bool) -> list[dict]:
    out = []
    for i in range(40):
        record = {"mid": None if i % 7 == 3 else (f"m{i % 30}" if i % 5 else f" m{i} "), "x": 1.5 * i,
                  "n": i, "c": "abc"[i % 3], "secret": f"s{i}", "extra": "not in the schema"}
        if i % 9 == 4:
            record["n"] = None          # ints with a gap: kept as ints
        if i % 8 == 2:
            record["x"] = None          # floats with a gap
        if i % 11 == 6:
            del record["c"]             # a field absent from one row
        out.append({k: ("" if v is None else str(v)) or None for k, v in record.items()} if text else record)
    return out


def _log_both(tmp_path, log_format: str, text: bool, mode: str, rate: float):
    records = _records(text)
    frame = pd.DataFrame.from_records(records)
    proba = np.linspace(0.05, 0.95, len(records))
    proba[[2, 17]] = np.nan
    labels = np.where(proba >= 0.5, 1, 0)
    warnings = [f"w{i}" if i % 6 == 1 else None for i in range(len(records))]
    mids, indexes = [f"170000000{i // 3}-0" for i in range(len(records))], [i % 3 for i in range(len(records))]
    stored = []
    for way in ("rows", "columns"):
        fmt = RowFormat(SCHEMA, Protector(["secret"], mode=mode, key=b"k" * 32), rate, rng=random.Random(5))
        folder = tmp_path / way
        with HistoryStore.open(f"sqlite:///{folder}.sqlite", log_dir=folder, log_format=log_format) as store:
            for _ in range(2):          # the second time every row id is logged already
                if way == "rows":
                    rows = fmt.rows("stream", "v1", records, proba, labels, [[w] if w else [] for w in warnings],
                                    logged_at=STAMP)
                    for row in rows:
                        i = row["row_index"]
                        row["request_id"], row["row_index"] = mids[i], indexes[i]
                        row["row_id"] = row["row_id"] or f"{mids[i]}:{indexes[i]}"
                    counts = log_once(store, rows)
                else:
                    batch = fmt.column_batch("v1", frame, records, proba, labels, warnings, mids, indexes, logged_at=STAMP)
                    counts = log_columns_once(store, batch, since=STAMP, known=LoggedIds(store))
                stored.append(counts)
            log = store.predictions().drop(columns=["id"])
            files = [pq.read_table(f["path"]) for f in store.log_files()]
        stored.append((log, files))
    return stored


@pytest.mark.parametrize("log_format", ["parquet"])
@pytest.mark.parametrize("text", [True, False])
@pytest.mark.parametrize("mode,rate", [("hash", 1.0), ("drop", 1.0), ("hash", 0.6)])
def test_the_columns_store_what_the_rows_store(tmp_path, log_format, text, mode, rate):
    first_rows, again_rows, (log_rows, files_rows), first_cols, again_cols, (log_cols, files_cols) = \
        _log_both(tmp_path, log_format, text, mode, rate)
    assert (first_cols, again_cols) == (first_rows, again_rows) and first_rows[0] > 10
    assert again_rows[0] == 0 or rate < 1       # sampled again: other rows drawn
    pd.testing.assert_frame_equal(log_cols, log_rows)
    assert len(files_cols) == len(files_rows)
    for got, expected in zip(files_cols, files_rows):
        assert set(got.schema.names) == set(expected.schema.names)
        expected = expected.select(got.schema.names)
        assert got.schema.remove_metadata().equals(expected.schema.remove_metadata())
        assert got.to_pylist() == expected.to_pylist()

"""One window sample serves two sizes: the rows with the k smallest keys of a larger sample are the sample a
``keep=k`` run would have kept, in row order."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tabpipe.monitoring.window_stats import WindowStats


def sampled(keep: int | None, chunks: int = 4, rows: int = 50) -> WindowStats:
    """Chunks of ``rows`` rows merged as ``file_stats`` merges them, with seeded keys."""
    rng = np.random.default_rng(0)
    total = WindowStats(keep=keep)
    for i in range(chunks):
        part = WindowStats(rows=rows, keep=keep)
        part.sample = pd.DataFrame({"row": np.arange(i * rows, (i + 1) * rows)})
        part.sample_keys, part.sample_place = rng.random(rows), i * rows + np.arange(rows, dtype=np.int64)
        if keep is not None:
            part._trim()
        total.merge(part)
    return total


def test_the_smallest_keys_of_a_larger_sample_are_the_smaller_sample():
    large, small = sampled(keep=80), sampled(keep=15)
    assert len(large.sample) == 80 and len(small.sample) == 15
    pd.testing.assert_frame_equal(large.smallest(15), small.sample)
    assert large.smallest(500) is large.sample          # asked for more than it has: all of it


def test_every_row_kept_is_every_row_served():
    whole = sampled(keep=None)
    assert len(whole.smallest(15)) == 200


def test_a_window_streamed_in_chunks_counts_and_samples_as_one_chunk():
    """Null counts (read off the PSI buckets' missing bucket), bucket counts and the sample (rows whose keys
    cannot be among the smallest are skipped once the sample is full) are those of the whole window at once."""
    from types import SimpleNamespace

    from tabpipe.history.logread import LogRows
    from tabpipe.monitoring.window_stats import ChunkSpec, stream_stats
    from tabpipe.schema import Schema, coerce_frame

    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {
        "x": {"type": "float"}, "c": {"type": "category"}, "k": {"type": "int"}}})
    model = SimpleNamespace(schema=schema, check=lambda rows, **kw: coerce_frame(rows, schema, with_target=False, **kw))
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    c = pd.Series(rng.choice(["a", "b", "c", " ", None], n), dtype="category")
    rows = pd.DataFrame({"x": x, "c": c, "k": rng.integers(0, 5, n).astype(float)})
    features = {"x": {"kind": "numeric", "edges": [-1.0, 0.0, 1.0], "shares": [0.2] * 5, "rows": 100},
                "c": {"kind": "categorical", "categories": ["a", "b"], "shares": [0.25] * 4, "rows": 100}}
    spec = ChunkSpec(model=model, profile_features=features, keep=50, seed=3)
    proba = rng.random(n)
    outcomes = pd.Series([None] * n, dtype=object)
    cut = [LogRows(rows.iloc[i:i + 170].reset_index(drop=True), proba[i:i + 170], outcomes[i:i + 170])
           for i in range(0, n, 170)]
    streamed, whole = stream_stats(cut, spec), stream_stats([LogRows(rows, proba, outcomes)], spec)
    typed = coerce_frame(rows, schema, with_target=False)[0]
    assert streamed.nulls == whole.nulls == {name: int(typed[name].isna().sum()) for name in schema.features}
    assert streamed.nulls["c"] > 0 and streamed.nulls["x"] > 0
    assert {k: v.tolist() for k, v in streamed.buckets.items()} == {k: v.tolist() for k, v in whole.buckets.items()}
    pd.testing.assert_frame_equal(streamed.sample, whole.sample)
    assert streamed.sample_place.tolist() == whole.sample_place.tolist() and len(whole.sample) == 50
    counted = stream_stats(cut, ChunkSpec(model=model, profile_features=features, keep=50, seed=3, categorical=True))
    assert counted.nulls == whole.nulls                  # text Categoricals checked as such: the same counts,
    assert {k: v.tolist() for k, v in counted.buckets.items()} == {k: v.tolist() for k, v in whole.buckets.items()}
    pd.testing.assert_frame_equal(counted.sample, whole.sample)        # and the sample as object text
    assert counted.quality(schema) == whole.quality(schema)


def test_outcome_texts_read_once_per_distinct_text_match_positive_mask():
    from tabpipe.monitoring.window_stats import _positive
    from tabpipe.schema import positive_mask

    cases = [(["1", "0", " 1 ", "1.0", "0"], 1), (["yes", "no", "YES", "1"], True), (["a", "b", "a"], "a"),
             (["1", "x", "0"], 1), (["2", "1.5", "1"], 1.5), ([1, "1", 0.0], 1), (["1", "0"], "1")]
    for values, positive in cases:
        series = pd.Series(values, dtype=object)
        assert _positive(series, positive).tolist() == positive_mask(series, positive).tolist(), (values, positive)


def test_beyond_exact_rows_the_scores_go_to_bins_and_per_row_memory_stops_growing(monkeypatch):
    """A window merged chunk by chunk keeps at most ``exact_rows`` rows' scores (plus a chunk); beyond it, the
    finished stats hold only the sketch, whose counts are every scored and labelled row's."""
    from types import SimpleNamespace

    from tabpipe.history.logread import LogRows
    from tabpipe.monitoring.window_stats import ChunkSpec, Spill, stream_stats
    from tabpipe.schema import Schema, coerce_frame

    schema = Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": {"x": {"type": "float"}}})
    model = SimpleNamespace(schema=schema, check=lambda rows, **kw: coerce_frame(rows, schema, with_target=False, **kw))
    rng = np.random.default_rng(2)
    n, chunk = 5000, 250
    proba = rng.random(n)
    proba[::50] = np.nan                                                  # not scored
    outcomes = pd.Series(np.where(rng.random(n) < 0.3, rng.choice(["0", "1"], n), None), dtype=object)
    chunks = [LogRows(pd.DataFrame({"x": rng.normal(size=chunk)}), proba[i:i + chunk], outcomes[i:i + chunk])
              for i in range(0, n, chunk)]
    spec = ChunkSpec(model=model, profile_features=None, seed=1, spill=Spill(exact_rows=1000, threshold=0.5))
    kept = []
    original = WindowStats.merge

    def merge(self, later):
        out = original(self, later)
        kept.append(self.kept)
        return out

    monkeypatch.setattr(WindowStats, "merge", merge)
    binned = stream_stats(chunks, spec)
    monkeypatch.undo()
    assert max(kept) <= 1000 + chunk and binned.proba is None and binned.y is None
    exact = stream_stats(chunks, ChunkSpec(model=model, profile_features=None, seed=1))
    labelled = exact.labelled
    assert binned.sketch.scored_rows == int((~np.isnan(exact.proba)).sum()) == n - n // 50
    assert binned.sketch.labelled_rows == int(labelled.sum()) > 0
    assert binned.sketch.positive.sum() == exact.y[labelled].sum()
    assert binned.rows == exact.rows == n
    small = stream_stats(chunks[:3], spec)                               # under the bound: row by row, as before
    assert small.sketch is None and len(small.proba) == 3 * chunk

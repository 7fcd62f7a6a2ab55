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

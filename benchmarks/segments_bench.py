"""What the segment checks add to the gate (``python -m benchmarks.segments_bench``): ``segment_checks`` on a
generated test split — the configured segments (challenger against production, ``resamplings`` paired
resamples), the whole-split intervals and the worst-slice search over every feature — at several test-row
counts. Medians of ``--repeats`` runs in seconds; the load average is printed, since a shared machine moves
these figures a lot.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tabpipe.config import SegmentsSection
from tabpipe.schema import Schema
from tabpipe.sources.sample import generate
from tabpipe.training.segments import segment_checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[4_000, 20_000], help="test rows")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    schema = Schema.model_validate({"target": {"name": "fault_flag", "positive": 1}, "columns": {
        "region": {"type": "category"}, "vendor": {"type": "category"}, "technology": {"type": "category"},
        **{c: {"type": "float"} for c in ("throughput_mbps", "latency_ms", "packet_loss_pct", "call_drop_rate_pct",
                                          "rsrp_dbm", "sinr_db", "prb_utilization_pct", "handover_success_pct",
                                          "temperature_c", "active_users", "alarm_count")}}})
    settings = SegmentsSection(columns=["technology", "latency_ms"])
    print(f"load average {os.getloadavg()[0]:.1f}; segments {settings.columns}, {settings.resamplings} paired "
          f"resamples, worst-slice search over {len(schema.features)} features, {settings.slice_resamplings} resamples")
    for n in args.rows:
        frame = generate(2 * n, seed=0)
        train, test = frame.iloc[:n], frame.iloc[n:].reset_index(drop=True)
        y = test["fault_flag"].to_numpy()
        rng = np.random.default_rng(0)
        new = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
        prod = np.clip(0.2 * y + rng.random(n) * 0.8, 0, 1)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            segment_checks(settings, schema, metric="roc_auc", seed=0, train=train, test=test, y=y, proba=new,
                           threshold=0.5, compared=None, production_proba=prod, production_threshold=0.5)
            seconds.append(time.perf_counter() - start)
        print(f"{n:>7} test rows: median {statistics.median(seconds):.2f} s (runs: "
              f"{', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()

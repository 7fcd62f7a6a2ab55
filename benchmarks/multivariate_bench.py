"""Seconds of the two signals that see more than one column, per window, and of the publish-time calibration.

    .venv/bin/python benchmarks/multivariate_bench.py [--rows 100000] [--repeats 3] [--resamplings 100]

The rows are ``monitor_bench``'s: 30 features (24 numeric with ~2 % missing, 6 categorical with 5-40
levels), typed. Measured, medians of ``--repeats`` runs:

- ``domain_auc``: the window's multivariate signal — seeded samples of 2,000 rows of a 20,000-row
  reference and of the ``--rows``-row window, encoded, one 2-fold out-of-fold fit, the threshold;
- ``concept_gap``: realised minus estimated ROC-AUC on ``--rows`` labelled rows with 200 bootstrap
  resamplings (isotonic calibration of 2,000 held-out rows);
- ``calibrate``: the publish-time no-shift distribution, ``--resamplings`` out-of-fold fits on 2 x 2,000
  training rows (timed once: it is ``--resamplings`` times the same fit).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from benchmarks.monitor_bench import make_rows, make_schema  # noqa: E402
from tabpipe.drift.multivariate import calibrate, domain_auc  # noqa: E402
from tabpipe.drift.profile import build_profile, fit_calibration  # noqa: E402
from tabpipe.monitoring.concept import concept_gap  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resamplings", type=int, default=100)
    args = parser.parse_args()
    schema = make_schema()
    train = make_rows(40_000, seed=0)
    window = make_rows(args.rows, seed=1, shift=0.3)
    profile = build_profile(train, schema, np.linspace(0, 1, 100), np.r_[np.zeros(50), np.ones(50)], 0.5)
    features = profile["features"]

    start = time.perf_counter()
    calibration = calibrate(train, features, sample_rows=2_000, resamplings=args.resamplings, seed=0)
    calibrate_s = time.perf_counter() - start
    reference = train.sample(20_000, random_state=0)
    auc_s, result = timed(lambda: domain_auc(reference, window, features, calibration, seed=0), args.repeats)

    rng = np.random.default_rng(2)
    held_out = rng.random(2_000)
    calibration_map = fit_calibration(held_out, (rng.random(2_000) < held_out).astype(int), fitted_on="bench")
    proba = rng.random(args.rows)
    y = (rng.random(args.rows) < proba).astype(int)
    gap_s, gap = timed(lambda: concept_gap(y, proba, calibration_map, seed=0), args.repeats)

    print(f"window {args.rows:,} rows x {len(features)} features; medians of {args.repeats} (shared machine)")
    print(f"domain_auc   {auc_s:7.3f} s  (AUC {result.auc:.3f}, threshold {result.threshold:.3f}, "
          f"{result.reference_rows} + {result.window_rows} rows)")
    print(f"concept_gap  {gap_s:7.3f} s  (gap {gap['gap']:+.4f}, interval {gap['ci'][0]:+.4f} .. {gap['ci'][1]:+.4f})")
    print(f"calibrate    {calibrate_s:7.3f} s  ({args.resamplings} resamplings of 2 x {calibration['sample_rows']} "
          f"rows; {calibrate_s / args.resamplings:.3f} s each)")


if __name__ == "__main__":
    main()

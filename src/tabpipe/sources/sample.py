"""Synthetic telecom cell KPIs with a ``fault_flag`` target (network fault prediction).

``generate(rows, seed, shift)``: one row per cell measurement, correlated KPIs, ~5 % noisy faults,
``shift`` a drift knob; pure and deterministic. ``write(df, path)`` saves CSV or Parquet.
Design notes: docs/training.md#the-sample-data-generator
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_CELLS = 300
START = np.datetime64("2024-03-01T00:00:00", "s")
DAYS = 60

REGIONS = np.array(["north", "south", "east", "west", "central"], dtype=object)
VENDORS = np.array(["Ericsson", "Nokia", "Huawei", "Samsung"], dtype=object)
TECHNOLOGIES = np.array(["3G", "4G", "5G"], dtype=object)

# Mix logits at shift=0 and how much one unit of shift moves them.
_REGION_LOGITS = np.log([0.22, 0.20, 0.18, 0.15, 0.25])
_VENDOR_LOGITS = np.log([0.38, 0.30, 0.22, 0.10])
_VENDOR_SHIFT = np.array([-0.5, -0.2, 0.4, 1.0])
_TECH_LOGITS = np.log([0.15, 0.60, 0.25])
_TECH_SHIFT = np.array([-0.2, -0.4, 0.9])

# Per technology (3G, 4G, 5G): peak throughput (Mbps) and idle latency (ms).
_TECH_CAPACITY = np.array([21.0, 90.0, 400.0])
_TECH_LATENCY = np.array([65.0, 32.0, 14.0])
# Per vendor: throughput efficiency, latency factor, extra fault risk.
_VENDOR_EFFICIENCY = np.array([1.00, 0.95, 1.03, 0.90])
_VENDOR_LATENCY = np.array([1.00, 1.08, 0.95, 1.15])
_VENDOR_RISK = np.array([0.0, 0.3, 0.5, 0.9])

# Calibrated so that about 5 % of rows are faults at shift=0.
_RISK_INTERCEPT = -6.1
# Per vendor: share of rows in the silent "sleeping cell" state, and its extra fault risk.
_SLEEPING_RATE = np.array([0.03, 0.035, 0.04, 0.05])
_SLEEPING_RISK = 4.5
_LABEL_NOISE = 0.01

# Share of NaN per column (vendor gets None).
_MISSING = {
    "temperature_c": 0.04,
    "sinr_db": 0.025,
    "handover_success_pct": 0.03,
    "throughput_mbps": 0.01,
    "vendor": 0.015,
}

COLUMNS = [
    "measurement_id", "cell_id", "timestamp", "region", "vendor", "technology",
    "throughput_mbps", "latency_ms", "packet_loss_pct", "call_drop_rate_pct",
    "rsrp_dbm", "sinr_db", "prb_utilization_pct", "active_users", "alarm_count",
    "handover_success_pct", "temperature_c", "fault_flag",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choice(rng: np.random.Generator, n: int, logits: np.ndarray) -> np.ndarray:
    """Indices drawn from softmax(logits)."""
    p = np.exp(logits - logits.max())
    return rng.choice(len(p), size=n, p=p / p.sum())


def _cells(rng: np.random.Generator, shift: float) -> dict[str, np.ndarray]:
    """Fixed attributes of each cell (index = cell number)."""
    return {
        "region": _choice(rng, N_CELLS, _REGION_LOGITS),
        "vendor": _choice(rng, N_CELLS, _VENDOR_LOGITS + shift * _VENDOR_SHIFT),
        "tech": _choice(rng, N_CELLS, _TECH_LOGITS + shift * _TECH_SHIFT),
        "size": rng.lognormal(np.log(60.0), 0.5, N_CELLS),      # typical busy-hour users
        "rsrp": rng.normal(-95.0, 7.0, N_CELLS),                 # coverage at the cell centre
        "heat": rng.normal(0.0, 3.0, N_CELLS),                   # site cooling quality (degC)
        "health": rng.normal(0.0, 0.5, N_CELLS),                 # unobserved hardware health
    }


def _latent_risk(util: np.ndarray, temperature: np.ndarray, rsrp: np.ndarray,
                 handover: np.ndarray, packet_loss: np.ndarray, vendor: np.ndarray,
                 tech: np.ndarray, health: np.ndarray) -> np.ndarray:
    """Fault log-odds before intercept and noise: thresholds and interactions of the KPIs."""
    congested = _sigmoid((util - 75.0) / 4.0)
    hot = _sigmoid((temperature - 40.0) / 2.0)
    weak = np.clip(-(rsrp + 102.0) / 4.0, 0.0, 3.0)
    return (
        3.5 * congested * hot + 0.3 * congested + 0.3 * hot  # hot and congested sites
        + 0.8 * weak * (1.0 + (handover < 95.0))             # weak coverage, worse if handovers fail
        + 1.2 * (packet_loss > 1.2)                          # lossy link
        + _VENDOR_RISK[vendor] * (1.0 + 1.5 * (tech == 0))    # fragile vendor kit, mostly on 3G
        + health                                             # unobserved per-cell term
    )


def measurement_ids(rows: int, seed: int, shift: float) -> np.ndarray:
    """One id per row of ``generate(rows, seed, shift)``: ``s{seed}-x{shift}-n{rows}-{row:06d}``.

    The prefix names the generator's arguments (``shift`` as Python's exact float repr), so batches
    generated with different arguments never share an id, and the same arguments give the same ids;
    the letter in front keeps a CSV reader from taking the ids for numbers.
    """
    prefix = f"s{seed}-x{float(shift)!r}-n{rows}-"
    return np.array([f"{prefix}{i:06d}" for i in range(rows)], dtype=object)


def generate(rows: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Synthetic per-cell network KPIs with a binary ``fault_flag`` target.

    Columns, one row per cell and quarter-hour measurement, sorted by time:

    - ``measurement_id`` (str, unique per row, e.g. ``"s7-x0.0-n12000-000042"``: see
      ``measurement_ids``), ``cell_id`` (str, ``"CELL-00042"``; 300 cells), ``timestamp`` (naive datetime64,
      60 days from 2024-03-01), ``region`` (north/south/east/west/central), ``vendor``
      (Ericsson/Nokia/Huawei/Samsung; ~1.5 % missing), ``technology`` (3G/4G/5G);
    - ``throughput_mbps`` (Mbps), ``latency_ms`` (ms), ``packet_loss_pct`` (%),
      ``call_drop_rate_pct`` (%), ``rsrp_dbm`` (dBm, negative), ``sinr_db`` (dB),
      ``prb_utilization_pct`` (%), ``active_users`` (int), ``alarm_count`` (int, small),
      ``handover_success_pct`` (%), ``temperature_c`` (degC); percentages lie in 0-100;
      a few percent NaN in ``temperature_c``, ``sinr_db``, ``handover_success_pct`` and
      ``throughput_mbps``; floats rounded to 2 decimals (3 for loss and drop rates);
    - ``fault_flag`` (int 0/1, never missing): about 5 % positives at ``shift=0``.

    ``shift`` (any float, 0 = base distribution) drifts the data linearly; per unit: the
    5G and Huawei/Samsung shares grow, users and PRB utilization rise (about +15 points),
    RSRP drops 3 dB and SINR about 3 dB, latency rises about 20 %, sites run 2.5 degC
    hotter, the time window moves 60 days later and, through those KPIs, the fault rate
    roughly triples.

    Pure and deterministic given ``(rows, seed, shift)`` (``numpy.random.default_rng``).
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng = np.random.default_rng(seed)
    shift = float(shift)
    cells = _cells(rng, shift)

    # When: random quarter-hours, sorted; load peaks in the evening, with a daytime shoulder.
    quarter = np.sort(rng.integers(0, DAYS * 96, rows))
    offset = quarter * 900 + round(shift * DAYS * 86400)
    timestamp = START + offset.astype("timedelta64[s]")
    hour = (quarter % 96) / 4.0
    load = np.clip(0.55 + 0.45 * np.cos(2 * np.pi * (hour - 20.0) / 24.0)
                   + 0.1 * np.cos(2 * np.pi * (hour - 12.0) / 24.0), 0.05, 1.1)

    cell = rng.integers(0, N_CELLS, rows)
    vendor, tech = cells["vendor"][cell], cells["tech"][cell]

    # Load: users -> PRB utilization.  A "sleeping" cell keeps its users attached but
    # stops scheduling them: low utilization, collapsed throughput, no extra alarms.
    users = rng.poisson(cells["size"][cell] * load * (1.0 + 0.3 * shift)
                        * rng.lognormal(0.0, 0.25, rows))
    util = 100 * _sigmoid(-3.2 + 0.9 * np.log1p(users) + 0.35 * tech + 0.4 * shift
                          + rng.normal(0.0, 0.45, rows))
    sleeping = rng.random(rows) < _SLEEPING_RATE[vendor]
    util = np.where(sleeping, 0.1 * util, util)
    u = util / 100.0

    # Radio and service KPIs.
    rsrp = np.clip(cells["rsrp"][cell] - 3.0 * shift + rng.normal(0.0, 4.0, rows), -140.0, -44.0)
    sinr = np.clip(12.0 + 0.4 * (rsrp + 95.0) - 6.0 * u - 1.0 * shift
                   + rng.normal(0.0, 3.0, rows), -10.0, 35.0)
    throughput = (_TECH_CAPACITY[tech] * _VENDOR_EFFICIENCY[vendor] * _sigmoid((sinr - 3.0) / 5.0)
                  * (1.0 - 0.8 * u ** 1.5) * np.where(sleeping, 0.05, 1.0)
                  * rng.lognormal(0.0, 0.25, rows))
    latency = (_TECH_LATENCY[tech] * _VENDOR_LATENCY[vendor] * (1.0 + 0.25 * shift)
               * (1.0 + 2.0 * u ** 4) * rng.lognormal(0.0, 0.2, rows)
               + rng.exponential(3.0, rows))
    packet_loss = np.clip(0.05 + 3.0 * u ** 6 + 2.0 * _sigmoid(-sinr / 2.0)
                          + rng.gamma(0.8, 0.25, rows), 0.0, 100.0)
    handover = np.clip(99.2 - 8.0 * _sigmoid(-(rsrp + 110.0) / 4.0) - 3.0 * u ** 4
                       - rng.gamma(1.0, 1.2, rows), 0.0, 100.0)
    call_drop = np.clip(0.2 + 0.08 * (100.0 - handover) + 0.3 * packet_loss
                        + 0.6 * _sigmoid(-(rsrp + 105.0) / 3.0)
                        + rng.gamma(1.0, 0.3, rows), 0.0, 100.0)
    temperature = (30.0 + 6.0 * np.cos(2 * np.pi * (hour - 15.0) / 24.0) + 8.0 * u
                   + cells["heat"][cell] + 2.5 * shift + rng.normal(0.0, 2.5, rows))

    # Target: latent risk + noise -> Bernoulli, then label noise.  Alarms echo the risk.
    risk = _latent_risk(util, temperature, rsrp, handover, packet_loss, vendor, tech,
                        cells["health"][cell])
    alarms = rng.poisson(np.minimum(0.1 * np.exp(0.5 * risk + rng.normal(0.0, 0.8, rows)), 6.0))
    logit = _RISK_INTERCEPT + risk + _SLEEPING_RISK * sleeping + rng.normal(0.0, 0.7, rows)
    fault = rng.random(rows) < _sigmoid(logit)
    fault = np.where(rng.random(rows) < _LABEL_NOISE, rng.random(rows) < 0.5, fault)

    def holes(values: np.ndarray, column: str) -> np.ndarray:
        return np.where(rng.random(rows) < _MISSING[column], np.nan, values)

    cell_ids = np.array([f"CELL-{i:05d}" for i in range(N_CELLS)], dtype=object)
    vendor_names = np.where(rng.random(rows) < _MISSING["vendor"], None, VENDORS[vendor])
    return pd.DataFrame({
        "measurement_id": measurement_ids(rows, seed, shift),
        "cell_id": cell_ids[cell],
        "timestamp": timestamp,
        "region": REGIONS[cells["region"][cell]],
        "vendor": vendor_names,
        "technology": TECHNOLOGIES[tech],
        "throughput_mbps": holes(np.round(throughput, 2), "throughput_mbps"),
        "latency_ms": np.round(latency, 2),
        "packet_loss_pct": np.round(packet_loss, 3),
        "call_drop_rate_pct": np.round(call_drop, 3),
        "rsrp_dbm": np.round(rsrp, 2),
        "sinr_db": holes(np.round(sinr, 2), "sinr_db"),
        "prb_utilization_pct": np.round(util, 2),
        "active_users": users.astype(np.int64),
        "alarm_count": alarms.astype(np.int64),
        "handover_success_pct": holes(np.round(handover, 2), "handover_success_pct"),
        "temperature_c": holes(np.round(temperature, 2), "temperature_c"),
        "fault_flag": fault.astype(np.int64),
    }, columns=COLUMNS)


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` as CSV (``.csv``) or Parquet (``.parquet``), creating parent folders."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: unsupported extension {suffix!r}; use .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path

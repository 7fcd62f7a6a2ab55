"""Four synthetic tables in the shape of a loan-default project, for the joined-source example (docs/joins.md).

``generate_loans(applicants, seed)`` returns, pure and deterministic:

- ``applications``: one row per loan application (``application_id``, ``applicant_id``, ``applied_at`` --
  the label time --, ``amount``, ``term_months``, ``income``, ``purpose``); some applicants apply twice;
- ``bureau``: credit-bureau reports per applicant over 2022-2025 (``reported_at``, ``bureau_score``,
  ``open_loans``, ``amount`` = debt outstanding, a name the applications also use), many of them later
  than a given application. After a default, a collections report with a score in 300-349 (a range no
  other report uses) is filed: the future telling on the past, which a point-in-time join must not let in;
- ``payments``: instalments of earlier loans per applicant (``paid_at``, ``amount``, ``days_late``);
- ``outcomes``: ``application_id`` and ``default`` (1: the loan defaulted), about 20 % positive.

A latent risk per applicant drives bureau scores, late payments and defaults, so the joined features
carry signal only through the past. ``write_loan_tables(folder)`` writes them as files
(``python -m tabpipe.sources.loan_sample FOLDER``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

START, END = pd.Timestamp("2022-01-01"), pd.Timestamp("2025-12-31")
COLLECTIONS_SCORES = (300, 350)      # [low, high): only the collections reports filed after a default
PURPOSES = np.array(["car", "home", "education", "business", "other"], dtype=object)


def _times(rng: np.random.Generator, n: int, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    seconds = rng.integers(0, int((end - start).total_seconds()), n)
    return pd.DatetimeIndex(start + pd.to_timedelta(seconds, unit="s")).floor("h")


def generate_loans(applicants: int = 1500, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The four tables (see the module docstring) for ``applicants`` people."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=applicants)
    ids = np.array([f"P{i:05d}" for i in range(applicants)], dtype=object)
    income = np.round(rng.lognormal(10.5, 0.4, applicants), -2)

    # applications: everyone once, a quarter twice, in 2023-2024
    who = np.concatenate([np.arange(applicants), rng.choice(applicants, applicants // 4, replace=False)])
    n_apps = len(who)
    applied = _times(rng, n_apps, pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31"))
    amount = np.round(rng.lognormal(9.3, 0.6, n_apps), -1)
    term = rng.choice([12, 24, 36, 60], n_apps)
    applications = pd.DataFrame({
        "application_id": np.arange(1, n_apps + 1), "applicant_id": ids[who], "applied_at": applied,
        "amount": amount, "term_months": term, "income": income[who],
        "purpose": rng.choice(PURPOSES, n_apps),
    }).sort_values("applied_at", kind="stable").reset_index(drop=True)
    who = pd.Series(np.arange(applicants), index=ids)[applications["applicant_id"]].to_numpy()

    logit = -2.2 + 1.5 * risk[who] + 0.6 * np.log(applications["amount"] / applications["income"] * 10)
    default = (rng.random(n_apps) < 1 / (1 + np.exp(-logit))).astype(int)
    outcomes = pd.DataFrame({"application_id": applications["application_id"], "default": default})

    # bureau: 1-6 reports per applicant at any time, plus a collections report after each default
    per = rng.integers(1, 7, applicants)
    owner = np.repeat(np.arange(applicants), per)
    bureau = pd.DataFrame({
        "applicant_id": ids[owner], "reported_at": _times(rng, len(owner), START, END),
        "bureau_score": np.clip(np.round(660 - 60 * risk[owner] + rng.normal(0, 20, len(owner))), 400, 850).astype(int),
        "open_loans": rng.poisson(np.exp(0.6 + 0.3 * risk[owner])),
        "amount": np.round(rng.lognormal(8.5, 1.0, len(owner)), -1),
    })
    defaulted = applications[default == 1]
    collections = pd.DataFrame({
        "applicant_id": defaulted["applicant_id"].to_numpy(),
        "reported_at": (defaulted["applied_at"] + pd.to_timedelta(rng.integers(30, 200, len(defaulted)), unit="D")
                        ).to_numpy(),
        "bureau_score": rng.integers(*COLLECTIONS_SCORES, len(defaulted)),
        "open_loans": rng.poisson(3, len(defaulted)),
        "amount": np.round(defaulted["amount"].to_numpy() * 1.1, -1),
    })
    bureau = pd.concat([bureau, collections], ignore_index=True).sort_values(
        ["applicant_id", "reported_at"], kind="stable").reset_index(drop=True)

    # payments: 0-20 instalments of earlier loans per applicant; riskier people pay later
    per = rng.integers(0, 21, applicants)
    owner = np.repeat(np.arange(applicants), per)
    late = rng.poisson(np.exp(1.0 * risk[owner]) * 2) * (rng.random(len(owner)) < 0.5)
    payments = pd.DataFrame({
        "applicant_id": ids[owner], "paid_at": _times(rng, len(owner), START, END),
        "amount": np.round(rng.lognormal(5.5, 0.5, len(owner)), 2), "days_late": late.astype(int),
    }).sort_values(["applicant_id", "paid_at"], kind="stable").reset_index(drop=True)
    return {"applications": applications, "bureau": bureau, "payments": payments, "outcomes": outcomes}


def write_loan_tables(folder: Path, applicants: int = 1500, seed: int = 0) -> dict[str, Path]:
    """Write applications.csv, bureau.parquet, payments.csv and outcomes.csv into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in generate_loans(applicants, seed).items():
        path = paths[name] = folder / (f"{name}.parquet" if name == "bureau" else f"{name}.csv")
        frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return paths


if __name__ == "__main__":     # python -m tabpipe.sources.loan_sample FOLDER
    for written in write_loan_tables(Path(sys.argv[1] if len(sys.argv) > 1 else "loans")).values():
        print(written)

"""The governance decision of one monitoring window: ``ok``, ``watch`` or ``retrain`` (pure, no I/O).

The most severe level among the rules that fired; a rule that cannot be checked is listed under
``not_checked``, so "ok" never hides "could not tell".
Design notes: docs/monitoring.md#the-governance-decision
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabpipe.config import RulesSection

LEVELS = ("ok", "watch", "retrain")


@dataclass(frozen=True, kw_only=True)
class Observations:
    """What a monitoring window measured. ``psi`` maps feature -> PSI (None = insufficient data)."""

    window: str
    rows: int
    roc_auc: float | None = None                 # realised, when outcomes exist
    estimated_roc_auc: float | None = None       # label-free estimate
    psi: dict[str, float | None] = field(default_factory=dict)
    drift_share: float | None = None
    drift_share_source: str = "evidently"
    domain_auc: float | None = None              # multivariate: the domain classifier's out-of-fold ROC-AUC
    domain_auc_threshold: float | None = None    # its no-shift threshold for this window's sizes
    domain_auc_note: str = "not measured"        # why there is no domain AUC
    concept_gap: float | None = None             # realised - estimated ROC-AUC on the labelled rows
    concept_gap_ci: tuple[float, float] | None = None
    concept_gap_note: str = "not measured"       # why there is no gap


@dataclass(frozen=True)
class Reason:
    """One rule that fired: what it saw, against which threshold, in which window."""

    rule: str
    level: str
    observed: float
    threshold: float
    window: str
    rows: int
    message: str
    feature: str | None = None

    def as_dict(self) -> dict:
        """The JSON form, as monitor.json and alerts carry it."""
        return {"rule": self.rule, "level": self.level, "observed": self.observed, "threshold": self.threshold,
                "window": self.window, "rows": self.rows, "feature": self.feature, "message": self.message}


@dataclass(frozen=True)
class Decision:
    """The window's level (ok | watch | retrain), the rules that fired and those that could not be checked."""

    decision: str
    reasons: tuple[Reason, ...]
    not_checked: tuple[str, ...]

    def as_dict(self) -> dict:
        """The JSON form: decision, reasons, rules not checked."""
        return {"decision": self.decision, "reasons": [r.as_dict() for r in self.reasons],
                "not_checked": list(self.not_checked)}


def _known(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def decide(obs: Observations, rules: RulesSection) -> Decision:
    """Apply ``rules`` to ``obs``; reasons are ordered most severe first, then by rule."""
    reasons: list[Reason] = []
    skipped: list[str] = []

    def fire(rule: str, level: str, observed: float, threshold: float, what: str, feature: str | None = None) -> None:
        reasons.append(Reason(rule, level, float(observed), float(threshold), obs.window, obs.rows,
                              f"{what} (window {obs.window}, {obs.rows} rows)", feature))

    auc, source = (obs.roc_auc, "realised") if _known(obs.roc_auc) else (obs.estimated_roc_auc, "estimated")
    if not _known(auc):
        skipped.append("roc_auc_below: no ROC-AUC for this window (no outcomes and no estimate)")
    elif auc < rules.retrain_roc_auc_below:
        fire("roc_auc_below", "retrain", auc, rules.retrain_roc_auc_below,
             f"{source} ROC-AUC {auc:.4f} < {rules.retrain_roc_auc_below}")

    known_psi = {name: v for name, v in obs.psi.items() if _known(v)}
    if not known_psi:
        skipped.append("psi: no feature has enough rows in the window for a PSI" if obs.psi
                       else "psi: no feature was binned")
    else:
        for name, value in sorted(known_psi.items(), key=lambda kv: (-kv[1], kv[0])):
            if value >= rules.retrain_psi_at_least:
                fire("psi_retrain", "retrain", value, rules.retrain_psi_at_least,
                     f"PSI of {name} = {value:.4f} >= {rules.retrain_psi_at_least}", name)
            elif value >= rules.watch_psi_at_least:
                fire("psi_watch", "watch", value, rules.watch_psi_at_least,
                     f"PSI of {name} = {value:.4f} >= {rules.watch_psi_at_least}", name)
        missing = sorted(set(obs.psi) - set(known_psi))
        if missing:
            skipped.append(f"psi: insufficient data for {', '.join(missing)}")

    if not _known(obs.drift_share):
        skipped.append("drift_share: no drift share for this window")
    elif obs.drift_share >= rules.retrain_drift_share_at_least:
        fire("drift_share", "retrain", obs.drift_share, rules.retrain_drift_share_at_least,
             f"drift share ({obs.drift_share_source}) {obs.drift_share:.2f} >= {rules.retrain_drift_share_at_least}")

    if not (_known(obs.domain_auc) and _known(obs.domain_auc_threshold)):
        skipped.append(f"domain_auc: {obs.domain_auc_note}")
    elif obs.domain_auc > rules.retrain_domain_auc_above:
        fire("domain_auc_retrain", "retrain", obs.domain_auc, rules.retrain_domain_auc_above,
             f"multivariate drift: domain classifier ROC-AUC {obs.domain_auc:.4f} > {rules.retrain_domain_auc_above} "
             "(reference rows and window rows are told apart)")
    elif obs.domain_auc > obs.domain_auc_threshold:
        fire("domain_auc_watch", "watch", obs.domain_auc, obs.domain_auc_threshold,
             f"multivariate drift: domain classifier ROC-AUC {obs.domain_auc:.4f} > {obs.domain_auc_threshold:.4f} "
             "(no-shift threshold: the features' joint distribution moved)")

    if not (_known(obs.concept_gap) and obs.concept_gap_ci is not None):
        skipped.append(f"concept_gap: {obs.concept_gap_note}")
    else:
        low, high = obs.concept_gap_ci
        size = abs(obs.concept_gap)
        level = ("retrain" if size >= rules.retrain_concept_gap_at_least else
                 "watch" if size >= rules.watch_concept_gap_at_least else None)
        if level is not None and (low > 0 or high < 0):
            limit = rules.retrain_concept_gap_at_least if level == "retrain" else rules.watch_concept_gap_at_least
            fire(f"concept_gap_{level}", level, obs.concept_gap, limit,
                 f"concept drift: realised - estimated ROC-AUC = {obs.concept_gap:+.4f} (interval {low:+.4f} .. "
                 f"{high:+.4f}, excludes 0), |gap| >= {limit}: outcomes no longer follow the model's probabilities")

    reasons.sort(key=lambda r: -LEVELS.index(r.level))  # stable: rule order kept within a level
    level = max((LEVELS.index(r.level) for r in reasons), default=0)
    return Decision(LEVELS[level], tuple(reasons), tuple(skipped))

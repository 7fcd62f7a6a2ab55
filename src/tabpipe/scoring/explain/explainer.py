"""Per-row reasons: the model's raw score logit as a base value plus one additive contribution per input column.

"The model's logit" is ``logit(p)`` of the raw model output ``p`` (P(class 1) before any calibration), and
``base + sum(contributions) == logit`` for every row (to 1e-6, tested on 10k rows):

- one logistic-link estimator (logistic regression, ``SplineLogisticRegression``, histogram gradient boosting):
  ``logit(p)`` is the estimator's own logit and the contributions are its exact terms (``members``);
- an average of probabilities (``LinearBoostingBlend``, ``WeightedMean``, forests): log-odds do not add up over
  members, so each member's contributions are rescaled by the secant of the sigmoid and of the logit between
  the base and the row (the "rescale rule" of DeepLIFT, exact by construction). With member outputs ``v_j``
  (logit, or probability for a forest) = ``b_j + sum_i phi_ji``, shares ``c_j`` and ``P(v)`` the member's
  probability:

      base = logit(sum_j c_j P(b_j)),
      contribution_i = k * sum_j c_j * (P(v_j) - P(b_j)) / (v_j - b_j) * phi_ji,
      k = (logit(p) - base) / sum_j c_j (P(v_j) - P(b_j)),

  so the contributions add up to ``logit(p) - base`` exactly; where a difference vanishes the secant is the
  derivative. A probability of exactly 0 or 1 (possible for forests) counts as ``1e-15`` from it.

Contributions per preprocessed feature are summed back to the user's column (one-hot levels, missing-value
indicators, spline terms, datetime parts: ``columns``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from tabpipe.scoring.explain.columns import column_matrix
from tabpipe.scoring.explain.members import Member, NotExplainable, members, read, tree_shap

OF = "raw score logit"
EDGE = 1e-15          # a probability of 0 or 1 is taken this far from it
TINY = 1e-12          # a member output difference below this uses the derivative instead of the secant


@dataclass(frozen=True)
class Reasons:
    """Rows' explanations: ``logit`` (n,) = ``base`` + ``contributions`` (n, columns).sum(1)."""

    base: float
    contributions: np.ndarray
    logit: np.ndarray
    columns: list[str]

    def top(self, k: int) -> np.ndarray:
        """(n, min(k, columns)) the column indices of each row's ``k`` largest |contributions|, largest first
        (equal ones in column order)."""
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")
        return order[:, :min(k, len(self.columns))]

    def entries(self, k: int, values: list[dict] | None = None) -> list[dict]:
        """Per row ``{of, base, logit, contributions: [{column, value, contribution}] (the top k), rest}``;
        ``rest`` sums the other columns' contributions, so base + the listed ones + rest = logit. ``values``:
        per row the record as sent, for each column's ``value`` (omitted without it)."""
        top = self.top(k)
        out = []
        for i, picked in enumerate(top.tolist()):
            row = self.contributions[i]
            shown = [{"column": self.columns[j], **({"value": values[i].get(self.columns[j])} if values else {}),
                      "contribution": float(row[j])} for j in picked]
            out.append({"of": OF, "base": self.base, "logit": float(self.logit[i]), "contributions": shown,
                        "rest": float(row.sum() - row[picked].sum())})
        return out

    def table(self, k: int, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
        """The reasons as columns of an ``n``-row table whose rows ``rows`` (indices) were explained, in order:
        ``reason_base``, ``reason_logit`` and per rank i = 1..k ``reason_i_column``, ``reason_i_contribution``
        (null for a row not explained)."""
        top = self.top(k)
        base, logit = np.full(n, np.nan), np.full(n, np.nan)
        base[rows], logit[rows] = self.base, self.logit
        out = {"reason_base": base, "reason_logit": logit}
        names = np.array(self.columns, dtype=object)
        for i in range(top.shape[1]):
            column, contribution = np.full(n, None, dtype=object), np.full(n, np.nan)
            column[rows] = names[top[:, i]]
            contribution[rows] = np.take_along_axis(self.contributions, top[:, i:i + 1], axis=1)[:, 0]
            out[f"reason_{i + 1}_column"], out[f"reason_{i + 1}_contribution"] = column, contribution
        return out


class Explainer:
    """``explain(X)``: the ``Reasons`` of preprocessed rows for a fitted ``TabularModel``; ``NotExplainable``
    on creation when its estimator is of a kind not explained."""

    def __init__(self, model):
        width = len(model.preprocessor.get_feature_names_out())
        means = getattr(model, "feature_means", None)
        means = np.zeros(width) if means is None else np.asarray(means, dtype=np.float64)
        self.members: list[Member] = members(model.estimator, means)
        self.trees = tree_shap(self.members, width)
        self.columns = list(model.schema.features)
        self.to_columns = column_matrix(model.preprocessor, self.columns).toarray()
        self.single = len(self.members) == 1 and self.members[0].logit and self.members[0].weight == 1.0
        self.base = self.members[0].base if self.single else _base(self.members)

    def empty_table(self, k: int) -> dict[str, np.ndarray]:
        """``Reasons.table`` of no rows."""
        return Reasons(self.base, np.zeros((0, len(self.columns))), np.zeros(0), self.columns).table(k, np.zeros(0, int), 0)

    def explain(self, X: np.ndarray) -> Reasons:
        """The reasons of the preprocessed rows ``X`` (n, features out)."""
        X = np.asarray(X, dtype=np.float64)
        parts = [m.explain(X) for m in self.members]
        if self.trees is not None:
            tree_phi, tree_sums = self.trees(read(X, self.trees))
            for j, (phi, output) in enumerate(parts):
                phi += tree_phi[:, j]
                output += tree_sums[:, j]
        if self.single:
            phi = parts[0][0]
            logit = self.base + phi.sum(axis=1)
        else:
            outputs = np.column_stack([output for _, output in parts])
            phi = _rescaled(self.members, [p for p, _ in parts], outputs, self.base)
            logit = _logit_of(self.members, outputs)
        return Reasons(float(self.base), phi @ self.to_columns, logit, self.columns)


def _probabilities(members: list[Member], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(class 1), 1 - P(class 1)) of the average, from member outputs ``values`` (n, members), computed
    apart so that neither loses digits near 0 or 1."""
    is_logit = np.array([m.logit for m in members])
    c = np.array([m.weight for m in members])
    p = np.where(is_logit, expit(values), values)
    q = np.where(is_logit, expit(-values), 1.0 - values)
    return p @ c, q @ c


def _logit_of(members: list[Member], values: np.ndarray) -> np.ndarray:
    p, q = _probabilities(members, values)
    return np.log(np.maximum(p, EDGE)) - np.log(np.maximum(q, EDGE))


def _base(members: list[Member]) -> float:
    return float(_logit_of(members, np.array([[m.base for m in members]]))[0])


def _rescaled(members: list[Member], phis: list[np.ndarray], values: np.ndarray, base: float) -> np.ndarray:
    """(n, F) contributions to the average's logit: each member's rescaled by its secant (module docstring).
    ``values``: (n, members) the members' outputs."""
    bases = np.array([m.base for m in members])
    sums = np.column_stack([p.sum(axis=1) for p in phis])                 # v_j - b_j, as the contributions add up
    is_logit = np.array([m.logit for m in members])
    c = np.array([m.weight for m in members])
    moved = np.where(is_logit, expit(values) - expit(bases), values - bases) * c      # c_j (P(v_j) - P(b_j))
    slope_at_base = np.where(is_logit, expit(bases) * expit(-bases), 1.0) * c
    small = np.abs(sums) < TINY
    slope = np.where(small, slope_at_base, moved / np.where(small, 1.0, sums))
    change = (slope * sums).sum(axis=1)                                    # ~ p - p(base)
    p, q = _probabilities(members, values)
    logit = np.log(np.maximum(p, EDGE)) - np.log(np.maximum(q, EDGE))
    # members that cancel in probability: the secant of the logit is noise there, its derivative is not
    flat = np.abs(change) <= 1e-9 * np.abs(slope * sums).sum(axis=1) + 1e-300
    k = np.where(flat, 1.0 / np.maximum(p * q, EDGE), (logit - base) / np.where(flat, 1.0, change))
    phi = np.zeros_like(phis[0])
    for j, part in enumerate(phis):
        phi += (k * slope[:, j])[:, None] * part
    return phi


_EXPLAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def explainer_for(model) -> Explainer:
    """The model's ``Explainer``, built once per fitted estimator, preprocessing and means (``NotExplainable``
    each time if it cannot be)."""
    made = _EXPLAINERS.get(model.estimator)
    if made is None or made[0] is not model.preprocessor or made[1] is not model.feature_means:
        made = _EXPLAINERS[model.estimator] = (model.preprocessor, model.feature_means, Explainer(model))
    return made[2]


__all__ = ["OF", "Explainer", "NotExplainable", "Reasons", "explainer_for"]

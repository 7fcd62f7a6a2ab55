"""A fitted binary estimator as the members whose probabilities it averages, each with exact additive
contributions per preprocessed feature in its own output space.

- a logistic regression: its logit, ``w_j (x_j - mean_j)`` per feature, base ``b + w . mean`` (``mean``: the
  training rows' mean, ``TabularModel.feature_means``; zeros for a model saved without it);
- ``SplineLogisticRegression``: the same, plus each splined column's curve minus its mean over the rows the
  model was fitted on (``basis_means_``; for a model fitted before that attribute: the curve at ``mean``);
- ``HistGradientBoostingClassifier`` (numeric splits): its logit, path-dependent Tree SHAP on its trees
  (cover = the training rows each node saw), base = baseline + the trees' expected value;
- random forest / extra trees: their probability, Tree SHAP of the averaged trees (cover = weighted samples);
- ``LinearBoostingBlend`` and ``WeightedMean`` (nested too): their members, each with its share of the
  probability.

Anything else raises ``NotExplainable``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabpipe.scoring.compiled.trees import hist_gradient_boosting_trees, sklearn_trees
from tabpipe.scoring.explain.treeshap import PathDependentShap


class NotExplainable(Exception):
    """The estimator (or a member of it) is of a kind whose contributions tabpipe does not compute."""


@dataclass
class Member:
    """One averaged member: P(class 1) share ``weight``; ``logit`` True when its output is a logit (else a
    probability). ``explain(X)`` -> (base, (n, F) contributions): output = base + contributions.sum(1)."""

    weight: float
    logit: bool
    base: float
    intercept: float = 0.0                  # the output of a row of zeros but for the trees
    linear: np.ndarray | None = None        # (F,) weights
    reference: np.ndarray | None = None     # (F,) the point the linear terms are centred on
    spline: object = None                   # a fitted SplineLogisticRegression with spline columns
    spline_means: np.ndarray | None = None  # (splined columns,) mean of each curve (its centre)
    trees: PathDependentShap | None = None
    float32_trees: bool = False              # scikit-learn's trees compare float32-rounded inputs

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, F) contributions of the preprocessed rows ``X`` (n, F), and (n,) the member's output computed
        directly (equal to base + contributions to rounding)."""
        phi = np.zeros(X.shape)
        output = np.full(len(X), self.intercept)
        if self.linear is not None:
            phi += (X - self.reference) * self.linear
            output += X @ self.linear
        if self.spline is not None:
            curves = _curves(self.spline, X)
            phi[:, self.spline.spline_columns_] += curves - self.spline_means
            output += curves.sum(axis=1)
        if self.trees is not None:
            tree_phi, tree_sum = self.trees(X.astype(np.float32).astype(np.float64) if self.float32_trees else X)
            phi += tree_phi
            output += tree_sum
        return phi, output


def _curves(est, X: np.ndarray) -> np.ndarray:
    """(n, splined columns): each splined column's spline term of ``est``'s logit."""
    width = est.n_features_in_
    n_columns = len(est.spline_columns_)
    basis = est.splines_.transform(X[:, est.spline_columns_]).reshape(len(X), n_columns, -1)
    coef = est.linear_.coef_[0][width:].astype(np.float64).reshape(n_columns, -1)
    return np.einsum("ncs,cs->nc", basis, coef)


def _logistic(est, weight, means, out):
    if est.coef_.shape[0] != 1:
        raise NotExplainable("a multinomial logistic regression")
    w = est.coef_[0].astype(np.float64)
    out.append(Member(weight, True, float(est.intercept_[0]) + float(w @ means), float(est.intercept_[0]), linear=w,
                      reference=means))


def _spline_logistic(est, weight, means, out):
    width = est.n_features_in_
    w = est.linear_.coef_[0][:width].astype(np.float64)
    member = Member(weight, True, float(est.linear_.intercept_[0]) + float(w @ means), float(est.linear_.intercept_[0]),
                    linear=w, reference=means)
    if est.splines_ is not None:
        basis_means = getattr(est, "basis_means_", None)
        if basis_means is not None:
            coef = est.linear_.coef_[0][width:].astype(np.float64).reshape(len(est.spline_columns_), -1)
            centres = (basis_means.reshape(coef.shape) * coef).sum(axis=1)
        else:
            centres = _curves(est, means[None, :])[0]
        member.spline, member.spline_means = est, centres
        member.base += float(centres.sum())
    out.append(member)


def _tree_shap(trees, covers, n_features: int) -> PathDependentShap:
    return PathDependentShap(list(zip(trees, covers)), n_features)


def _hist_gradient_boosting(est, weight, means, out):
    if est.n_trees_per_iteration_ != 1 or est.loss != "log_loss" or getattr(est, "_preprocessor", None) is not None:
        raise NotExplainable("a histogram gradient boosting model with categorical features or several classes")
    from tabpipe.scoring.compiled.errors import NotCompilable

    try:
        trees = hist_gradient_boosting_trees(est)
    except NotCompilable as exc:
        raise NotExplainable(f"a histogram gradient boosting model with {exc}") from None
    shap = _tree_shap(trees, [p[0].nodes["count"] for p in est._predictors], est.n_features_in_)
    baseline = float(np.ravel(est._baseline_prediction)[0])
    out.append(Member(weight, True, baseline + shap.expected, baseline, trees=shap))


def _forest(est, weight, means, out):
    if est.n_outputs_ != 1:
        raise NotExplainable("a multi-output forest")
    trees = sklearn_trees(est, 0, 1.0 / len(est.estimators_))
    shap = _tree_shap(trees, [t.tree_.weighted_n_node_samples for t in est.estimators_], est.n_features_in_)
    out.append(Member(weight, False, shap.expected, trees=shap, float32_trees=True))


def _blend(est, weight, means, out):
    share = float(est.linear_weight)
    members(est.linear_, means, weight * share, out)
    members(est.boosting_, means, weight * (1.0 - share), out)


def _weighted_mean(est, weight, means, out):
    for w, member in zip(est.weights_, est.estimators_):
        members(member, means, weight * float(w), out)


EXPLAINERS = {
    "LogisticRegression": _logistic,
    "SplineLogisticRegression": _spline_logistic,
    "HistGradientBoostingClassifier": _hist_gradient_boosting,
    "RandomForestClassifier": _forest,
    "ExtraTreesClassifier": _forest,
    "LinearBoostingBlend": _blend,
    "WeightedMean": _weighted_mean,
}


def members(est, means: np.ndarray, weight: float = 1.0, out: list | None = None) -> list[Member]:
    """The averaged members of the fitted binary ``est`` (classes 0 and 1); ``means``: (F,) the training rows'
    mean preprocessed row. ``NotExplainable`` names the part that is not explained."""
    out = [] if out is None else out
    name = type(est).__name__
    if name not in EXPLAINERS:
        raise NotExplainable(f"{name} is not one of the estimators explained ({', '.join(EXPLAINERS)})")
    if list(getattr(est, "classes_", [])) != [0, 1]:
        raise NotExplainable(f"{name} was not fitted on the classes 0 and 1")
    if weight > 0:
        EXPLAINERS[name](est, weight, means, out)
    return out

"""A fitted binary estimator as the members whose probabilities it averages, each with exact additive
contributions per preprocessed feature in its own output space.

- a logistic regression: its logit, ``w_j (x_j - mean_j)`` per feature, base ``b + w . mean`` (``mean``: the
  training rows' mean, ``TabularModel.feature_means``; zeros for a model saved without it);
- ``SplineLogisticRegression``: the same, plus each splined column's curve minus its mean over the rows the
  model was fitted on (``basis_means_``; for a model fitted before that attribute: the curve at ``mean``);
- ``HistGradientBoostingClassifier`` (numeric splits): its logit, path-dependent Tree SHAP on its trees
  (cover = the training rows each node saw), base = baseline + the trees' expected value (the trees of all
  members are explained in one pass: ``tree_shap``);
- random forest / extra trees: their probability, Tree SHAP of the averaged trees (cover = weighted samples);
- ``LinearBoostingBlend`` and ``WeightedMean`` (nested too): their members, each with its share of the
  probability.

Anything else raises ``NotExplainable``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tabpipe.scoring.compiled.errors import NotCompilable
from tabpipe.scoring.compiled.linear import _POWERS, SplineCurves
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
    curves: SplineCurves | None = None      # its curves as piecewise cubics (``compiled.linear``), if they compile
    spline_means: np.ndarray | None = None  # (splined columns,) mean of each curve (its centre)
    trees: list = field(default_factory=list)   # (Tree, cover per node): explained together (``tree_shap``)

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, F) contributions of the preprocessed rows ``X`` (n, F) but for the trees', and (n,) the member's
        output computed directly, but for its trees' sum."""
        phi = np.zeros(X.shape)
        output = np.full(len(X), self.intercept)
        if self.linear is not None:
            phi += (X - self.reference) * self.linear
            output += X @ self.linear
        if self.spline is not None:
            curves = _curves(self.spline, X, self.curves)
            phi[:, self.spline.spline_columns_] += curves - self.spline_means
            output += curves.sum(axis=1)
        return phi, output


def tree_shap(members: list[Member], n_features: int) -> PathDependentShap | None:
    """The trees of all ``members`` in one ``PathDependentShap`` (member j's values in its column j), whose
    expected values are added to the members' bases here; None without trees. A forest's trees read the
    float32-rounded copy of the row, at columns ``n_features`` and beyond (``read``)."""
    trees = [(tree, cover, j) for j, m in enumerate(members) for tree, cover in m.trees]
    if not trees:
        return None
    shap = PathDependentShap(trees, n_features, len(members))
    for m, expected in zip(members, shap.expected):
        m.base += float(expected)
    return shap


def read(X: np.ndarray, shap: PathDependentShap) -> np.ndarray:
    """The rows as the trees read them: ``X``, then its float32-rounded copy when a tree reads it."""
    if shap.edge_feature.max() < X.shape[1]:
        return X
    return np.hstack([X, X.astype(np.float32).astype(np.float64)])


def _curves(est, X: np.ndarray, cubics: SplineCurves | None = None) -> np.ndarray:
    """(n, splined columns): each splined column's spline term of ``est``'s logit; ``cubics``: the curves as the
    compiled scorer's piecewise cubics (all columns at once), else the fitted basis is evaluated."""
    if cubics is not None:
        v = X[:, cubics.columns]                                                  # (n, columns)
        at = (cubics.breaks <= v[..., None]).sum(axis=2) + cubics.offsets         # each value's interval
        return (cubics.coefs[at] * (v - cubics.origins[at])[..., None] ** _POWERS).sum(axis=2)
    width = est.n_features_in_
    n_columns = len(est.spline_columns_)
    basis = est.splines_.transform(X[:, est.spline_columns_]).reshape(len(X), n_columns, -1)
    coef = est.linear_.coef_[0][width:].astype(np.float64).reshape(n_columns, -1)
    return np.einsum("ncs,cs->nc", basis, coef)


def _cubics(est) -> SplineCurves | None:
    """The splined columns' fitted curves as piecewise cubics, or None if they do not compile."""
    try:
        return SplineCurves([(0, est)], 1)
    except NotCompilable:
        return None


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
        member.spline, member.spline_means, member.curves = est, centres, _cubics(est)
        member.base += float(centres.sum())
    out.append(member)


def _hist_gradient_boosting(est, weight, means, out):
    if est.n_trees_per_iteration_ != 1 or est.loss != "log_loss" or getattr(est, "_preprocessor", None) is not None:
        raise NotExplainable("a histogram gradient boosting model with categorical features or several classes")
    try:
        trees = hist_gradient_boosting_trees(est)
    except NotCompilable as exc:
        raise NotExplainable(f"a histogram gradient boosting model with {exc}") from None
    baseline = float(np.ravel(est._baseline_prediction)[0])
    out.append(Member(weight, True, baseline, baseline,
                      trees=list(zip(trees, [p[0].nodes["count"] for p in est._predictors]))))


def _forest(est, weight, means, out):
    if est.n_outputs_ != 1:
        raise NotExplainable("a multi-output forest")
    trees = sklearn_trees(est, est.n_features_in_, 1.0 / len(est.estimators_))    # they read the float32 copy
    out.append(Member(weight, False, 0.0, trees=list(zip(trees, [t.tree_.weighted_n_node_samples
                                                                for t in est.estimators_]))))


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

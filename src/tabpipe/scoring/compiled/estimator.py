"""A fitted binary estimator as one compiled formula: P = sum_j c_j * sigmoid(s_j * z_j) + direct.

Each logistic-link member (logistic regression, ``SplineLogisticRegression``, histogram gradient boosting,
LightGBM) is one logit ``z_j`` = its linear part + its splines + the sum of its trees' leaf values; forests
add their averaged leaf probabilities to ``direct``. ``LinearBoostingBlend`` and ``WeightedMean`` (nested
too) only scale their members' weights ``c_j``, so an ensemble costs one matrix product, one spline
evaluation and one pass over all its trees, whatever its number of members.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from tabpipe.scoring.compiled.errors import NotCompilable
from tabpipe.scoring.compiled.linear import SplineCurves
from tabpipe.scoring.compiled.trees import Tree, TreeSums, hist_gradient_boosting_trees, lightgbm_trees, sklearn_trees


@dataclass
class _Logit:
    weight: float                       # c_j: the member's share of the probability
    scale: float = 1.0                  # s_j: LightGBM's sigmoid parameter
    intercept: float = 0.0
    linear: np.ndarray | None = None    # (n_features,) weights
    spline: object = None               # a fitted SplineLogisticRegression with spline columns


@dataclass
class _Parts:
    """What the members add up to, gathered while walking the estimator."""

    logits: list[_Logit] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)    # per tree: its logit, or -1 for ``direct``
    float32_trees: bool = False                        # some trees read the float32-rounded row

    def add_trees(self, trees: list[Tree], slot: int) -> None:
        self.trees += trees
        self.slots += [slot] * len(trees)


def _logistic(est, weight: float, parts: _Parts) -> bool:
    if est.coef_.shape[0] != 1:
        return False
    parts.logits.append(_Logit(weight, intercept=float(est.intercept_[0]), linear=est.coef_[0].astype(np.float64)))
    return True


def _spline_logistic(est, weight: float, parts: _Parts) -> bool:
    width = est.n_features_in_
    parts.logits.append(_Logit(weight, intercept=float(est.linear_.intercept_[0]),
                               linear=est.linear_.coef_[0][:width].astype(np.float64),
                               spline=est if est.splines_ is not None else None))
    return True


def _forest(est, weight: float, parts: _Parts) -> bool:
    if est.n_outputs_ != 1:
        return False
    parts.add_trees(sklearn_trees(est, est.n_features_in_, weight / len(est.estimators_)), -1)
    parts.float32_trees = True
    return True


def _hist_gradient_boosting(est, weight: float, parts: _Parts) -> bool:
    if est.n_trees_per_iteration_ != 1 or est.loss != "log_loss" or getattr(est, "_preprocessor", None) is not None:
        return False
    trees = hist_gradient_boosting_trees(est)
    parts.logits.append(_Logit(weight, intercept=float(np.ravel(est._baseline_prediction)[0])))
    parts.add_trees(trees, len(parts.logits) - 1)
    return True


def _lightgbm(est, weight: float, parts: _Parts) -> bool:
    if getattr(est, "n_classes_", 0) != 2:
        return False
    dump = est.booster_.dump_model()
    objective = dump.get("objective", "").split()
    if not objective or objective[0] != "binary" or dump.get("num_tree_per_iteration", 1) != 1:
        raise NotCompilable(f"objective {dump.get('objective')!r}")
    if dump.get("average_output"):   # boosting_type: rf averages its trees
        raise NotCompilable("averaged trees")
    sigmoid = next((float(o.split(":", 1)[1]) for o in objective[1:] if o.startswith("sigmoid:")), 1.0)
    trees = lightgbm_trees(dump)     # LightGBM folds its initial score into the first tree's leaves
    parts.logits.append(_Logit(weight, scale=sigmoid))
    parts.add_trees(trees, len(parts.logits) - 1)
    return True


def _blend(est, weight: float, parts: _Parts) -> bool:
    share = float(est.linear_weight)
    return _collect(est.linear_, weight * share, parts) and _collect(est.boosting_, weight * (1.0 - share), parts)


def _weighted_mean(est, weight: float, parts: _Parts) -> bool:
    return all(_collect(m, weight * float(w), parts) for w, m in zip(est.weights_, est.estimators_))


# (test on the fitted estimator, what it adds): the first whose test passes compiles it
COMPILERS = [
    (lambda est: type(est).__name__ == "LogisticRegression", _logistic),
    (lambda est: type(est).__name__ == "SplineLogisticRegression", _spline_logistic),
    (lambda est: type(est).__name__ in ("RandomForestClassifier", "ExtraTreesClassifier"), _forest),
    (lambda est: type(est).__name__ == "HistGradientBoostingClassifier", _hist_gradient_boosting),
    (lambda est: type(est).__name__ == "LGBMClassifier", _lightgbm),
    (lambda est: type(est).__name__ == "LinearBoostingBlend", _blend),
    (lambda est: type(est).__name__ == "WeightedMean", _weighted_mean),
]


def _collect(est, weight: float, parts: _Parts) -> bool:
    """Adds ``est``'s terms, scaled by ``weight``, to ``parts``; False if it (or a member) is not compiled."""
    if list(getattr(est, "classes_", [])) != [0, 1]:
        return False
    for test, compile_terms in COMPILERS:
        if test(est):
            try:
                return compile_terms(est, weight, parts)
            except NotCompilable:
                return False
    return False


class CompiledEstimator:
    """``__call__``: one preprocessed row (n_features,) -> P(class 1), equal to the estimator's ``predict_proba``."""

    def __init__(self, parts: _Parts, n_features: int):
        logits = parts.logits
        self.n_logits = n_logits = len(logits)
        self.weights = np.array([t.weight for t in logits], dtype=np.float64)
        self.scales = np.array([t.scale for t in logits], dtype=np.float64)
        self.unit_scales = bool((self.scales == 1.0).all())
        self.intercepts = np.array([t.intercept for t in logits], dtype=np.float64)
        linear = [j for j, t in enumerate(logits) if t.linear is not None]
        self.linear = None
        if linear:
            self.linear = np.zeros((n_features, n_logits))
            for j in linear:
                self.linear[:, j] = logits[j].linear
        # a linear member's own predict_proba refuses NaN: so does the compiled row (the estimator's path raises);
        # a NaN in the row makes every column of ``x @ linear`` NaN (0 * NaN is NaN), so one of them tells
        self.nan_witness = linear[0] if linear else None
        splined = [(j, t.spline) for j, t in enumerate(logits) if t.spline is not None]
        self.splines = SplineCurves(splined, n_logits) if splined else None
        slots = [n_logits if s < 0 else s for s in parts.slots]
        self.trees = TreeSums(parts.trees, slots, n_logits + 1) if parts.trees else None
        self.float32_trees = parts.float32_trees

    def __call__(self, x: np.ndarray) -> float:
        if self.linear is None:
            has_nan = math.isnan(x.sum())     # also for +inf and -inf together: the NaN-aware path is exact anyway
            z = self.intercepts
        else:
            z = x @ self.linear + self.intercepts
            if math.isnan(z[self.nan_witness]):
                raise NotCompilable("missing value")
            has_nan = False
        if self.splines is not None:
            z = z + self.splines(x)
        direct = 0.0
        if self.trees is not None:
            row = x
            if self.float32_trees:
                # a value beyond float32 rounds to +-inf and goes right (left) of every threshold, as the ordering
                # says; scikit-learn's own predict_proba refuses such a row, the compiled one scores it
                with np.errstate(over="ignore"):
                    rounded = x.astype(np.float32)
                row = np.concatenate([x, rounded])
            sums = self.trees(row, has_nan)
            z, direct = z + sums[:-1], sums[-1]
        if self.n_logits == 0:
            return float(direct)
        return float(self.weights @ expit(z if self.unit_scales else self.scales * z) + direct)


def compile_estimator(est) -> CompiledEstimator | None:
    """The compiled form of a fitted binary estimator (classes 0 and 1), or None if any part of it is not compiled."""
    parts = _Parts()
    if not _collect(est, 1.0, parts):
        return None
    return CompiledEstimator(parts, est.n_features_in_)

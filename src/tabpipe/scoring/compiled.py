"""Fast scoring of a few JSON records, without DataFrames or scikit-learn's per-call overhead.

``RecordScorer`` is compiled once from a fitted ``TabularModel``: ``check`` (the schema's rules, as
``Problem``s), ``vector`` (the fitted preprocessing), ``proba`` (compiled estimators, else their own
``predict_proba``); equal to ``TabularModel.predict_proba`` (tested).
Design notes: docs/serving.md#the-compiled-record-scorer
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn import config_context
from sklearn.pipeline import Pipeline

from tabpipe.model import TabularModel
from tabpipe.model.features import pseudonym
from tabpipe.schema import Problem, RecordChecker


class NotCompilable(Exception):
    """The fitted preprocessing has a shape this compiler does not know; use the model's own path."""


# ------------------------------------------------------------------ compiled preprocessing

class _NumericBlock:
    def __init__(self, pipe, columns):
        imputer, scaler = pipe.steps[0][1], pipe.steps[-1][1]
        if len(pipe.steps) != 2 or getattr(imputer, "strategy", None) not in ("median", "mean", "most_frequent"):
            raise NotCompilable("numeric block")
        stats = imputer.statistics_.astype(float)
        self.keep = [i for i, s in enumerate(stats) if not math.isnan(s)]
        self.columns, self.fill = columns, stats
        self.indicator = list(imputer.indicator_.features_) if imputer.add_indicator else []
        self.center = scaler.center_ if scaler.with_centering else 0.0
        self.scale = scaler.scale_ if scaler.with_scaling else 1.0

    def _raw(self, values: list) -> list:
        return [values[c] for c in self.columns]

    def __call__(self, values: list) -> np.ndarray:
        raw = self._raw(values)
        imputed = [self.fill[i] if raw[i] is None else raw[i] for i in self.keep]
        flags = [1.0 if raw[i] is None else 0.0 for i in self.indicator]
        return (np.array(imputed + flags) - self.center) / self.scale


class _DatetimeBlock(_NumericBlock):
    """Hour of day and day of week per datetime column, then the numeric imputation and scaling."""

    def _raw(self, values: list) -> list:
        parts = []
        for c in self.columns:
            dt: datetime | None = values[c]
            parts += [None, None] if dt is None else [float(dt.hour), float(dt.weekday())]
        return parts


class _OneHotBlock:
    def __init__(self, pipe, columns):
        imputer, encoder = pipe.steps[0][1], pipe.steps[-1][1]
        if len(pipe.steps) != 2 or encoder.drop is not None:
            raise NotCompilable("categorical block")
        self.columns, self.fill = columns, imputer.statistics_
        infrequent = encoder.infrequent_categories_ if getattr(encoder, "_infrequent_enabled", False) else [None] * len(columns)
        self.lookups, self.unknown, self.sizes = [], [], []
        for cats, rare in zip(encoder.categories_, infrequent):
            rare_set = set(rare) if rare is not None else set()
            frequent = [c for c in cats if c not in rare_set]
            lookup = {str(c): i for i, c in enumerate(frequent)}
            rare_pos = len(frequent) if rare_set else None
            lookup.update({str(c): rare_pos for c in rare_set})
            self.lookups.append(lookup)
            self.unknown.append(rare_pos if encoder.handle_unknown == "infrequent_if_exist" else None)
            self.sizes.append(len(frequent) + (1 if rare_set else 0))
        self.width = sum(self.sizes)

    def __call__(self, values: list) -> np.ndarray:
        out = np.zeros(self.width)
        offset = 0
        for col, fill, lookup, unknown, size in zip(self.columns, self.fill, self.lookups, self.unknown, self.sizes):
            value = values[col]
            pos = lookup.get(str(fill) if value is None else value, unknown)
            if pos is not None:
                out[offset + pos] = 1.0
            offset += size
        return out


class _PseudonymBlock(_OneHotBlock):
    """A ``sensitive: true`` categorical: the value's pseudonym (``preprocessing.pseudonym``), then one-hot."""

    def __init__(self, pipe, columns, names):
        super().__init__(Pipeline(pipe.steps[1:]), columns)   # step 0 is preprocessing.pseudonyms
        self.names = dict(zip(columns, names))

    def __call__(self, values: list) -> np.ndarray:
        hidden = list(values)
        for col in self.columns:
            if hidden[col] is not None:
                hidden[col] = pseudonym(self.names[col], hidden[col])
        return super().__call__(hidden)


BLOCKS = {
    "num": _NumericBlock,
    "cat": _OneHotBlock,
    "dt": lambda pipe, cols: _DatetimeBlock(Pipeline(pipe.steps[1:]), cols),  # step 0 is datetime_parts
}


def _compile_blocks(model: TabularModel, index: dict[str, int]) -> list:
    """One compiled block per fitted transformer of ``tabpipe.model.features.build_preprocessor``."""
    blocks = []
    for name, pipe, cols in model.preprocessor.transformers_:
        if name == "remainder" or pipe == "drop":
            continue
        columns = [index[c] for c in cols]
        if name == "pseud":
            blocks.append(_PseudonymBlock(pipe, columns, cols))
        elif name in BLOCKS:
            blocks.append(BLOCKS[name](pipe, columns))
        else:
            raise NotCompilable(f"unknown transformer {name!r}")
    return blocks


# ------------------------------------------------------------------ compiled estimators

class _Linear:
    def __init__(self, est):
        self.w, self.b = est.coef_[0].astype(float), float(est.intercept_[0])

    def __call__(self, x: np.ndarray) -> float:
        return float(expit(float(x @ self.w) + self.b))  # overflow-safe sigmoid


class _SplineLinear:
    """``tabpipe.model.estimators.SplineLogisticRegression``: the row's dot product with the linear weights plus,
    for each splined column, its fitted cubic spline (the basis weighted by the linear weights: one
    univariate function per column), evaluated for all columns at once by de Boor's algorithm; beyond
    the outer knots each continues along a line, exactly as SplineTransformer's linear extrapolation."""

    def __init__(self, est):
        from scipy.interpolate import BSpline

        width = est.n_features_in_
        self.linear = _Linear(est.linear_)
        self.linear.w = self.linear.w[:width]
        self.columns = est.spline_columns_
        if est.splines_ is None:
            self.knots = None
            return
        k = est.splines_.degree
        n_splines = est.splines_.bsplines_[0].c.shape[1]
        # float64, as predict_proba computes: float32 weights (a float32 fit) would round each de Boor step
        coef = est.linear_.coef_[0][width:].astype(np.float64).reshape(len(self.columns), n_splines)
        self.knots = np.vstack([b.t for b in est.splines_.bsplines_]).astype(np.float64)              # (columns, n_splines + k + 1)
        self.coef, self.k, self.rows = coef, k, np.arange(len(self.columns))[:, None]
        self.lo, self.hi = self.knots[:, k], self.knots[:, n_splines]
        # beyond an end only the k outermost basis functions continue (value + slope there), the others are 0
        ends = []
        for t, w, lo, hi in zip(self.knots, coef, self.lo, self.hi):
            basis = BSpline(t, np.eye(n_splines), k)
            ends.append([w[:k] @ basis(lo)[:k], w[:k] @ basis(lo, nu=1)[:k],
                         w[-k:] @ basis(hi)[-k:], w[-k:] @ basis(hi, nu=1)[-k:]])
        ends = np.array(ends)
        self.at_lo, self.at_hi = ends[:, :2], ends[:, 2:]

    def _curves(self, v: np.ndarray) -> float:
        k, t = self.k, self.knots
        inside = np.clip(v, self.lo, self.hi)
        # knot interval of each value: t[i] <= v < t[i + 1], within the spline's base intervals
        i = np.clip((t <= inside[:, None]).sum(axis=1) - 1, k, self.coef.shape[1] - 1)[:, None]
        d = self.coef[self.rows, i - k + np.arange(k + 1)]                          # (columns, k + 1)
        for r in range(1, k + 1):
            j = np.arange(k, r - 1, -1)
            left, right = t[self.rows, i + j - k], t[self.rows, i + 1 + j - r]
            span = right - left
            alpha = np.divide(inside[:, None] - left, span, out=np.zeros_like(span), where=span > 0)
            d[:, j] = (1.0 - alpha) * d[:, j - 1] + alpha * d[:, j]
        value = d[:, k]
        value = np.where(v < self.lo, self.at_lo[:, 0] + (v - self.lo) * self.at_lo[:, 1], value)
        value = np.where(v > self.hi, self.at_hi[:, 0] + (v - self.hi) * self.at_hi[:, 1], value)
        return float(value.sum())

    def __call__(self, x: np.ndarray) -> float:
        z = float(x @ self.linear.w) + self.linear.b
        if self.knots is not None:
            z += self._curves(x[self.columns])
        return float(expit(z))


class _Forest:
    """All trees traversed together: one numpy step per depth level instead of one call per tree.

    Leaves point to themselves with an infinite threshold, so every tree can take ``max_depth``
    steps without masking; children are stored as (node, 2) for a single gather per step.
    """

    def __init__(self, est):
        trees = [t.tree_ for t in est.estimators_]
        offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]])
        self.roots = offsets.astype(np.intp)
        left = np.concatenate([t.children_left for t in trees]).astype(np.intp)
        right = np.concatenate([t.children_right for t in trees]).astype(np.intp)
        own = np.arange(len(left), dtype=np.intp)
        shift = np.repeat(offsets, [t.node_count for t in trees])
        leaf = left < 0
        self.children = np.column_stack([np.where(leaf, own, left + shift), np.where(leaf, own, right + shift)])
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        self.threshold = np.where(leaf, np.inf, np.concatenate([t.threshold for t in trees]))
        values = np.concatenate([t.value.reshape(t.node_count, -1) for t in trees])
        self.leaf_proba = values[:, 1] / np.maximum(values.sum(axis=1), 1e-300)
        self.max_depth = max(t.max_depth for t in trees)

    def __call__(self, x: np.ndarray) -> float:
        x = x.astype(np.float32).astype(np.float64)   # sklearn trees compare float32 inputs
        nodes = self.roots
        for _ in range(self.max_depth):
            nodes = self.children[nodes, (x[self.feature[nodes]] > self.threshold[nodes]).view(np.int8)]
        return float(self.leaf_proba[nodes].mean())


class _Boosting(_Forest):
    """HistGradientBoosting (binary log-loss, numeric splits): the same lock-step walk over all trees,
    raw score = baseline + sum of leaf values, probability = sigmoid(raw). HGB compares float64 inputs."""

    def __init__(self, est):  # the parent's __init__ reads sklearn trees; HGB nodes are built here
        nodes = [p.nodes for (p,) in est._predictors]
        if any(n["is_categorical"].any() for n in nodes):
            raise NotCompilable("categorical splits")
        sizes = [len(n) for n in nodes]
        offsets = np.cumsum([0] + sizes[:-1])
        self.roots = offsets.astype(np.intp)
        flat = np.concatenate(nodes)
        shift = np.repeat(offsets, sizes)
        own = np.arange(len(flat), dtype=np.intp)
        leaf = flat["is_leaf"].astype(bool)
        self.children = np.column_stack([np.where(leaf, own, flat["left"] + shift), np.where(leaf, own, flat["right"] + shift)])
        self.feature = np.where(leaf, 0, flat["feature_idx"]).astype(np.intp)
        self.threshold = np.where(leaf, np.inf, flat["num_threshold"])
        self.leaf_value = flat["value"]
        self.baseline = float(np.ravel(est._baseline_prediction)[0])
        self.max_depth = int(flat["depth"].max())

    sigmoid = 1.0   # raw score scale of the logistic link (LightGBM's sigmoid parameter)

    def __call__(self, x: np.ndarray) -> float:
        if np.isnan(x).any():  # missing-value routing is the estimator's own business
            raise NotCompilable("missing value")
        nodes = self.roots
        for _ in range(self.max_depth):
            nodes = self.children[nodes, (x[self.feature[nodes]] > self.threshold[nodes]).view(np.int8)]
        return float(expit(self.sigmoid * (self.baseline + self.leaf_value[nodes].sum())))


class _LightGBM(_Boosting):
    """LightGBM (binary objective, numeric splits) from ``booster_.dump_model()``: the same walk, left when
    ``x <= threshold`` (as doubles), probability = sigmoid(sigmoid_param * sum of leaf values)."""

    def __init__(self, est):  # nodes come from LightGBM's JSON dump, not scikit-learn's arrays
        dump = est.booster_.dump_model()
        objective = dump.get("objective", "").split()
        if not objective or objective[0] != "binary" or dump.get("num_tree_per_iteration", 1) != 1:
            raise NotCompilable(f"objective {dump.get('objective')!r}")
        if dump.get("average_output"):   # boosting_type: rf averages its trees
            raise NotCompilable("averaged trees")
        self.sigmoid = next((float(o.split(":", 1)[1]) for o in objective[1:] if o.startswith("sigmoid:")), 1.0)
        self.baseline = 0.0   # LightGBM folds its initial score into the first tree's leaves
        children, feature, threshold, value, depth, roots = [], [], [], [], [], []

        def add(level: int) -> int:   # a new node: a leaf of value 0 (pointing to itself) until filled in
            at = len(feature)
            children.append((at, at))
            feature.append(0)
            threshold.append(np.inf)
            value.append(0.0)
            depth.append(level)
            return at

        for tree in dump["tree_info"]:
            roots.append(add(0))
            stack = [(tree["tree_structure"], roots[-1])]
            while stack:
                node, at = stack.pop()
                if "leaf_value" in node:
                    if node.get("leaf_coeff"):   # linear_tree: a linear model in the leaf
                        raise NotCompilable("linear leaves")
                    value[at] = float(node["leaf_value"])
                    continue
                if node.get("decision_type") != "<=" or node.get("missing_type") == "Zero":
                    raise NotCompilable(f"split {node.get('decision_type')!r}, missing type {node.get('missing_type')!r}")
                pair = (add(depth[at] + 1), add(depth[at] + 1))
                stack += [(node["left_child"], pair[0]), (node["right_child"], pair[1])]
                children[at], feature[at], threshold[at] = pair, int(node["split_feature"]), float(node["threshold"])
        self.roots = np.array(roots, dtype=np.intp)
        self.children = np.array(children, dtype=np.intp)
        self.feature = np.array(feature, dtype=np.intp)
        self.threshold = np.array(threshold)
        self.leaf_value = np.array(value)
        self.max_depth = max(depth)


class _Blend:
    """``tabpipe.model.estimators.LinearBoostingBlend``: the weighted mean of its two compiled members."""

    def __init__(self, est, linear: _Linear, boosting: _Boosting):
        self.weight, self.linear, self.boosting = float(est.linear_weight), linear, boosting

    def __call__(self, x: np.ndarray) -> float:
        return self.weight * self.linear(x) + (1.0 - self.weight) * self.boosting(x)


class _Mean:
    """``tabpipe.model.estimators.WeightedMean``: the weighted mean of its compiled members."""

    def __init__(self, est, members: list):
        self.weights, self.members = [float(w) for w in est.weights_], members

    def __call__(self, x: np.ndarray) -> float:
        return sum(w * member(x) for w, member in zip(self.weights, self.members))


def _compile_estimator(est):
    classes = list(getattr(est, "classes_", []))
    if classes != [0, 1]:
        return None
    name = type(est).__name__
    if name == "LogisticRegression" and est.coef_.shape[0] == 1:
        return _Linear(est)
    if name == "SplineLogisticRegression":
        return _SplineLinear(est)
    if name in ("RandomForestClassifier", "ExtraTreesClassifier") and est.n_outputs_ == 1:
        return _Forest(est)
    if (name == "HistGradientBoostingClassifier" and est.n_trees_per_iteration_ == 1 and est.loss == "log_loss"
            and getattr(est, "_preprocessor", None) is None):
        try:
            return _Boosting(est)
        except NotCompilable:
            return None
    if name == "LGBMClassifier" and getattr(est, "n_classes_", 0) == 2:
        try:
            return _LightGBM(est)
        except NotCompilable:
            return None
    if name == "LinearBoostingBlend":
        linear, boosting = _compile_estimator(est.linear_), _compile_estimator(est.boosting_)
        if isinstance(linear, _Linear) and isinstance(boosting, _Boosting):
            return _Blend(est, linear, boosting)
    if name == "WeightedMean":
        members = [_compile_estimator(m) for m in est.estimators_]
        if all(m is not None for m in members):
            return _Mean(est, members)
    return None


class RecordScorer:
    """Scores records (dicts) with a fitted TabularModel; see the module docstring."""

    def __init__(self, model: TabularModel):
        self.model = model
        self.features = model.schema.features
        self.checker = RecordChecker(model.schema)
        index = {f: i for i, f in enumerate(self.features)}
        try:
            self.blocks = _compile_blocks(model, index)
        except (NotCompilable, AttributeError):
            self.blocks = None
        self.fast_estimator = _compile_estimator(model.estimator) if self.blocks is not None else None

    @property
    def compiled_features(self) -> bool:
        """True if the fitted preprocessing is compiled (``vector``); False: ``proba`` takes the model's own DataFrame path."""
        return self.blocks is not None

    @property
    def compiled(self) -> bool:
        """True if the estimator is compiled too (``proba`` leaves its ``predict_proba`` to rows the compiler refuses)."""
        return self.fast_estimator is not None

    def check(self, record: Any, row: int = 0) -> tuple[list, list[Problem]]:
        """Converted feature values (schema order) and the ``Problem``s found, each naming ``row``.

        A hard problem means the record cannot be scored; the others are warnings about a scorable record."""
        return self.checker(record, row)

    def vector(self, values: list) -> np.ndarray:
        """(n_features_out,) float64: the fitted preprocessing applied to one checked record."""
        return np.concatenate([block(values) for block in self.blocks])

    def proba(self, rows: list[list]) -> np.ndarray:
        """(n,) P(positive) for checked records."""
        if self.blocks is None:
            frame = pd.DataFrame([dict(zip(self.features, v)) for v in rows], columns=self.features)
            return self.model.predict_proba_typed(self.model.check(frame)[0])
        X = np.vstack([self.vector(v) for v in rows])
        if self.fast_estimator is not None:
            try:
                return np.array([self.fast_estimator(x) for x in X])
            except NotCompilable:  # a row the compiled trees do not handle: the estimator's own path
                pass
        with config_context(assume_finite=False, skip_parameter_validation=True):
            proba = self.model.estimator.predict_proba(X)
        return proba[:, list(self.model.estimator.classes_).index(1)]

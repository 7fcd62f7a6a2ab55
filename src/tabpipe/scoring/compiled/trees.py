"""Every tree of every compiled member, scored together for one row: the value of each tree's exit leaf.

Each tree is first brought to one form (``Tree``): an internal node sends the row left when
``x[feature] <= threshold`` or, for a NaN, when ``missing_left``; a leaf holds one value. Trees of at most
64 leaves are scored QuickScorer-style: every node's condition at once, each false condition clearing the
bits of the leaves its left subtree holds, the exit leaf the lowest bit left set (a constant number of
numpy calls, whatever the depth). Larger trees take a lock-step walk, one numpy step per depth level.
Design notes: docs/serving.md#the-compiled-record-scorer
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabpipe.scoring.compiled.errors import NotCompilable

MAX_QUICK_LEAVES = 64                      # one uint64 bitmask of leaves per node


@dataclass(frozen=True)
class Tree:
    """One binary tree in tree-local node numbers (root 0): ``left[n] < 0`` marks leaf ``n``.

    ``feature`` indexes the row the ``TreeSums`` reads; ``value`` is read at leaves only."""

    left: np.ndarray           # (nodes,) intp
    right: np.ndarray          # (nodes,) intp
    feature: np.ndarray        # (nodes,) intp
    threshold: np.ndarray      # (nodes,) float64: left when x <= threshold
    missing_left: np.ndarray   # (nodes,) bool: left when x is NaN
    value: np.ndarray          # (nodes,) float64

    @property
    def n_leaves(self) -> int:
        """Number of leaves."""
        return int((self.left < 0).sum())

    def depth(self) -> int:
        """Number of edges on the longest root-to-leaf path."""
        deepest, level, frontier = 0, 0, [0]
        while frontier:
            deepest = level
            frontier = [c for n in frontier if self.left[n] >= 0 for c in (self.left[n], self.right[n])]
            level += 1
        return deepest


def sklearn_trees(est, feature_offset: int, scale: float) -> list[Tree]:
    """scikit-learn's fitted trees (a random forest's or extra trees' ``estimators_``), leaf value ``scale`` * P(class 1).

    scikit-learn compares float32 inputs: ``feature_offset`` points the nodes at the float32-rounded copy of the row."""
    trees = []
    for fitted in est.estimators_:
        t = fitted.tree_
        leaf = t.children_left < 0
        values = t.value.reshape(t.node_count, -1)
        total = values.sum(axis=1)
        proba = values[:, 1] / np.where(total == 0.0, 1.0, total)    # DecisionTreeClassifier.predict_proba's normaliser
        trees.append(Tree(left=np.where(leaf, -1, t.children_left.astype(np.intp)),
                          right=np.where(leaf, -1, t.children_right.astype(np.intp)),
                          feature=np.where(leaf, 0, t.feature.astype(np.intp) + feature_offset),
                          threshold=np.where(leaf, np.inf, t.threshold).astype(np.float64),
                          missing_left=np.asarray(t.missing_go_to_left, dtype=bool),
                          value=proba * scale))
    return trees


def hist_gradient_boosting_trees(est) -> list[Tree]:
    """HistGradientBoostingClassifier's predictors (one per iteration, numeric splits only), raw leaf values."""
    trees = []
    for (predictor,) in est._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise NotCompilable("categorical splits")
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(Tree(left=np.where(leaf, -1, nodes["left"].astype(np.intp)),
                          right=np.where(leaf, -1, nodes["right"].astype(np.intp)),
                          feature=np.where(leaf, 0, nodes["feature_idx"].astype(np.intp)),
                          threshold=np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64),
                          missing_left=nodes["missing_go_to_left"].astype(bool),
                          value=nodes["value"].astype(np.float64)))
    return trees


def lightgbm_trees(dump: dict) -> list[Tree]:
    """LightGBM's trees from ``booster_.dump_model()`` (numeric ``<=`` splits), raw leaf values.

    LightGBM reads a NaN as 0.0 at a split of missing type None, and sends it the default way at one of
    missing type NaN; type Zero (zero as missing) is refused."""
    trees = []
    for info in dump["tree_info"]:
        left, right, feature, threshold, missing_left, value = [], [], [], [], [], []
        stack = [(info["tree_structure"], None, False)]   # (node, parent, is the parent's left child)
        while stack:
            node, parent, is_left = stack.pop()
            at = len(left)
            if parent is not None:
                (left if is_left else right)[parent] = at
            left.append(-1), right.append(-1)
            if "leaf_value" in node:
                if node.get("leaf_coeff"):   # linear_tree: a linear model in the leaf
                    raise NotCompilable("linear leaves")
                feature.append(0), threshold.append(np.inf), missing_left.append(True)
                value.append(float(node["leaf_value"]))
                continue
            kind = node.get("missing_type")
            if node.get("decision_type") != "<=" or kind not in ("None", "NaN"):
                raise NotCompilable(f"split {node.get('decision_type')!r}, missing type {kind!r}")
            cut = float(node["threshold"])
            feature.append(int(node["split_feature"])), threshold.append(cut), value.append(0.0)
            missing_left.append(bool(node.get("default_left")) if kind == "NaN" else 0.0 <= cut)
            stack += [(node["right_child"], at, False), (node["left_child"], at, True)]
        trees.append(Tree(left=np.array(left, dtype=np.intp), right=np.array(right, dtype=np.intp),
                          feature=np.array(feature, dtype=np.intp), threshold=np.array(threshold, dtype=np.float64),
                          missing_left=np.array(missing_left, dtype=bool), value=np.array(value, dtype=np.float64)))
    return trees


def _bits_through_lowest(words: np.ndarray) -> np.ndarray:
    """Per nonzero unsigned word: 1 + the position of its lowest set bit."""
    one = words.dtype.type(1)
    if hasattr(np, "bitwise_count"):   # numpy >= 2.0
        return np.bitwise_count(words ^ (words - one))
    return np.frexp((words & (~words + one)).astype(np.float64))[1]


class _QuickTrees:
    """Trees of at most 64 leaves, as (nodes, trees) tables padded to the largest tree: per internal node the mask
    of the leaves it keeps when its condition is false (padding: always true, keeps all)."""

    def __init__(self, trees: list[Tree]):
        values: list[float] = []
        leaf_offsets, tables = [], []
        for tree in trees:
            leaf_offsets.append(len(values))
            tables.append(_left_subtree_masks(tree, values))
        shape = (max(1, max(len(t) for t in tables)), len(trees))
        # the narrowest word that holds a bit per leaf: fewer bytes to select and reduce
        self.dtype = next(d for d in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(d).bits > shape[0])
        full = int(np.iinfo(self.dtype).max)
        self.feature = np.zeros(shape, dtype=np.intp)
        self.threshold = np.full(shape, np.inf)
        self.missing_left = np.ones(shape, dtype=bool)
        self.masks = np.full(shape, full, dtype=self.dtype)
        for j, (tree, table) in enumerate(zip(trees, tables)):
            for i, (node, mask) in enumerate(table):
                self.feature[i, j], self.threshold[i, j] = tree.feature[node], tree.threshold[node]
                self.missing_left[i, j], self.masks[i, j] = tree.missing_left[node], mask & full
        self.leaf_offsets = np.array(leaf_offsets, dtype=np.intp) - 1
        self.values = np.array(values, dtype=np.float64)

    def __call__(self, row: np.ndarray, has_nan: bool) -> np.ndarray:
        x = np.take(row, self.feature)
        left = x <= self.threshold
        if has_nan:
            left |= np.isnan(x) & self.missing_left
        kept = np.bitwise_and.reduce(self.masks | -left.astype(self.dtype), axis=0)   # true: all ones
        # the exit leaf's bit is never cleared and is the lowest left: 1 + its number = the bits up to it
        return np.take(self.values, self.leaf_offsets + _bits_through_lowest(kept))


def _quick_groups(sizes: list[int], overhead: int = 3000) -> list[list[int]]:
    """Tree indices grouped by internal-node count so that padding every tree of a group to its largest costs
    least: a group costs ``overhead`` (its numpy calls, in table cells) + its cells (largest count x trees)."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    counts = sorted(set(sizes))
    upto = [sum(1 for s in sizes if s <= c) for c in counts]       # trees with at most counts[k] nodes
    best = [0] + [None] * len(counts)                               # best[k]: cost of the trees of counts[:k]
    cut = [0] * (len(counts) + 1)
    for k in range(1, len(counts) + 1):
        for j in range(k):   # last group: the trees with counts[j] .. counts[k - 1] nodes
            cost = best[j] + overhead + max(1, counts[k - 1]) * (upto[k - 1] - (upto[j - 1] if j else 0))
            if best[k] is None or cost < best[k]:
                best[k], cut[k] = cost, j
    groups, k = [], len(counts)
    while k:
        j = cut[k]
        groups.append(order[(upto[j - 1] if j else 0):upto[k - 1]])
        k = j
    return groups[::-1]


def _left_subtree_masks(tree: Tree, values: list) -> list[tuple[int, int]]:
    """(internal node, mask clearing its left subtree's leaves) in depth-first order; appends the leaf values
    to ``values`` left to right (bit i: the i-th leaf)."""
    out: list[tuple[int, int]] = []
    first = len(values)
    stack: list[tuple[int, int | None]] = [(0, None)]   # (node, leaves seen before its right subtree: when set)
    while stack:
        node, before = stack.pop()
        if before is not None:                          # back from the left subtree: its leaves are [before, now)
            count = len(values) - first - before
            out.append((node, (2**64 - 1) ^ (((1 << count) - 1) << before)))
            stack.append((int(tree.right[node]), None))
        elif tree.left[node] < 0:
            values.append(float(tree.value[node]))
        else:
            stack += [(node, len(values) - first), (int(tree.left[node]), None)]
    return out


class _WalkedTrees:
    """Trees of any size: a lock-step walk, leaves pointing to themselves so every tree takes ``depth`` steps."""

    def __init__(self, trees: list[Tree]):
        sizes = [len(t.left) for t in trees]
        offsets = np.cumsum([0] + sizes[:-1]).astype(np.intp)
        self.roots = offsets
        shift = np.repeat(offsets, sizes)
        left = np.concatenate([t.left for t in trees])
        right = np.concatenate([t.right for t in trees])
        own = np.arange(len(left), dtype=np.intp)
        leaf = left < 0
        # column 0: the right child, column 1: the left child (indexed by "goes left")
        self.children = np.column_stack([np.where(leaf, own, right + shift), np.where(leaf, own, left + shift)])
        self.feature = np.concatenate([t.feature for t in trees])
        self.threshold = np.where(leaf, np.inf, np.concatenate([t.threshold for t in trees]))
        self.missing_left = np.concatenate([t.missing_left for t in trees]) | leaf
        self.values = np.concatenate([t.value for t in trees])
        self.depth = max(t.depth() for t in trees)

    def __call__(self, row: np.ndarray, has_nan: bool) -> np.ndarray:
        nodes = self.roots
        for _ in range(self.depth):
            x = row[self.feature[nodes]]
            left = x <= self.threshold[nodes]
            if has_nan:
                left |= np.isnan(x) & self.missing_left[nodes]
            nodes = self.children[nodes, left.view(np.int8)]
        return self.values[nodes]


class TreeSums:
    """All trees, each adding its exit leaf's value to a slot: ``__call__`` gives the (n_slots,) sums."""

    def __init__(self, trees: list[Tree], slots: list[int], n_slots: int):
        small = [i for i, t in enumerate(trees) if t.n_leaves <= MAX_QUICK_LEAVES]
        large = [i for i, t in enumerate(trees) if t.n_leaves > MAX_QUICK_LEAVES]
        groups = [[small[i] for i in group] for group in _quick_groups([trees[i].n_leaves - 1 for i in small])]
        self.parts = [_QuickTrees([trees[i] for i in group]) for group in groups]
        if large:
            self.parts.append(_WalkedTrees([trees[i] for i in large]))
        self.slots = np.array([slots[i] for group in groups for i in group] + [slots[i] for i in large], dtype=np.intp)
        self.n_slots = n_slots

    def __call__(self, row: np.ndarray, has_nan: bool) -> np.ndarray:
        values = [part(row, has_nan) for part in self.parts]
        return np.bincount(self.slots, weights=values[0] if len(values) == 1 else np.concatenate(values),
                           minlength=self.n_slots)

"""Path-dependent Tree SHAP (Lundberg et al. 2018, "Consistent individualized feature attribution for tree
ensembles"), for many rows and many trees at once in numpy.

The path-dependent game of one leaf ``l`` with value ``v`` and the distinct features ``k = 1..d`` split on along
its root path: ``f_S = v * prod_{k in S} o_k * prod_{k not in S} z_k``, where ``o_k`` is 1 when the row takes the
path's side at every split on feature k (else 0) and ``z_k`` the product of the path's cover fractions
(child cover / parent cover) at those splits. Its Shapley values are

    phi_i = v * (o_i - z_i) * sum_s w_d(s) e_s(i),    w_d(s) = s! (d-1-s)! / d! = integral_0^1 u^s (1-u)^(d-1-s) du,

with ``e_s(i)`` the coefficient of ``t^s`` in ``prod_{k != i} (z_k + o_k t)``; so

    phi_i = v * (o_i - z_i) * integral_0^1 prod_{k != i} (z_k (1 - u) + o_k u) du,

a polynomial of degree d - 1 in u, integrated exactly by Gauss-Legendre quadrature with ceil(d / 2) nodes. A
tree's values sum over its leaves; they add up to the tree's output minus ``sum_l v_l prod_k z_lk`` (its expected
value under the covers), which is what TreeSHAP's recursive algorithm computes (tested against ``shap``).
Leaves are grouped by d, so each group is a few array operations over (rows, leaves, d, nodes) blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from tabpipe.scoring.compiled.trees import Tree

BLOCK_CELLS = 4_000_000      # rows x leaves x d x quadrature nodes held at a time (~32 MB of float64)


@dataclass(frozen=True)
class _Group:
    """The leaves (of any trees) whose root path splits on ``d`` distinct features."""

    edges: np.ndarray      # (L, d, m) index into the edge columns (the last one: always followed), per feature slot
    z: np.ndarray          # (L, d) cover fraction per slot
    value: np.ndarray      # (L,) leaf value (scaled)
    to_feature: sparse.csr_matrix   # (L * d, n_features): slot -> feature
    nodes: np.ndarray      # (Q,) quadrature nodes on [0, 1]
    weights: np.ndarray    # (Q,) their weights


class PathDependentShap:
    """``__call__(X)``: (n, n_features) SHAP values of the sum of ``trees`` (each ``Tree`` with a ``cover`` per node)
    and (n,) that sum itself; ``expected``: the sum's expected value under the covers, so that
    ``expected + phi.sum(1)`` is the trees' sum (to rounding)."""

    def __init__(self, trees: list[tuple[Tree, np.ndarray]], n_features: int, feature_of=None):
        """``trees``: (tree, cover per node) pairs, leaf values already scaled; ``n_features``: width of the rows
        read; ``feature_of``: maps a node's ``feature`` (an index into the rows read) to the attributed feature
        (default: itself)."""
        self.n_features = n_features
        node_feature, node_threshold, node_missing_left = [], [], []
        edge_node, edge_left = [], []
        leaves: dict[int, list] = {}          # d -> [(slot edges, z, value, features)]
        expected, offset, constant = 0.0, 0, 0.0
        for tree, cover in trees:
            cover = np.asarray(cover, dtype=np.float64)
            node_feature.append(tree.feature), node_threshold.append(tree.threshold)
            node_missing_left.append(tree.missing_left)
            stack = [(0, [])]          # (node, path: [(edge index, feature, fraction)])
            while stack:
                node, path = stack.pop()
                if tree.left[node] < 0:
                    slots: dict[int, tuple[list, float]] = {}
                    for edge, feature, fraction in path:
                        known, z = slots.get(feature, ([], 1.0))
                        slots[feature] = (known + [edge], z * fraction)
                    z_all = float(np.prod([z for _, z in slots.values()])) if slots else 1.0
                    expected += float(tree.value[node]) * z_all
                    if not path:                  # a tree of one leaf: a constant
                        constant += float(tree.value[node])
                    if slots:
                        leaves.setdefault(len(slots), []).append(
                            ([e for e, _ in slots.values()], [z for _, z in slots.values()], float(tree.value[node]),
                             [int(f) if feature_of is None else int(feature_of(f)) for f in slots]))
                    continue
                parent = float(cover[node])
                for child, left in ((int(tree.left[node]), True), (int(tree.right[node]), False)):
                    edge = len(edge_node)
                    edge_node.append(offset + node), edge_left.append(left)
                    fraction = float(cover[child]) / parent if parent > 0 else 0.0
                    stack.append((child, path + [(edge, int(tree.feature[node]), fraction)]))
            offset += len(tree.left)
        self.expected, self.constant = expected, constant
        self.feature = np.concatenate(node_feature) if trees else np.zeros(0, dtype=np.intp)
        self.threshold = np.concatenate(node_threshold) if trees else np.zeros(0)
        self.missing_left = np.concatenate(node_missing_left) if trees else np.zeros(0, dtype=bool)
        self.edge_node = np.array(edge_node, dtype=np.intp)
        self.edge_left = np.array(edge_left, dtype=bool)
        self.groups = [self._group(d, rows) for d, rows in sorted(leaves.items())]

    def _group(self, d: int, rows: list) -> _Group:
        always = len(self.edge_node)             # the padding edge: a column of True appended to the follow matrix
        m = max(len(edges) for slot_edges, *_ in rows for edges in slot_edges)
        edges = np.full((len(rows), d, m), always, dtype=np.intp)
        for i, (slot_edges, *_rest) in enumerate(rows):
            for k, found in enumerate(slot_edges):
                edges[i, k, :len(found)] = found
        z = np.array([r[1] for r in rows], dtype=np.float64)
        features = np.array([r[3] for r in rows], dtype=np.intp).ravel()
        to_feature = sparse.csr_matrix((np.ones(len(features)), (np.arange(len(features)), features)),
                                       shape=(len(features), self.n_features))
        nodes, weights = np.polynomial.legendre.leggauss((d + 1) // 2)
        return _Group(edges=edges, z=z, value=np.array([r[2] for r in rows], dtype=np.float64),
                      to_feature=to_feature, nodes=(nodes + 1.0) / 2.0, weights=weights / 2.0)

    def follows(self, X: np.ndarray) -> np.ndarray:
        """(n, edges + 1) bool: the row takes each edge's side of its node's split (a NaN goes the missing way);
        the last column is the padding edge, always taken."""
        x = X[:, self.feature[self.edge_node]]
        threshold = self.threshold[self.edge_node]
        left = (x <= threshold) | (np.isnan(x) & self.missing_left[self.edge_node])
        out = np.ones((len(X), len(self.edge_node) + 1), dtype=bool)
        out[:, :-1] = left == self.edge_left
        return out

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_features) SHAP values of the rows ``X`` (n, width read by the trees), and (n,) the trees' sum."""
        out = np.zeros((len(X), self.n_features))
        total = np.full(len(X), self.constant)
        if not self.groups or len(X) == 0:
            return out, total
        follow = self.follows(X)
        for g in self.groups:
            L, d, _ = g.edges.shape
            step = max(1, BLOCK_CELLS // (L * d * len(g.nodes)))
            for start in range(0, len(X), step):
                o = follow[start:start + step][:, g.edges].all(axis=-1)          # (r, L, d)
                total[start:start + step] += o.all(axis=2) @ g.value              # the exit leaves' values
                out[start:start + step] += _leaf_shap(o.astype(np.float64), g) @ g.to_feature
        return out, total


def _leaf_shap(o: np.ndarray, g: _Group) -> np.ndarray:
    """(r, L * d): each leaf's SHAP value for each of its slots, from the follow indicators ``o`` (r, L, d)."""
    u = g.nodes
    factors = g.z[None, :, :, None] * (1.0 - u) + o[..., None] * u          # (r, L, d, Q)
    before = np.ones_like(factors)
    after = np.ones_like(factors)
    d = factors.shape[2]
    if d > 1:
        before[:, :, 1:] = np.cumprod(factors[:, :, :-1], axis=2)
        after[:, :, :-1] = np.cumprod(factors[:, :, :0:-1], axis=2)[:, :, ::-1]
    integral = (before * after) @ g.weights                                   # (r, L, d)
    phi = (o - g.z) * integral * g.value[:, None]
    return phi.reshape(len(o), -1)

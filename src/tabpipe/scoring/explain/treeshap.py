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
Since ``o_k`` is 0 or 1, a leaf's values depend only on which of its d slots the row follows: for the leaves
with d <= TABLE_SLOTS they are tabulated for all 2^d patterns when the explainer is built, and a row reads its
pattern's entry (a few numpy calls over all those leaves). The longer paths are integrated per row: a few rows
take them in a few tables padded to a common length (few numpy calls: the cost of one ``/predict`` record),
many rows take them grouped by d (no padding), in blocks of rows of bounded size; each factor is then one of
two precomputed tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabpipe.scoring.compiled.trees import Tree

BLOCK_CELLS = 4_000_000      # rows x leaves x d x quadrature nodes held at a time (~32 MB of float64)
FEW_ROWS = 16                # up to this many rows: the padded tables (fewer numpy calls per row)
TABLE_SLOTS = 6              # leaves splitting on at most this many features: their values for every o, tabulated
TABLE_CELLS = 4_000_000      # ... within this many float64 table cells per model (32 MB); the others: quadrature


@dataclass(frozen=True)
class _Leaves:
    """Leaves (of any trees) padded to ``d`` feature slots; a padding slot is always followed with z = 1 (its
    factor is 1 and its value 0)."""

    edges: np.ndarray      # (L, d) per slot, the first edge on its feature (padding: the always-followed edge)
    values: np.ndarray     # (L, members) the leaf value in its member's column (the exit leaves' sums per member)
    more: list             # per further edge of a slot: (flat slot indices, their edges), those slots having one
    z: np.ndarray          # (L, d) cover fraction per slot
    value: np.ndarray      # (L,) leaf value
    feature: np.ndarray    # (L * d,) the feature a slot's value goes to
    below: np.ndarray      # (L, d, Q) z (1 - u): a slot's factor where the row leaves the path
    along: np.ndarray      # (L, d, Q) z (1 - u) + u: where it follows it
    weights: np.ndarray    # (Q,) quadrature weights on [0, 1]
    gain: np.ndarray       # (L, d) (1 - z) v: o - z times the leaf value where the row follows
    loss: np.ndarray       # (L, d) -z v: where it does not
    divide: bool           # every factor is positive: the product without factor k is the product / factor k

    @classmethod
    def of(cls, rows: list, d: int, always: int, n_members: int) -> _Leaves:
        """``rows``: (slot edges, slot z, value, slot features, member) per leaf, at most ``d`` slots each; a slot's
        feature is the index its value is added to (member x n_features + feature)."""
        edges = np.full((len(rows), d), always, dtype=np.intp)
        z = np.ones((len(rows), d))
        feature = np.zeros((len(rows), d), dtype=np.intp)
        further: dict[int, tuple[list, list]] = {}
        for i, (slot_edges, slot_z, _, slot_features, _member) in enumerate(rows):
            for k, found in enumerate(slot_edges):
                edges[i, k] = found[0]
                for j, edge in enumerate(found[1:]):
                    slots, more_edges = further.setdefault(j, ([], []))
                    slots.append(i * d + k), more_edges.append(edge)
            z[i, :len(slot_z)], feature[i, :len(slot_features)] = slot_z, slot_features
        more = [(np.array(a, dtype=np.intp), np.array(b, dtype=np.intp)) for a, b in further.values()]
        value = np.array([r[2] for r in rows], dtype=np.float64)
        values = np.zeros((len(rows), n_members))
        values[np.arange(len(rows)), [r[4] for r in rows]] = value
        nodes, weights = np.polynomial.legendre.leggauss((d + 1) // 2)
        u = (nodes + 1.0) / 2.0
        below = z[:, :, None] * (1.0 - u)
        return cls(edges=edges, values=values, more=more, z=z, value=value, feature=feature.ravel(), below=below, along=below + u,
                   weights=weights / 2.0, gain=(1.0 - z) * value[:, None], loss=-z * value[:, None],
                   divide=bool((z > 0).all()))

    @property
    def cells(self) -> int:
        """Table cells per row."""
        return self.below.size


class PathDependentShap:
    """The trees of one or more members (sums of trees), explained together.

    ``__call__(X)``: (n, members, n_features) each member's SHAP values and (n, members) each member's sum of
    trees; ``expected`` (members,): each sum's expected value under the covers, so that ``expected[j] +
    phi[:, j].sum(1)`` is member j's sum (to rounding)."""

    def __init__(self, trees: list[tuple[Tree, np.ndarray, int]], n_features: int, n_members: int = 1):
        """``trees``: (tree, cover per node, member) triples, leaf values already scaled; a node's feature indexes
        the rows read, and is attributed to feature ``feature % n_features`` (a tree may read a second copy of
        the features, offset by ``n_features``)."""
        self.n_features, self.n_members = n_features, n_members
        self.width = n_features * n_members
        edge_feature, edge_threshold, edge_missing_left, edge_left = [], [], [], []
        leaves: dict[int, list] = {}          # d -> [(slot edges, slot z, value, slot features, member)]
        expected, constant = np.zeros(n_members), np.zeros(n_members)
        for tree, cover, member in trees:
            cover = np.asarray(cover, dtype=np.float64)
            stack = [(0, [])]          # (node, path: [(edge index, feature, fraction)])
            while stack:
                node, path = stack.pop()
                if tree.left[node] < 0:
                    slots: dict[int, tuple[list, float]] = {}
                    for edge, feature, fraction in path:
                        known, z = slots.get(feature, ([], 1.0))
                        slots[feature] = (known + [edge], z * fraction)
                    expected[member] += float(tree.value[node]) * float(np.prod([z for _, z in slots.values()]))
                    if not path:                  # a tree of one leaf: a constant
                        constant[member] += float(tree.value[node])
                    else:
                        leaves.setdefault(len(slots), []).append(
                            ([e for e, _ in slots.values()], [z for _, z in slots.values()], float(tree.value[node]),
                             [member * n_features + f % n_features for f in slots], member))
                    continue
                parent = float(cover[node])
                for child, left in ((int(tree.left[node]), True), (int(tree.right[node]), False)):
                    edge = len(edge_left)
                    edge_feature.append(int(tree.feature[node])), edge_threshold.append(float(tree.threshold[node]))
                    edge_missing_left.append(bool(tree.missing_left[node])), edge_left.append(left)
                    fraction = float(cover[child]) / parent if parent > 0 else 0.0
                    stack.append((child, path + [(edge, int(tree.feature[node]), fraction)]))
        always = len(edge_left)   # the padding edge: left of +inf, NaN left too: always taken
        self.edge_feature = np.array(edge_feature + [0], dtype=np.intp)
        self.edge_threshold = np.array(edge_threshold + [np.inf])
        self.edge_missing_left = np.array(edge_missing_left + [True])
        self.edge_left = np.array(edge_left + [True])
        self.expected, self.constant = expected, constant
        short = [r for d in sorted(leaves) if d <= TABLE_SLOTS for r in leaves[d]]
        self.table = None
        if short and len(short) * 2 ** TABLE_SLOTS * TABLE_SLOTS <= TABLE_CELLS:
            self.table = _Table(_Leaves.of(short, TABLE_SLOTS, always, n_members))
            leaves = {d: rows for d, rows in leaves.items() if d > TABLE_SLOTS}
        self.groups = [_Leaves.of(rows, d, always, n_members) for d, rows in sorted(leaves.items())]
        # for a few rows: the leaves in a few tables, padded, so that a row costs few numpy calls
        self.few = [_Leaves.of([r for d in ds for r in leaves[d]], max(ds), always, n_members)
                    for ds in _buckets(leaves)] \
            if leaves else []

    def follows(self, X: np.ndarray) -> np.ndarray:
        """(n, edges + 1) bool: the row takes each edge's side of its node's split (a NaN goes the missing way);
        the last column is the padding edge, always taken."""
        x = X[:, self.edge_feature]
        left = x <= self.edge_threshold
        if np.isnan(x).any():
            left |= np.isnan(x) & self.edge_missing_left
        return left == self.edge_left

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, members, n_features) SHAP values of the rows ``X`` (n, width read by the trees), and (n, members)
        the members' sums of trees."""
        out = np.zeros((len(X), self.width))
        total = np.tile(self.constant, (len(X), 1))
        if (not self.groups and self.table is None) or len(X) == 0:
            return out.reshape(len(X), self.n_members, self.n_features), total
        follow = self.follows(X)
        tables = ([] if self.table is None else [self.table]) + (self.few if len(X) <= FEW_ROWS else self.groups)
        for g in tables:
            step = max(1, BLOCK_CELLS // g.cells)
            for start in range(0, len(X), step):
                o = follow[start:start + step][:, g.edges]                       # (r, L, d)
                for slots, edges in g.more:                                        # a feature split on again
                    flat = o.reshape(len(o), -1)
                    flat[:, slots] &= follow[start:start + step][:, edges]
                if isinstance(g, _Table):
                    phi, exits = g(o)
                else:
                    phi, exits = _leaf_shap(o, g), o.all(axis=2)
                total[start:start + step] += exits @ g.values                     # the exit leaves' values
                r = len(o)
                at = (np.arange(r)[:, None] * self.width + g.feature).ravel() if r > 1 else g.feature
                out[start:start + step] += np.bincount(at, phi.ravel(), minlength=r * self.width).reshape(r, self.width)
        return out.reshape(len(X), self.n_members, self.n_features), total


class _Table:
    """Leaves padded to TABLE_SLOTS slots with their values for each pattern of followed slots, tabulated."""

    def __init__(self, leaves: _Leaves):
        n, d = leaves.edges.shape
        self.edges, self.more, self.values, self.feature = leaves.edges, leaves.more, leaves.values, leaves.feature
        patterns = (np.arange(2 ** d)[:, None] >> np.arange(d)) & 1 == 1             # (2^d, d): bit k = slot k
        table = np.empty((n, 2 ** d, d))
        for p, o in enumerate(patterns):
            table[:, p, :] = _leaf_shap(np.broadcast_to(o, (1, n, d)), leaves).reshape(n, d)
        self.table = table.reshape(n * 2 ** d, d)
        self.first = np.arange(n) * 2 ** d
        self.everything = 2 ** d - 1
        self.cells = n * d

    def __call__(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(r, L * d) the leaves' values and (r, L) whether each is the row's exit leaf, for the follow
        indicators ``o`` (r, L, d)."""
        code = np.packbits(o, axis=-1, bitorder="little")[..., 0]               # (r, L): the pattern
        return self.table[self.first + code].reshape(len(o), -1), code == self.everything


def _buckets(leaves: dict[int, list], overhead: int = 4000) -> list[list[int]]:
    """The path lengths d grouped into consecutive buckets, each padded to its largest d, at the least cost:
    per bucket ``overhead`` (its numpy calls, in cells) + its cells (leaves x largest d x quadrature nodes)."""
    ds = sorted(leaves)
    best, cut = [0.0] + [np.inf] * len(ds), [0] * (len(ds) + 1)
    for k in range(1, len(ds) + 1):
        for j in range(k):            # the last bucket: ds[j:k]
            n = sum(len(leaves[d]) for d in ds[j:k])
            cost = best[j] + overhead + n * ds[k - 1] * ((ds[k - 1] + 1) // 2)
            if cost < best[k]:
                best[k], cut[k] = cost, j
    out, k = [], len(ds)
    while k:
        out.append(ds[cut[k]:k])
        k = cut[k]
    return out[::-1]


def _leaf_shap(o: np.ndarray, g: _Leaves) -> np.ndarray:
    """(r, L * d): each leaf's SHAP value for each of its slots, from the follow indicators ``o`` (r, L, d)."""
    factors = np.where(o[..., None], g.along, g.below)                       # (r, L, d, Q)
    if g.divide:
        others = factors.prod(axis=2, keepdims=True) / factors
    else:                                                                     # a zero factor: products either side
        others = np.ones_like(factors)
        if factors.shape[2] > 1:
            others[:, :, 1:] = np.cumprod(factors[:, :, :-1], axis=2)
            others[:, :, :-1] *= np.cumprod(factors[:, :, :0:-1], axis=2)[:, :, ::-1]
    integral = others @ g.weights                                             # (r, L, d)
    return (integral * np.where(o, g.gain, g.loss)).reshape(len(o), -1)

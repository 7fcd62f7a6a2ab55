"""The fitted cubic splines of ``SplineLogisticRegression`` members as piecewise cubics, summed per member.

Each (member, splined column) becomes a table of intervals: below the outer knots a line, one cubic
``a + b t + c t^2 + d t^3`` per knot interval (``t`` measured from the interval's left knot: well conditioned
however narrow the interval), above the outer knots a line, as SplineTransformer's linear extrapolation.
A row finds every column's interval with one comparison against padded knot rows.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline

from tabpipe.scoring.compiled.errors import NotCompilable

_POWERS = np.arange(4)


def _intervals(knots: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One column's fitted spline ``sum(weights * basis)``: (breakpoints, origins, (intervals, 4) coefficients).

    Interval 0 lies below the outer knots, the last one above them; a value's interval is the number of
    breakpoints at or below it."""
    if k != 3:
        raise NotCompilable(f"spline degree {k}")
    n = len(weights)
    lo, hi = knots[k], knots[n]
    if not lo < hi:
        raise NotCompilable("spline without a knot interval")
    curve = BSpline(knots, weights, k)
    basis = BSpline(knots, np.eye(n), k)
    # beyond an end only the k outermost basis functions continue (value + slope there), the others are 0
    below = [weights[:k] @ basis(lo)[:k], weights[:k] @ basis(lo, nu=1)[:k], 0.0, 0.0]
    above = [weights[-k:] @ basis(hi)[-k:], weights[-k:] @ basis(hi, nu=1)[-k:], 0.0, 0.0]
    lefts = knots[k:n]                        # the base intervals [knots[i], knots[i + 1]), i = k .. n - 1
    inside = np.column_stack([curve(lefts, nu=m) / f for m, f in zip(range(4), (1.0, 1.0, 2.0, 6.0))])
    inside[~np.isfinite(inside)] = 0.0         # a zero-width interval: never the one a value falls in
    breaks = np.concatenate([lefts, [np.nextafter(hi, np.inf)]])    # hi itself belongs to the last cubic
    origins = np.concatenate([[lo], lefts, [hi]])
    return breaks, origins, np.vstack([below, inside, above])


class SplineCurves:
    """The splined columns of one or more fitted ``SplineLogisticRegression``: ``__call__`` sums them per slot."""

    def __init__(self, members: list[tuple[int, object]], n_slots: int):
        columns, slots, breaks, origins, coefs, offsets = [], [], [], [], [], []
        for slot, est in members:
            width = est.n_features_in_
            n_splines = est.splines_.bsplines_[0].c.shape[1]
            # float64, as predict_proba computes: float32 weights (a float32 fit) would round the sums
            weights = est.linear_.coef_[0][width:].astype(np.float64).reshape(len(est.spline_columns_), n_splines)
            for column, spline, w in zip(est.spline_columns_, est.splines_.bsplines_, weights):
                cut, origin, coef = _intervals(np.asarray(spline.t, dtype=np.float64), w, spline.k)
                columns.append(int(column)), slots.append(slot), breaks.append(cut)
                offsets.append(sum(len(o) for o in origins)), origins.append(origin), coefs.append(coef)
        widest = max(len(b) for b in breaks)
        self.columns = np.array(columns, dtype=np.intp)
        self.breaks = np.vstack([np.pad(b, (0, widest - len(b)), constant_values=np.inf) for b in breaks])
        self.offsets = np.array(offsets, dtype=np.intp)
        self.origins = np.concatenate(origins)
        self.coefs = np.vstack(coefs)
        self.slots = np.repeat(np.array(slots, dtype=np.intp), 4)
        self.n_slots = n_slots

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n_slots,) each slot's sum of its columns' spline values at row ``x`` (finite)."""
        v = x[self.columns]
        at = (self.breaks <= v[:, None]).sum(axis=1) + self.offsets
        terms = self.coefs[at] * (v - self.origins[at])[:, None] ** _POWERS
        return np.bincount(self.slots, weights=terms.ravel(), minlength=self.n_slots)

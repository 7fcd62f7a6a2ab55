"""The fitted preprocessing of ``tabpipe.model.features.build_preprocessor`` for one checked record.

One block per fitted transformer (numeric, one-hot, pseudonymised one-hot, datetime parts), each with the
fitted statistics; their outputs side by side equal the ColumnTransformer's row (tested to 1e-9).
"""
from __future__ import annotations

import math
from datetime import datetime

from sklearn.pipeline import Pipeline

from tabpipe.model import TabularModel
from tabpipe.model.features import pseudonym
from tabpipe.scoring.compiled.errors import NotCompilable

class _NumericBlock:
    """Imputation (median, mean or most frequent, with missing indicators), then robust scaling, in Python floats:
    the same IEEE operations as scikit-learn's, element by element."""

    def __init__(self, pipe, columns):
        imputer, scaler = pipe.steps[0][1], pipe.steps[-1][1]
        if len(pipe.steps) != 2 or getattr(imputer, "strategy", None) not in ("median", "mean", "most_frequent"):
            raise NotCompilable("numeric block")
        stats = imputer.statistics_.astype(float)
        self.keep = [i for i, s in enumerate(stats) if not math.isnan(s)]
        self.columns, self.fill = columns, [float(s) for s in stats]
        self.indicator = list(imputer.indicator_.features_) if imputer.add_indicator else []
        width = len(self.keep) + len(self.indicator)
        self.center = [float(c) for c in scaler.center_] if scaler.with_centering else [0.0] * width
        self.scale = [float(c) for c in scaler.scale_] if scaler.with_scaling else [1.0] * width
        self.width = width

    def _raw(self, values: list) -> list:
        return [values[c] for c in self.columns]

    def extend(self, values: list, out: list) -> None:
        """Appends the block's ``width`` output values for one checked record to ``out``."""
        raw = self._raw(values)
        fill = self.fill
        imputed = [fill[i] if raw[i] is None else float(raw[i]) for i in self.keep]
        imputed += [1.0 if raw[i] is None else 0.0 for i in self.indicator]
        out += [(v - c) / s for v, c, s in zip(imputed, self.center, self.scale)]


class _DatetimeBlock(_NumericBlock):
    """Hour of day and day of week per datetime column, then the numeric imputation and scaling."""

    def _raw(self, values: list) -> list:
        parts = []
        for c in self.columns:
            dt: datetime | None = values[c]
            parts += [None, None] if dt is None else [float(dt.hour), float(dt.weekday())]
        return parts


class _OneHotBlock:
    """Imputation by a constant, then one-hot encoding with rare levels pooled and unseen ones pooled or ignored."""

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
        self.parts = list(zip(self.columns, [str(f) for f in self.fill], self.lookups, self.unknown, self.sizes))

    def extend(self, values: list, out: list) -> None:
        """Appends the block's ``width`` output values for one checked record to ``out``."""
        for col, fill, lookup, unknown, size in self.parts:
            value = values[col]
            pos = lookup.get(fill if value is None else value, unknown)
            at = len(out)
            out += [0.0] * size
            if pos is not None:
                out[at + pos] = 1.0


class _PseudonymBlock(_OneHotBlock):
    """A ``sensitive: true`` categorical: the value's pseudonym (``preprocessing.pseudonym``), then one-hot."""

    def __init__(self, pipe, columns, names):
        super().__init__(Pipeline(pipe.steps[1:]), columns)   # step 0 is preprocessing.pseudonyms
        self.names = dict(zip(columns, names))

    def extend(self, values: list, out: list) -> None:
        """Appends the block's ``width`` output values for one checked record to ``out``."""
        hidden = list(values)
        for col in self.columns:
            if hidden[col] is not None:
                hidden[col] = pseudonym(self.names[col], hidden[col])
        super().extend(hidden, out)


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

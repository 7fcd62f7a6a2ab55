"""Which of the user's columns each preprocessed feature comes from, read off the fitted ColumnTransformer.

Each fitted step is asked for its output names. A step fitted on an array gets its inputs named by their
position ("0", "1", ...): a one-hot encoder answers "2_red", a scaler "2", so the number before the first "_"
is the input. A step fitted on the DataFrame (the first of each block) answers with the column names: an
imputer "load" or "missingindicator_load", the datetime parts "seen_at_hour" (the longest input name before
a "_").
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.pipeline import Pipeline

INDICATOR = "missingindicator_"


def feature_columns(preprocessor) -> list[str]:
    """The user column of every output column of the fitted ``preprocessor`` (a ColumnTransformer), in order."""
    out: list[str] = []
    for name, pipe, columns in preprocessor.transformers_:
        if name == "remainder" or pipe == "drop" or len(columns) == 0:
            continue
        sources = list(range(len(columns)))
        for _, step in (pipe.steps if isinstance(pipe, Pipeline) else [(None, pipe)]):
            inputs = getattr(step, "feature_names_in_", None)
            if inputs is None:
                names = step.get_feature_names_out([str(i) for i in range(len(sources))])
                sources = [sources[_source(str(n))] for n in names]
            else:
                named = [str(n) for n in inputs]
                sources = [sources[_named_source(str(n), named)] for n in step.get_feature_names_out()]
        out += [columns[i] for i in sources]
    width = len(preprocessor.get_feature_names_out())
    if len(out) != width:
        raise ValueError(f"the preprocessing's {width} output columns were traced to {len(out)} input columns")
    return out


def _source(name: str) -> int:
    if name.startswith(INDICATOR):
        name = name[len(INDICATOR):]
    return int(name.split("_", 1)[0])


def _named_source(name: str, inputs: list[str]) -> int:
    if name.startswith(INDICATOR) and name[len(INDICATOR):] in inputs:
        name = name[len(INDICATOR):]
    if name in inputs:
        return inputs.index(name)
    prefixed = [i for i, n in enumerate(inputs) if name.startswith(n + "_")]
    if not prefixed:
        raise ValueError(f"cannot tell which column the preprocessed column {name!r} comes from")
    return max(prefixed, key=lambda i: len(inputs[i]))


def column_matrix(preprocessor, features: list[str]) -> sparse.csr_matrix:
    """(output columns, len(features)) 0/1: output column i comes from ``features[j]``."""
    position = {f: j for j, f in enumerate(features)}
    sources = [position[c] for c in feature_columns(preprocessor)]
    return sparse.csr_matrix((np.ones(len(sources)), (np.arange(len(sources)), sources)),
                             shape=(len(sources), len(features)))

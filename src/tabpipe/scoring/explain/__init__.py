"""Per-row reasons: each row's raw score logit as a base value plus additive contributions per input column.

``explainer_for(model).explain(X)`` on preprocessed rows; ``reasons`` formats the top k of them for answers.
Design notes: docs/serving.md#per-row-reasons
"""
from tabpipe.scoring.explain.explainer import OF, Explainer, NotExplainable, Reasons, explainer_for

__all__ = ["OF", "Explainer", "NotExplainable", "Reasons", "explainer_for"]

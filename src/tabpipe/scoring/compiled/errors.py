"""The compiler's one refusal: a fitted object (or a row) it does not reproduce exactly."""
from __future__ import annotations


class NotCompilable(Exception):
    """The fitted preprocessing, an estimator or a row has a shape this compiler does not know; use the model's own path."""

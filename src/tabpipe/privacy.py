"""Sensitive columns: the one rule for keeping ``sensitive: true`` schema columns out of logs in clear.

A sensitive value is either replaced by ``hmac-sha256:<hex>`` (HMAC-SHA256 under a key the caller
passes in — read from the environment at the edge) or dropped. Without a key, ``hash`` falls back to
``drop``: an unkeyed hash of a low-entropy value (a postcode, a birth date) is reversible by trying
every value. The same key turns the same value into the same token, so hashed ids still join
(``tabpipe outcomes``) and hashed categories can still be counted.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pandas as pd

log = logging.getLogger(__name__)
PREFIX = "hmac-sha256:"


def canonical(value: Any) -> str:
    """The text a value is hashed and joined as: whole floats print as ints (3.0 -> '3'), strings stripped."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return str(value).strip()


class Protector:
    """Hashes or drops the named columns in records (dicts) and frames; a no-op without columns."""

    def __init__(self, columns: Iterable[str], *, mode: Literal["hash", "drop"], key: bytes | None):
        self.columns = frozenset(columns)
        self.mode = mode if key or mode == "drop" else "drop"
        self._key = key
        if self.columns and mode == "hash" and not key:
            log.warning("no hash key for sensitive columns %s: they are left out of logs, reports and run folders", sorted(self.columns))

    @classmethod
    def for_schema(cls, schema, *, mode: Literal["hash", "drop"], key: bytes | None) -> Protector:
        """A protector for the schema's ``sensitive: true`` columns."""
        return cls(schema.sensitive, mode=mode, key=key)

    def __bool__(self) -> bool:
        return bool(self.columns)

    def token(self, value: Any) -> str | None:
        """The keyed hash of one value (None stays None); raises if this protector drops instead."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if self._key is None or self.mode != "hash":
            raise ValueError("no hash key: sensitive values can only be dropped")
        return PREFIX + hmac.new(self._key, canonical(value).encode(), hashlib.sha256).hexdigest()

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``record`` with sensitive fields hashed or removed."""
        if not self.columns:
            return dict(record)
        if self.mode == "drop":
            return {k: v for k, v in record.items() if k not in self.columns}
        return {k: (self.token(v) if k in self.columns else v) for k, v in record.items()}

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``df`` with sensitive columns hashed or removed."""
        present = [c for c in df.columns if c in self.columns]
        if not present:
            return df
        if self.mode == "drop":
            return df.drop(columns=present)
        out = df.copy()
        for name in present:
            out[name] = [self.token(v) for v in out[name].tolist()]
        return out

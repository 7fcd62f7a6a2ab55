"""Base class for every config section: strict (unknown keys are errors) and immutable."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys, so typos in YAML fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

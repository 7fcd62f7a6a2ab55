"""How the model search reports progress while it runs (the CLI shows a progress bar)."""
from __future__ import annotations

from typing import Protocol


class SearchProgress(Protocol):
    """What the trainer reports while it searches (a terminal progress bar, or nothing)."""

    def begin(self, configs: int, evaluations: int, budget_s: float) -> None:
        """The search starts: configurations and evaluations planned, within ``budget_s`` seconds."""

    def update(self, *, done: int, planned: int, settled: int, configs: int, best: float | None,
               elapsed_s: float, budget_s: float) -> None:
        """An evaluation finished: counts so far and the best CV score."""

    def end(self) -> None:
        """The search is over."""


class NoProgress:
    """The default: the trainer's log lines are the only report."""

    def begin(self, configs: int, evaluations: int, budget_s: float) -> None:
        """Nothing to show."""

    def update(self, **_state) -> None:
        """Nothing to show."""

    def end(self) -> None:
        """Nothing to show."""

"""The few error types tabpipe raises on purpose; the CLI maps each to an exit code.

- ``ConfigError``  -> exit 2: a config file is missing, malformed or inconsistent.
- ``DataError``    -> exit 1: the data broke a hard rule (schema, source unreachable, too few rows).
- ``RegistryError``-> exit 1: the model registry is missing a version, or a checksum failed.
"""
from __future__ import annotations


class TabpipeError(Exception):
    """Base class: an expected failure with a message meant for a person."""


class ConfigError(TabpipeError):
    """A config problem, located by file and dotted key (``config/pipeline.yaml: training.metric``)."""

    def __init__(self, file: str, key: str | None, message: str):
        self.file, self.key, self.message = str(file), key, message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")


class DataError(TabpipeError):
    """The data (or its source) broke a rule that stops the run."""


class RegistryError(TabpipeError):
    """The model registry cannot serve what was asked (no such version, checksum mismatch...)."""


class ModelQualityError(TabpipeError):
    """No candidate reached the configured minimum score."""

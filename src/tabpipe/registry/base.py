"""What every part of the registry shares: the layout constants, ``RegistryConfig``, ``VersionInfo``
and the ``Backend`` protocol that a storage backend (a folder, an S3 bucket) implements.

Layout (the same relative keys on every backend)::

    production.json                   the signed production pointer (version, previous, counter, ...)
    versions/v0001/model.pkl          the dill-pickled model
    versions/v0001/reference.parquet  any other file the caller publishes
    versions/v0001/metadata.json      {"version", "created_at", "files": {name: {"sha256", "bytes"}}, ..., "signature"}

A version is *complete* once its ``metadata.json`` exists; readers ignore everything else.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import model_validator

from tabpipe.config_base import StrictModel

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
POINTER_FILE = "production.json"
VERSIONS_DIR = "versions"
RESERVED_METADATA_KEYS = ("version", "created_at", "files", "signature")
SIGNING_KEY_ENV = "TABPIPE_REGISTRY_SIGNING_KEY"
VERIFY_KEY_ENV = "TABPIPE_REGISTRY_VERIFY_KEY"
CACHE_DIR_ENV = "TABPIPE_CACHE_DIR"

_VERSION_RE = re.compile(r"^v(\d{4,})$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class RegistryConfig(StrictModel):
    """The ``registry:`` section of pipeline.yaml. Never holds credentials or keys, only where they are.

    Keys: the publisher (training, ``models promote``) needs the Ed25519 private key, read from the
    environment variable ``signing_key_env`` if set, else from ``signing_key_file``; readers (the
    service, ``predict``) need only the public key, from ``verify_key_env`` or ``verify_key_file``
    (or derived from the private key where that is present).
    """

    backend: Literal["local", "s3"] = "local"
    path: Path = Path("model_registry")
    bucket: str | None = None
    prefix: str = "tabpipe"
    endpoint_url: str | None = None
    region: str | None = None
    require_signature: bool = True
    signing_key_env: str = SIGNING_KEY_ENV
    signing_key_file: Path | None = None
    verify_key_env: str = VERIFY_KEY_ENV
    verify_key_file: Path | None = None

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> RegistryConfig:
        """An S3 registry without a bucket cannot work: say so at load time."""
        if self.backend == "s3" and not self.bucket:
            raise ValueError("registry.backend is 's3' but registry.bucket is not set")
        return self


@dataclass(frozen=True)
class VersionInfo:
    """One complete version, as listed by ``ModelRegistry.list_versions``."""

    version: str
    created_at: str
    is_production: bool
    metadata: dict
    problem: str | None = None  # why loading it would be refused (unsigned, forged, malformed), or None


class Backend(Protocol):
    """Byte storage under registry-relative, '/'-separated keys. Knows nothing of signatures."""

    @property
    def where(self) -> str:
        """Human-readable location, for error messages (operator-facing, never sent to clients)."""

    def read_bytes(self, key: str) -> bytes | None:
        """Contents of ``key``, or None if it does not exist."""

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """Contents of ``key`` and a tag that changes whenever it is rewritten; None if absent."""

    def replace_if(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """Atomically write ``key`` only if its tag is still ``expected_tag`` (None: only if absent).

        Returns False, writing nothing, when someone else changed it first (compare-and-swap).
        """

    def list_children(self, key: str) -> list[str]:
        """Names directly below the folder ``key`` (empty if it does not exist)."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    def local_path(self, key: str, sha256: str) -> Path | None:
        """A local path holding ``key``'s bytes, or None if missing. ``sha256`` is 64 checked hex digits."""

    def write_version(self, version: str, files: Mapping[str, Path], metadata: bytes) -> bool:
        """Store a complete version (metadata last); False, writing nothing visible, if it exists."""


def version_id(number: int) -> str:
    """Format a version number: 3 -> "v0003"."""
    return f"v{number:04d}"


def version_number(version: object) -> int | None:
    """Parse "v0003" -> 3; None for anything that is not a version id."""
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    return int(match.group(1)) if match else None


def is_sha256(value: object) -> bool:
    """Whether ``value`` is 64 lower-case hex digits (safe to use in a path)."""
    return isinstance(value, str) and _SHA256_RE.match(value) is not None


def is_file_name(value: object) -> bool:
    """Whether ``value`` is a plain file name a version may hold (no separators, no leading dot)."""
    return isinstance(value, str) and value != METADATA_FILE and _FILE_NAME_RE.match(value) is not None


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where downloads and reader state live: ``$TABPIPE_CACHE_DIR`` or ``~/.cache/tabpipe``.

    Called by the edges (CLI, service) with their environment; nothing below reads it.
    """
    value = environ.get(CACHE_DIR_ENV)
    return Path(value) if value else Path.home() / ".cache" / "tabpipe"

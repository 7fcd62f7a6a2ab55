"""LocalBackend: the registry in a folder.

- A version is built in ``.staging-<uuid>`` (files and metadata fsynced) and appears in
  ``versions/`` through one ``os.rename`` of the whole folder, so ``versions/vNNNN`` is either
  absent or complete; a crash leaves at most a stale staging folder, which nothing reads.
  ``os.rename`` onto an existing version folder fails, so racing publishers never share a number.
- The pointer is replaced atomically (temp file, fsync, ``os.replace``). Compare-and-swap holds an
  exclusive ``flock`` on ``.<key>.lock`` and re-reads the pointer under it, so two writers cannot
  both move it from the same state; readers need no lock.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from tabpipe.registry import durable
from tabpipe.registry.base import METADATA_FILE, VERSIONS_DIR


class LocalBackend:
    """Registry stored in a folder. Keys are '/'-separated paths relative to ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def where(self) -> str:
        """Human-readable location, for error messages."""
        return str(self.root)

    def read_bytes(self, key: str) -> bytes | None:
        """Contents of ``key``, or None if it does not exist."""
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """Contents of ``key`` and their SHA-256 (the tag compare-and-swap compares)."""
        data = self.read_bytes(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def replace_if(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """Replace ``key`` atomically if it still has ``expected_tag`` (None: only if absent)."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.parent / f".{target.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self.read_tagged(key)
            if (current[1] if current else None) != expected_tag:
                return False
            durable.replace_atomic(target, data)
            return True
        finally:
            os.close(fd)  # closing releases the lock

    def list_children(self, key: str) -> list[str]:
        """Names directly below the folder ``key`` (empty if it does not exist)."""
        try:
            return sorted(p.name for p in (self.root / key).iterdir())
        except FileNotFoundError:
            return []

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return (self.root / key).exists()

    def local_path(self, key: str, sha256: str) -> Path | None:
        """The file itself, or None if missing."""
        path = self.root / key
        return path if path.is_file() else None

    def write_version(self, version: str, files: Mapping[str, Path], metadata: bytes) -> bool:
        """Build the version in ``.staging-<uuid>`` and rename it into place in one step.

        Returns False (and writes nothing) if ``versions/<version>`` already exists.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for name, src in files.items():
                durable.copy_durable(src, staging / name)
            durable.write_durable(staging / METADATA_FILE, metadata)
            durable.fsync_dir(staging)
            versions = self.root / VERSIONS_DIR
            versions.mkdir(exist_ok=True)
            try:
                os.rename(staging, versions / version)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return False
                raise
            durable.fsync_dir(versions)
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

"""Versioned model registry: publish, verify, promote and load models, on a folder or on S3.

Layout (the same relative keys on both backends; on S3 they live under ``s3://<bucket>/<prefix>/``)::

    production.json                 {"version": "v0002", "previous": "v0001", "promoted_at": "..."}
    versions/v0001/model.pkl        the dill-pickled model
    versions/v0001/reference.parquet  any other file the caller publishes
    versions/v0001/metadata.json    {"version", "created_at", "files": {name: {"sha256", "bytes"}}, ...}
    versions/v0002/...
    .staging-<uuid>/                local only: a version being built (ignored by readers)
    versions/vNNNN/.claim           S3 only: marks a version number as taken by a publisher

A version is *complete* once its ``metadata.json`` exists; readers ignore everything else.
Every file's SHA-256 is recorded in ``metadata.json`` and checked before a file is handed out,
and ``model.pkl`` is checked before it is unpickled (bytes are read once, hashed, then unpickled,
so nothing unverified ever reaches dill).

Atomicity argument. Publishing never touches ``production.json``; only ``promote`` does, and
that is a single atomic replace, so at every instant the pointer names a complete version:

- Local: a version is built in ``.staging-<uuid>`` (files and metadata fsynced) and appears in
  ``versions/`` through one ``os.rename`` of the whole folder, so ``versions/vNNNN`` is either
  absent or complete. A crash leaves at most a stale staging folder, which nothing reads.
  The pointer is written to a temp file, fsynced and ``os.replace``d over ``production.json``.
- S3: the publisher first claims ``versions/vNNNN/.claim`` with a conditional PUT
  (``If-None-Match: *``), uploads the files, then writes ``metadata.json`` last; a crash leaves
  files without metadata, which readers ignore. The pointer is a single PUT of
  ``production.json`` (S3 PUTs are atomic: readers see the old or the new object, never a mix).

Concurrent publishers: the next number is ``max(existing) + 1``; on local, ``os.rename`` onto an
existing version folder fails, on S3 the conditional claim fails, and the loser takes the next
number. (S3-compatible stores that ignore ``If-None-Match`` lose this protection: two racing
publishers could then mix files under one number, which the checksums would reveal on load.)

Credentials for S3 come only from the standard AWS chain (env vars, ~/.aws, instance role).

Authenticity. A checksum stored next to the file proves integrity, not origin: whoever can write the
bucket can replace both. Set ``TABPIPE_REGISTRY_SIGNING_KEY`` (a secret, from the environment) and
every published version carries an HMAC-SHA256 of its version id and file checksums; ``load_model``
then refuses, before unpickling, any version without a valid signature.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import dill
from pydantic import model_validator

from tabpipe.config_base import StrictModel
from tabpipe.errors import RegistryError

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
POINTER_FILE = "production.json"
VERSIONS_DIR = "versions"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_RESERVED_METADATA_KEYS = ("version", "created_at", "files", "signature")
SIGNING_KEY_ENV = "TABPIPE_REGISTRY_SIGNING_KEY"


def _signature(version: str, digests: dict) -> str | None:
    """HMAC-SHA256 of the version id and file checksums with the signing key; None without a key."""
    key = os.environ.get(SIGNING_KEY_ENV)
    if not key:
        return None
    message = json.dumps({"version": version, "files": digests}, sort_keys=True).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
_CHUNK = 1 << 20
_MAX_PUBLISH_ATTEMPTS = 100
_CLIENT_LOCK = threading.Lock()


class RegistryConfig(StrictModel):
    """The ``registry:`` section of pipeline.yaml. Never holds credentials."""

    backend: Literal["local", "s3"] = "local"
    path: Path = Path("model_registry")
    bucket: str | None = None
    prefix: str = "tabpipe"
    endpoint_url: str | None = None
    region: str | None = None

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


# --------------------------------------------------------------------------- helpers


def _version_id(number: int) -> str:
    """Format a version number: 3 -> "v0003"."""
    return f"v{number:04d}"


def _version_number(version: str) -> int | None:
    """Parse "v0003" -> 3; None for anything that is not a version id."""
    match = _VERSION_RE.match(version)
    return int(match.group(1)) if match else None


def _sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now_iso() -> str:
    """Current UTC time, ISO-8601 with offset."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value: object) -> object:
    """Let numpy scalars/arrays, paths and datetimes through ``json.dumps``; refuse the rest."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def _fsync_dir(path: Path) -> None:
    """Make a rename/creation inside ``path`` durable (no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` and fsync them."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _copy_durable(src: Path, dst: Path) -> None:
    """Copy a file and fsync the copy."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
        fout.flush()
        os.fsync(fout.fileno())


def _save_stream(body, path: Path) -> bool:
    """Write a streaming S3 body to ``path`` (fsynced); True when done."""
    with open(path, "wb") as fh:
        fh.writelines(body.iter_chunks(_CHUNK))
        fh.flush()
        os.fsync(fh.fileno())
    return True


# --------------------------------------------------------------------------- backends


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

    def replace_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or overwrite ``key`` (temp file, fsync, os.replace)."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            _write_durable(tmp, data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

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
        """A local path holding ``key``'s bytes (the file itself here), or None if missing."""
        path = self.root / key
        return path if path.is_file() else None

    def write_version(self, version: str, files: dict[str, Path], metadata: bytes) -> bool:
        """Build the version in ``.staging-<uuid>`` and rename it into place in one step.

        Returns False (and writes nothing) if ``versions/<version>`` already exists.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for name, src in files.items():
                _copy_durable(src, staging / name)
            _write_durable(staging / METADATA_FILE, metadata)
            _fsync_dir(staging)
            versions = self.root / VERSIONS_DIR
            versions.mkdir(exist_ok=True)
            try:
                os.rename(staging, versions / version)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return False
                raise
            _fsync_dir(versions)
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class S3Backend:
    """Registry stored under ``s3://<bucket>/<prefix>/``; downloads are cached locally.

    Every S3 request goes through ``_call``, the one place where boto errors become
    ``RegistryError`` messages naming the bucket.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        client=None,
        cache_dir: Path | None = None,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client if client is not None else self._make_client(endpoint_url, region)
        root = cache_dir or os.environ.get("TABPIPE_CACHE_DIR") or Path.home() / ".cache" / "tabpipe"
        self.cache_dir = Path(root) / "s3" / bucket / (self.prefix or "_")

    @staticmethod
    def _make_client(endpoint_url: str | None, region: str | None):
        """A boto3 S3 client; credentials come from the standard AWS chain only.

        Uses boto3's default session (cheap after the first client); boto3 sessions are not
        thread-safe, hence the lock.
        """
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10)
        with _CLIENT_LOCK:
            return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    @property
    def where(self) -> str:
        """Human-readable location, for error messages."""
        url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{url} ({self.endpoint_url})" if self.endpoint_url else url

    def _key(self, key: str) -> str:
        """Full object key for a registry-relative key."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: str, ok_codes: tuple[str, ...] = (), then=None, **kwargs):
        """Run one S3 request (and ``then(response)``, e.g. reading the body) with boto errors
        turned into RegistryError; None if it fails with an error code in ``ok_codes``."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            response = getattr(self._client, op)(Bucket=self.bucket, **kwargs)
            return then(response) if then else response
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in ok_codes:
                return None
            raise RegistryError(self._describe(op, kwargs.get("Key"), code, error.get("Message"))) from exc
        except NoCredentialsError as exc:
            raise RegistryError(
                f"no AWS credentials for S3 bucket {self.bucket!r}: configure the standard AWS "
                "chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, or an instance role)"
            ) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise RegistryError(f"S3 {op} failed for bucket {self.bucket!r} at {self.where}: {exc}") from exc

    def _describe(self, op: str, key: str | None, code: str, message: str | None) -> str:
        """Message for a failed S3 request."""
        if code == "NoSuchBucket":
            return f"S3 bucket {self.bucket!r} does not exist ({self.where})"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"access denied to S3 bucket {self.bucket!r} ({code}, {self.where}); credentials come "
                "from the standard AWS chain (env vars, ~/.aws, instance role)"
            )
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket!r}"
        return f"S3 {op} on {target} failed: {code} {message or ''}".rstrip()

    def read_bytes(self, key: str) -> bytes | None:
        """Contents of ``key``, or None if it does not exist."""
        return self._call("get_object", ok_codes=("NoSuchKey",), then=lambda r: r["Body"].read(), Key=self._key(key))

    def replace_bytes(self, key: str, data: bytes) -> None:
        """Create or overwrite ``key`` with one PUT (atomic on S3)."""
        self._call("put_object", Key=self._key(key), Body=data)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist yet (If-None-Match: *); False if it did."""
        response = self._call(
            "put_object",
            ok_codes=("PreconditionFailed", "ConditionalRequestConflict"),
            Key=self._key(key),
            Body=data,
            IfNoneMatch="*",
        )
        return response is not None

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file to ``key``."""
        self._call("upload_file", Filename=str(path), Key=self._key(key))

    def list_children(self, key: str) -> list[str]:
        """Names directly below ``key/`` (sub-prefixes and objects)."""
        prefix = self._key(key).rstrip("/") + "/"
        names: set[str] = set()
        kwargs = {"Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self._call("list_objects_v2", **kwargs)
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(names)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self._call("head_object", ok_codes=("404", "NoSuchKey"), Key=self._key(key)) is not None

    def local_path(self, key: str, sha256: str) -> Path | None:
        """Cached local copy of ``key`` (downloaded if absent), or None if the object is missing.

        The cache path includes the expected SHA-256, so a version number re-used after a
        registry wipe never serves a stale file; the caller still verifies the bytes.
        """
        dest = self.cache_dir / Path(key).parent / sha256[:16] / Path(key).name
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        try:
            found = self._call(
                "get_object", ok_codes=("NoSuchKey",), then=lambda r: _save_stream(r["Body"], tmp), Key=self._key(key)
            )
            if not found:
                return None
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def write_version(self, version: str, files: dict[str, Path], metadata: bytes) -> bool:
        """Claim the number, upload the files, then metadata.json last (marks it complete).

        Returns False if another publisher already claimed ``version``.
        """
        base = f"{VERSIONS_DIR}/{version}"
        if not self.put_bytes_if_absent(f"{base}/.claim", b""):
            return False
        for name, src in files.items():
            self.put_file(f"{base}/{name}", src)
        if not self.put_bytes_if_absent(f"{base}/{METADATA_FILE}", metadata):
            raise RegistryError(f"{version} was completed by another publisher in {self.where}")
        return True


# --------------------------------------------------------------------------- registry


class ModelRegistry:
    """Versions, the production pointer and verified loading, on top of a backend."""

    def __init__(self, backend):
        self.backend = backend

    @classmethod
    def from_config(cls, cfg: RegistryConfig) -> ModelRegistry:
        """Build the registry described by the ``registry:`` config section."""
        if cfg.backend == "s3":
            return cls(S3Backend(cfg.bucket, cfg.prefix, endpoint_url=cfg.endpoint_url, region=cfg.region))
        return cls(LocalBackend(cfg.path))

    # ---- publishing

    def publish(self, files: dict[str, Path], metadata: dict) -> str:
        """Store ``files`` (must include model.pkl) and ``metadata`` as a new version.

        Does not move the production pointer. Returns the new version id.
        """
        files = self._check_files(files)
        clash = [k for k in _RESERVED_METADATA_KEYS if k in metadata]
        if clash:
            raise ValueError(f"metadata keys {clash} are reserved by the registry")
        digests = {
            name: {"sha256": _sha256_file(path), "bytes": path.stat().st_size}
            for name, path in files.items()
        }
        created_at = _now_iso()
        number = self._next_number()
        for _ in range(_MAX_PUBLISH_ATTEMPTS):
            version = _version_id(number)
            document = {"version": version, "created_at": created_at, "files": digests, **metadata}
            signature = _signature(version, digests)
            if signature:
                document["signature"] = signature
            payload = json.dumps(document, indent=2, default=_json_default).encode()
            if self.backend.write_version(version, files, payload):
                return version
            number = max(number + 1, self._next_number())
        raise RegistryError(f"could not find a free version number in {self.backend.where}")

    @staticmethod
    def _check_files(files: dict[str, Path]) -> dict[str, Path]:
        """Validate file names and paths; model.pkl is mandatory."""
        if MODEL_FILE not in files:
            raise ValueError(f"publish needs a {MODEL_FILE!r} file; got {sorted(files)}")
        checked = {}
        for name, path in files.items():
            if name == METADATA_FILE or name.startswith(".") or "/" in name or "\\" in name:
                raise ValueError(f"invalid registry file name {name!r}")
            path = Path(path)
            if not path.is_file():
                raise ValueError(f"file to publish does not exist: {path}")
            checked[name] = path
        return checked

    def _next_number(self) -> int:
        """max(existing version numbers, complete or not) + 1."""
        numbers = [_version_number(n) for n in self.backend.list_children(VERSIONS_DIR)]
        return max((n for n in numbers if n is not None), default=0) + 1

    # ---- production pointer

    def promote(self, version: str) -> None:
        """Atomically point production at ``version`` (which must be complete)."""
        self.metadata(version)
        pointer = self._read_pointer()
        current = pointer.get("version")
        previous = pointer.get("previous") if current == version else current
        document = {"version": version, "previous": previous, "promoted_at": _now_iso()}
        self.backend.replace_bytes(POINTER_FILE, json.dumps(document, indent=2).encode())

    def production_version(self) -> str | None:
        """The version production points at, or None (one small read)."""
        return self._read_pointer().get("version")

    def _read_pointer(self) -> dict:
        """Parsed production.json, or {} if there is none."""
        raw = self.backend.read_bytes(POINTER_FILE)
        if raw is None:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{POINTER_FILE} in {self.backend.where} is not valid JSON: {exc}") from exc

    # ---- reading

    def list_versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first."""
        production = self.production_version()
        infos = []
        for version in self._version_ids():
            meta = self._read_metadata(version)
            if meta is not None:
                infos.append(VersionInfo(version, meta.get("created_at", ""), version == production, meta))
        return infos

    def _version_ids(self) -> list[str]:
        """Every version id present (complete or not), oldest first."""
        ids = [n for n in self.backend.list_children(VERSIONS_DIR) if _version_number(n) is not None]
        return sorted(ids, key=_version_number)

    def _read_metadata(self, version: str) -> dict | None:
        """metadata.json of ``version``, or None if the version is absent or incomplete."""
        if _version_number(version) is None:
            return None
        raw = self.backend.read_bytes(f"{VERSIONS_DIR}/{version}/{METADATA_FILE}")
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{version}/{METADATA_FILE} in {self.backend.where} is not valid JSON") from exc

    def metadata(self, version: str) -> dict:
        """metadata.json of a complete version; RegistryError if there is no such version."""
        meta = self._read_metadata(version)
        if meta is None:
            available = [v.version for v in self.list_versions()]
            raise RegistryError(
                f"version {version} not found in registry {self.backend.where}; "
                f"available: {_summarise(available)}"
            )
        return meta

    def fetch(self, version: str, name: str) -> Path:
        """Local path of a version's file, verified against its recorded SHA-256."""
        meta = self.metadata(version)
        path = self._local_path(version, name, meta)
        self._check_digest(version, name, meta, _sha256_file(path), path)
        return path

    def load_model(self, version: str | None = None) -> tuple[object, dict]:
        """Unpickle a version's model.pkl (production by default) after verifying it."""
        if version is None:
            version = self.production_version()
            if version is None:
                raise RegistryError(
                    f"registry has no production model ({self.backend.where}); publish and promote a version"
                )
        meta = self.metadata(version)
        expected = _signature(version, meta.get("files", {}))
        if expected and not hmac.compare_digest(str(meta.get("signature", "")), expected):
            raise RegistryError(f"{version} is not signed with this registry's key ({SIGNING_KEY_ENV}); refusing to load it")
        path = self._local_path(version, MODEL_FILE, meta)
        data = path.read_bytes()
        self._check_digest(version, MODEL_FILE, meta, hashlib.sha256(data).hexdigest(), path)
        return dill.loads(data), meta

    def _local_path(self, version: str, name: str, meta: dict) -> Path:
        """Local (possibly cached) path of a listed file; RegistryError if unlisted or missing."""
        entry = meta.get("files", {}).get(name)
        if entry is None:
            raise RegistryError(f"{version} has no file {name!r}; files: {sorted(meta.get('files', {}))}")
        path = self.backend.local_path(f"{VERSIONS_DIR}/{version}/{name}", entry["sha256"])
        if path is None:
            raise RegistryError(f"{version}/{name} is missing from registry {self.backend.where}")
        return path

    @staticmethod
    def _check_digest(version: str, name: str, meta: dict, actual: str, path: Path) -> None:
        """RegistryError unless ``actual`` is the SHA-256 recorded for the file."""
        expected = meta["files"][name]["sha256"]
        if actual != expected:
            raise RegistryError(
                f"checksum mismatch for {version}/{name}: expected {expected}, got {actual} ({path})"
            )


def _summarise(versions: list[str]) -> str:
    """'v0001..v0003' for a contiguous run, else a comma list; 'none' if empty."""
    if not versions:
        return "none"
    numbers = [_version_number(v) for v in versions]
    if len(versions) > 2 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"{versions[0]}..{versions[-1]}"
    return ", ".join(versions)

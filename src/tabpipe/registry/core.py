"""ModelRegistry: publish signed versions, move a signed production pointer by compare-and-swap,
and load models only after their signature and checksums are verified.

Publishing never moves the pointer; nothing is unpickled before signature and SHA-256 check out; the
pointer's counter only grows; ``promote(version, expected=...)`` is a compare-and-swap.
Design notes: docs/serving.md#registry-invariants
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import dill

from tabpipe.errors import RegistryError
from tabpipe.jsonable import to_json_ready
from tabpipe.registry import durable, signing
from tabpipe.registry.base import (
    METADATA_FILE,
    MODEL_FILE,
    POINTER_FILE,
    RESERVED_METADATA_KEYS,
    VERSIONS_DIR,
    Backend,
    RegistryConfig,
    VersionInfo,
    default_cache_dir,
    is_file_name,
    is_sha256,
    version_id,
    version_number,
)
from tabpipe.registry.local import LocalBackend
from tabpipe.registry.s3 import S3Backend
from tabpipe.registry.signing import Keys

_MAX_PUBLISH_ATTEMPTS = 100
STATE_FILE = "production-counter.json"
# json.dumps' default= for metadata: NumPy values, paths and times pass; NaN/inf stay as they are; anything else is refused
_METADATA_JSON = partial(to_json_ready, nan_as_null=False, inf_as_null=False, strict=True)


class PromotionConflict(RegistryError):
    """Production is no longer the version the caller compared against (or moved while promoting)."""


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()  # ``promote(expected=ANY)``: move the pointer whatever production is (still atomic)


class ModelRegistry:
    """Versions, the production pointer and verified loading, on top of a ``Backend``."""

    def __init__(self, backend: Backend, *, keys: Keys = Keys(), require_signature: bool = True,
                 state_file: Path | None = None):
        if require_signature and keys.verify is None:
            raise RegistryError(f"registry {backend.where}: require_signature is on but no verify key was given; "
                                "refusing to read models that cannot be verified")
        self.backend, self.keys, self.require_signature = backend, keys, require_signature
        self.state_file = state_file
        self._lock = threading.Lock()
        self._highest_counter = self._stored_counter()

    @classmethod
    def from_config(cls, cfg: RegistryConfig, *, keys: Keys = Keys(), cache_dir: Path | None = None) -> ModelRegistry:
        """The registry described by the ``registry:`` section, with the caller's keys and cache folder.

        S3 downloads and the reader's highest-counter state live under ``cache_dir`` (required for S3).
        """
        if cfg.backend == "s3":
            if cache_dir is None:
                raise ValueError("an S3 registry needs a cache_dir from the caller")
            backend = S3Backend(cfg.bucket, cfg.prefix, cache_dir=cache_dir, endpoint_url=cfg.endpoint_url,
                                region=cfg.region, timeout_s=cfg.timeout_s, max_attempts=cfg.max_attempts)
            return cls(backend, keys=keys, require_signature=cfg.require_signature,
                       state_file=backend.cache_dir / STATE_FILE)
        return cls(LocalBackend(cfg.path), keys=keys, require_signature=cfg.require_signature)

    # ---- publishing

    def publish(self, files: Mapping[str, Path], metadata: Mapping,
                named: Callable[[str], Mapping[str, Path]] | None = None) -> str:
        """Store ``files`` (must include model.pkl) and ``metadata`` as a new, signed version.

        ``named``: files that name their version (the model card), written by ``named(version)`` once
        the version id is known (again, if that number was taken meanwhile); listed and signed like the
        others. Does not move the production pointer. Returns the new version id.
        """
        if self.keys.signing is None and self.require_signature:
            raise RegistryError("refusing to publish an unsigned version: registry.require_signature is on "
                                "and no signing key was given")
        files = _check_files(files)
        clash = [k for k in RESERVED_METADATA_KEYS if k in metadata]
        if clash:
            raise ValueError(f"metadata keys {clash} are reserved by the registry")
        digests = {name: {"sha256": durable.sha256_file(path), "bytes": path.stat().st_size}
                   for name, path in files.items()}
        created_at = _now_iso()
        number = self._next_number()
        for _ in range(_MAX_PUBLISH_ATTEMPTS):
            version = version_id(number)
            these, listed = files, digests
            if named is not None:
                extra = _check_named(named(version), files)
                these = {**files, **extra}
                listed = {**digests, **{name: {"sha256": durable.sha256_file(path), "bytes": path.stat().st_size}
                                        for name, path in extra.items()}}
            # normalised through JSON first, so the signed bytes are exactly what readers parse
            document = json.loads(json.dumps({"version": version, "created_at": created_at, "files": listed,
                                              **metadata}, default=_METADATA_JSON))
            if self.keys.signing is not None:
                document["signature"] = signing.sign(document, self.keys.signing)
            if self.backend.write_version(version, these, json.dumps(document, indent=2).encode()):
                return version
            number = max(number + 1, self._next_number())
        raise RegistryError(f"could not find a free version number in {self.backend.where}")

    def _next_number(self) -> int:
        """max(existing version numbers, complete or not) + 1."""
        numbers = [version_number(n) for n in self.backend.list_children(VERSIONS_DIR)]
        return max((n for n in numbers if n is not None), default=0) + 1

    def sign_version(self, version: str) -> dict:
        """(Re-)sign an existing version after checking every file against its recorded SHA-256.

        The migration path for versions published unsigned or with the old HMAC scheme: signing
        vouches for the version, so run it only on versions you know are genuine.
        """
        if self.keys.signing is None:
            raise RegistryError("signing a version needs the signing key")
        key = f"{VERSIONS_DIR}/{version}/{METADATA_FILE}"
        found = self.backend.read_tagged(key) if version_number(version) is not None else None
        if found is None:
            raise RegistryError(f"version {version} not found in registry {self.backend.where}")
        meta = _parse_json(found[0], f"{version}/{METADATA_FILE}", self.backend.where)
        _check_shape(version, meta)
        for name, entry in meta["files"].items():
            path = self.backend.local_path(f"{VERSIONS_DIR}/{version}/{name}", entry["sha256"])
            if path is None:
                raise RegistryError(f"{version}/{name} is missing from registry {self.backend.where}")
            _check_digest(version, name, entry["sha256"], durable.sha256_file(path), path)
        meta.pop("signature", None)
        meta["signature"] = signing.sign(meta, self.keys.signing)
        if not self.backend.replace_if(key, json.dumps(meta, indent=2).encode(), found[1]):
            raise RegistryError(f"{version}/{METADATA_FILE} changed while it was being signed; nothing was written")
        return meta

    # ---- production pointer

    def production_version(self) -> str | None:
        """The version production points at (verified, not rolled back), or None if there is none."""
        found = self.backend.read_tagged(POINTER_FILE)
        if found is None:
            if self._highest_counter > 0:
                state = f" (remembered in {self.state_file}; delete it if the registry was wiped on purpose)" \
                    if self.state_file else ""
                raise RegistryError(f"the production pointer of {self.backend.where} has disappeared after this "
                                    f"reader saw counter {self._highest_counter}{state}; refusing to treat it as empty")
            return None
        document, problem = self._check_pointer(found[0])
        if problem:
            raise RegistryError(f"production pointer {POINTER_FILE} of {self.backend.where} refused: {problem}")
        self._remember(document["counter"])
        return document["version"]

    def promote(self, version: str, *, expected: str | None | _Any = ANY) -> dict:
        """Point production at ``version`` (complete, verified) if production is still ``expected``.

        ``expected``: the version the caller compared against (None: "there was no production");
        ``ANY`` skips that check. Either way the write is a compare-and-swap against the pointer
        as read here. Raises ``PromotionConflict`` (nothing written) when production moved.
        Returns the new pointer document.
        """
        if self.keys.signing is None and self.require_signature:
            raise RegistryError("moving production needs the signing key (registry.require_signature is on)")
        self.metadata(version)  # complete, and signed by the trusted key
        found = self.backend.read_tagged(POINTER_FILE)
        current, problem = self._check_pointer(found[0]) if found else ({"version": None, "counter": 0}, None)
        if problem and expected is not ANY:
            raise PromotionConflict(f"production pointer is not trusted ({problem}); not promoting {version}")
        current_version = None if problem else current["version"]
        if expected is not ANY and current_version != expected:
            raise PromotionConflict(f"production is {current_version}, no longer {expected} (the version this "
                                    f"promotion was compared against); {version} was not promoted")
        counter = max(0 if problem else current["counter"], self._highest_counter) + 1
        document = {"version": version,
                    "previous": current.get("previous") if current_version == version else current_version,
                    "promoted_at": _now_iso(), "counter": max(counter, time.time_ns() // 1_000_000)}
        if self.keys.signing is not None:
            document["signature"] = signing.sign(document, self.keys.signing)
        if not self.backend.replace_if(POINTER_FILE, json.dumps(document, indent=2).encode(),
                                       found[1] if found else None):
            raise PromotionConflict(f"the production pointer changed while {version} was being promoted; "
                                    "nothing was written")
        self._remember(document["counter"])
        return document

    def _check_pointer(self, raw: bytes) -> tuple[dict, str | None]:
        """(pointer document, None) if it is well-formed, signed as required and not rolled back;
        else (whatever was parsed, the reason it is refused)."""
        try:
            document = json.loads(raw)
        except ValueError as exc:
            return {}, f"not valid JSON ({exc})"
        if not isinstance(document, dict) or version_number(document.get("version")) is None:
            return {}, "it does not name a version"
        counter = document.get("counter", 0)
        if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
            return document, "its counter is not a non-negative integer"
        problem = self._signature_problem(document)
        if problem:
            return document, problem
        document["counter"] = counter
        if counter < self._highest_counter:
            where = f" (remembered in {self.state_file})" if self.state_file else ""
            return document, (f"its counter {counter} is lower than {self._highest_counter}, already seen by this "
                              f"reader{where}: an older pointer was put back (rollback); promote again to fix")
        return document, None

    def _signature_problem(self, document: dict) -> str | None:
        """Why ``document`` is not acceptably signed, or None."""
        if self.keys.verify is None:  # only possible with require_signature off
            return None
        if "signature" not in document and not self.require_signature:
            return None
        return signing.verify(document, self.keys.verify)

    def _stored_counter(self) -> int:
        """The highest pointer counter persisted by earlier readers on this host (0 without state)."""
        try:
            value = json.loads(self.state_file.read_text())["counter"] if self.state_file else 0
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 0
        return value if isinstance(value, int) else 0

    def _remember(self, counter: int) -> None:
        """Raise the highest counter seen (memory, and the state file where there is one)."""
        with self._lock:
            if counter <= self._highest_counter:
                return
            self._highest_counter = max(counter, self._stored_counter())
            if self.state_file is not None:
                durable.replace_atomic(self.state_file, json.dumps({"counter": self._highest_counter}).encode())

    # ---- reading

    def list_versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first; ``problem`` says why one would be refused on load.

        An untrusted production pointer marks no version as production (``production_version``
        raises and says why), so the versions can still be listed to choose one to promote.
        """
        try:
            production = self.production_version()
        except RegistryError:
            production = None
        infos = []
        for version in self._version_ids():
            raw = self.backend.read_bytes(f"{VERSIONS_DIR}/{version}/{METADATA_FILE}")
            if raw is None:
                continue
            meta = _parse_json(raw, f"{version}/{METADATA_FILE}", self.backend.where)
            problem = self._metadata_problem(version, meta)
            created = meta.get("created_at", "") if isinstance(meta, dict) else ""
            infos.append(VersionInfo(version, str(created), version == production,
                                     meta if isinstance(meta, dict) else {}, problem))
        return infos

    def _version_ids(self) -> list[str]:
        """Every version id present (complete or not), oldest first."""
        ids = [n for n in self.backend.list_children(VERSIONS_DIR) if version_number(n) is not None]
        return sorted(ids, key=version_number)

    def metadata(self, version: str) -> dict:
        """Verified metadata.json of a complete version; RegistryError if absent, malformed or not trusted."""
        raw = None
        if version_number(version) is not None:
            raw = self.backend.read_bytes(f"{VERSIONS_DIR}/{version}/{METADATA_FILE}")
        if raw is None:
            available = [v for v in self._version_ids()
                         if self.backend.exists(f"{VERSIONS_DIR}/{v}/{METADATA_FILE}")]
            raise RegistryError(f"version {str(version)[:40]} not found in registry {self.backend.where}; "
                                f"available: {_summarise(available)}")
        meta = _parse_json(raw, f"{version}/{METADATA_FILE}", self.backend.where)
        problem = self._metadata_problem(version, meta)
        if problem:
            raise RegistryError(f"{version} in {self.backend.where} refused: {problem}")
        return meta

    def _metadata_problem(self, version: str, meta: object) -> str | None:
        """Why this metadata must not be trusted, or None."""
        try:
            _check_shape(version, meta)
        except RegistryError as exc:
            return str(exc)
        return self._signature_problem(meta)

    def fetch(self, version: str, name: str) -> Path:
        """Local path of a version's file, after verifying the signature and the file's SHA-256."""
        meta = self.metadata(version)
        path = self._local_path(version, name, meta)
        _check_digest(version, name, meta["files"][name]["sha256"], durable.sha256_file(path), path)
        return path

    def load_model(self, version: str | None = None) -> tuple[object, dict]:
        """Unpickle a version's model.pkl (production by default) after verifying signature and checksum."""
        if version is None:
            version = self.production_version()
            if version is None:
                raise RegistryError(
                    f"registry has no production model ({self.backend.where}); publish and promote a version")
        meta = self.metadata(version)
        path = self._local_path(version, MODEL_FILE, meta)
        data = path.read_bytes()
        _check_digest(version, MODEL_FILE, meta["files"][MODEL_FILE]["sha256"], hashlib.sha256(data).hexdigest(), path)
        return dill.loads(data), meta  # nosec B301: these bytes hash to the SHA-256 in signed metadata

    def _local_path(self, version: str, name: str, meta: dict) -> Path:
        """Local (possibly cached) path of a listed file; RegistryError if unlisted or missing."""
        entry = meta["files"].get(name) if isinstance(name, str) else None
        if entry is None:
            raise RegistryError(f"{version} has no file {str(name)[:80]!r}; files: {sorted(meta['files'])}")
        path = self.backend.local_path(f"{VERSIONS_DIR}/{version}/{name}", entry["sha256"])
        if path is None:
            raise RegistryError(f"{version}/{name} is missing from registry {self.backend.where}")
        return path


def open_registry(cfg: RegistryConfig, environ: Mapping[str, str], *, sign: bool,
                  config_file: str | Path = "pipeline.yaml") -> ModelRegistry:
    """The edge's one call: keys from ``environ``/key files, cache folder from ``environ``, then the registry.

    ``sign=True`` for publishers (training, promotion); readers get the public key only.
    """
    keys = signing.load_keys(cfg, environ, sign=sign, config_file=config_file)
    return ModelRegistry.from_config(cfg, keys=keys, cache_dir=default_cache_dir(environ))


# --------------------------------------------------------------------------- helpers


def _check_files(files: Mapping[str, Path]) -> dict[str, Path]:
    """Validate file names and paths; model.pkl is mandatory."""
    if MODEL_FILE not in files:
        raise ValueError(f"publish needs a {MODEL_FILE!r} file; got {sorted(files)}")
    checked = {}
    for name, path in files.items():
        if not is_file_name(name):
            raise ValueError(f"invalid registry file name {name!r}")
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"file to publish does not exist: {path}")
        checked[name] = path
    return checked


def _check_named(files: Mapping[str, Path], fixed: Mapping[str, Path]) -> dict[str, Path]:
    """Validate the files ``publish``'s ``named`` wrote; none may replace one of the ``fixed`` files."""
    clash = sorted(set(files) & set(fixed))
    if clash:
        raise ValueError(f"files {clash} are given twice to publish")
    checked = {}
    for name, path in files.items():
        if not is_file_name(name) or not Path(path).is_file():
            raise ValueError(f"invalid registry file {name!r} ({path})")
        checked[name] = Path(path)
    return checked


def _check_shape(version: str, meta: object) -> None:
    """RegistryError unless ``meta`` is a metadata document of ``version`` whose file entries are safe to use."""
    if not isinstance(meta, dict):
        raise RegistryError(f"{version}/{METADATA_FILE} is not a JSON object")
    if meta.get("version") != version:
        raise RegistryError(f"{version}/{METADATA_FILE} describes version {str(meta.get('version'))[:40]!r}, "
                            f"not {version} (copied from another version?)")
    files = meta.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise RegistryError(f"{version}/{METADATA_FILE} has no file list with {MODEL_FILE}")
    for name, entry in files.items():
        if not is_file_name(name) or not isinstance(entry, dict) or not is_sha256(entry.get("sha256")):
            raise RegistryError(f"{version}/{METADATA_FILE}: file entry {str(name)[:80]!r} is malformed "
                                "(a plain file name with a 64-hex-digit sha256 is expected)")


def _check_digest(version: str, name: str, expected: str, actual: str, path: Path) -> None:
    """RegistryError unless ``actual`` is the SHA-256 recorded for the file."""
    if actual != expected:
        raise RegistryError(f"checksum mismatch for {version}/{name}: expected {expected}, got {actual} ({path})")


def _parse_json(raw: bytes, what: str, where: str) -> object:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"{what} in {where} is not valid JSON: {exc}") from exc


def _now_iso() -> str:
    """Current UTC time, ISO-8601 with offset."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _summarise(versions: list[str]) -> str:
    """'v0001..v0003' for a contiguous run, else a comma list; 'none' if empty."""
    if not versions:
        return "none"
    numbers = [version_number(v) for v in versions]
    if len(versions) > 2 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"{versions[0]}..{versions[-1]}"
    return ", ".join(versions)

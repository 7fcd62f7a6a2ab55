"""S3Backend: the registry under ``s3://<bucket>/<prefix>/``, downloads cached in a local folder.

Publishing and promotion rely on S3's conditional PUTs; credentials come only from the standard AWS
chain; ``_call`` is the one place where boto errors become ``RegistryError`` messages.
Design notes: docs/serving.md#the-s3-backend
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

from tabpipe.errors import RegistryError
from tabpipe.registry import durable
from tabpipe.registry.base import METADATA_FILE, VERSIONS_DIR, is_sha256

_CLIENT_LOCK = threading.Lock()
_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class S3Backend:
    """Registry stored under ``s3://<bucket>/<prefix>/``; downloads are cached under ``cache_dir``."""

    def __init__(self, bucket: str, prefix: str, *, cache_dir: Path, endpoint_url: str | None = None,
                 region: str | None = None, client=None, timeout_s: float = 20.0, max_attempts: int = 3):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client if client is not None else self._make_client(endpoint_url, region, timeout_s, max_attempts)
        self.cache_dir = Path(cache_dir) / "s3" / bucket / (self.prefix or "_")

    @staticmethod
    def _make_client(endpoint_url: str | None, region: str | None, timeout_s: float, max_attempts: int):
        """A boto3 S3 client; credentials come from the standard AWS chain only.

        Uses boto3's default session (cheap after the first client); boto3 sessions are not
        thread-safe, hence the lock.
        """
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=timeout_s,
                        read_timeout=timeout_s)
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

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """Contents of ``key`` and its ETag (what ``replace_if`` sends back as If-Match)."""
        return self._call("get_object", ok_codes=("NoSuchKey",), then=lambda r: (r["Body"].read(), r["ETag"]),
                          Key=self._key(key))

    def replace_if(self, key: str, data: bytes, expected_tag: str | None) -> bool:
        """One conditional PUT: If-Match the ETag read, or If-None-Match: * when there was none."""
        condition = {"IfNoneMatch": "*"} if expected_tag is None else {"IfMatch": expected_tag}
        response = self._call("put_object", ok_codes=(*_CONFLICT_CODES, "NoSuchKey"), Key=self._key(key),
                              Body=data, **condition)
        return response is not None

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist yet (If-None-Match: *); False if it did."""
        return self.replace_if(key, data, None)

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

        The cache path includes the expected SHA-256 (checked to be 64 hex digits, never taken
        on trust), so a version number re-used after a registry wipe never serves a stale file;
        the caller still verifies the bytes.
        """
        if not is_sha256(sha256):
            raise RegistryError(f"refusing a cache path from a checksum that is not 64 hex digits: {sha256!r:.80}")
        dest = self.cache_dir / Path(key).parent / sha256[:16] / Path(key).name
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        try:
            found = self._call("get_object", ok_codes=("NoSuchKey",), Key=self._key(key),
                               then=lambda r: durable.save_stream(r["Body"].iter_chunks(durable.CHUNK), tmp))
            if not found:
                return None
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def write_version(self, version: str, files: Mapping[str, Path], metadata: bytes) -> bool:
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

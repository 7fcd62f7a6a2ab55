"""Tests for the versioned model registry, on a local folder and on S3 (moto server mode)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import dill
import numpy as np
import pytest
from botocore.config import Config
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from helpers import evil_pickle
from tabpipe.errors import RegistryError
from tabpipe.registry import ModelRegistry, RegistryConfig, durable
from tabpipe.registry import local as local_mod
from tabpipe.registry.local import LocalBackend
from tabpipe.registry.s3 import S3Backend

PREFIX = "team/tabpipe"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def aws_env(aws_credentials):
    """Fake credentials through the standard AWS chain (conftest) for every test here."""


@dataclass
class Env:
    """A registry plus a way to overwrite its stored bytes behind its back."""

    kind: str
    registry: ModelRegistry
    put_raw: Callable[[str, bytes], None]  # registry-relative key -> bytes, bypassing the registry


def _s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _new_bucket(endpoint: str) -> str:
    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    _s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def env(request, tmp_path, registry_keys) -> Env:
    """The same registry API on both backends (signing on, with the session's keys)."""
    if request.param == "local":
        root = tmp_path / "registry"

        def put_raw(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        return Env("local", ModelRegistry.from_config(RegistryConfig(path=root), keys=registry_keys), put_raw)

    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = _new_bucket(endpoint)
    client = _s3_client(endpoint)
    cfg = RegistryConfig(backend="s3", bucket=bucket, prefix=PREFIX, endpoint_url=endpoint, region="us-east-1")

    def put_raw(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=data)

    return Env("s3", ModelRegistry.from_config(cfg, keys=registry_keys, cache_dir=tmp_path / "cache"), put_raw)


# --------------------------------------------------------------------------- helpers

X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1], [0.1, 0.7], [0.8, 0.3]])
Y = np.array([0, 1, 0, 1, 0, 1])


def _publish(reg: ModelRegistry, folder: Path, c: float, **extra) -> str:
    """Fit a tiny LogisticRegression(C=c), dill it, publish it with a reference file."""
    model = LogisticRegression(C=c).fit(X, Y)
    folder = folder / uuid.uuid4().hex
    folder.mkdir()
    (folder / "model.pkl").write_bytes(dill.dumps(model))
    (folder / "reference.parquet").write_bytes(f"reference for C={c}".encode())
    metadata = {
        "metrics": {"roc_auc": np.float64(0.9)},
        "schema": {"x1": "float", "x2": "float"},
        "data_fingerprint": "abc123",
        "run_id": f"run-{c}",
        "package_versions": {"scikit-learn": "1.x"},
        **extra,
    }
    files = {"model.pkl": folder / "model.pkl", "reference.parquet": folder / "reference.parquet"}
    return reg.publish(files, metadata)


def test_evil_payload_really_fires(tmp_path):
    """Guard for the tamper tests: the payload does have a side effect when unpickled."""
    sentinel = tmp_path / "fired"
    dill.loads(evil_pickle(sentinel))
    assert sentinel.exists()


# --------------------------------------------------------------------------- round trip


def test_publish_list_promote_load_round_trip(env, tmp_path):
    reg = env.registry
    version = _publish(reg, tmp_path, c=1.0)
    assert version == "v0001"

    [info] = reg.list_versions()
    assert info.version == "v0001" and not info.is_production
    assert info.created_at.endswith("+00:00")
    assert reg.production_version() is None

    reg.promote(version)
    assert reg.production_version() == "v0001"
    assert [v.is_production for v in reg.list_versions()] == [True]

    model, meta = reg.load_model()
    assert isinstance(model, LogisticRegression) and model.C == 1.0
    assert list(model.predict(X)) == list(Y)
    assert meta["version"] == "v0001" and meta["run_id"] == "run-1.0"
    assert meta["metrics"]["roc_auc"] == 0.9
    assert set(meta["files"]) == {"model.pkl", "reference.parquet"}
    assert len(meta["files"]["model.pkl"]["sha256"]) == 64
    assert reg.metadata("v0001") == meta

    ref = reg.fetch("v0001", "reference.parquet")
    assert ref.read_bytes() == b"reference for C=1.0"
    assert meta["files"]["reference.parquet"]["bytes"] == len(b"reference for C=1.0")
    if env.kind == "s3":
        assert str(ref).startswith(str(tmp_path / "cache"))


def test_version_numbers_increase_and_rollback(env, tmp_path):
    reg = env.registry
    versions = [_publish(reg, tmp_path, c=c) for c in (1.0, 2.0, 3.0)]
    assert versions == ["v0001", "v0002", "v0003"]
    assert [v.version for v in reg.list_versions()] == versions

    reg.promote("v0003")
    assert reg.load_model()[0].C == 3.0

    reg.promote("v0001")  # rollback
    assert reg.production_version() == "v0001"
    assert reg.load_model()[0].C == 1.0
    pointer = json.loads(reg.backend.read_bytes("production.json"))
    assert pointer["version"] == "v0001" and pointer["previous"] == "v0003"
    assert "promoted_at" in pointer
    assert reg.load_model("v0002")[0].C == 2.0  # any version can still be loaded explicitly


def test_empty_registry(env):
    reg = env.registry
    assert reg.production_version() is None
    assert reg.list_versions() == []
    with pytest.raises(RegistryError, match="registry has no production model"):
        reg.load_model()


def test_unknown_version_and_file(env, tmp_path):
    reg = env.registry
    for c in (1.0, 2.0, 3.0):
        _publish(reg, tmp_path, c=c)
    with pytest.raises(RegistryError, match=r"version v0007 not found in registry .*available: v0001\.\.v0003"):
        reg.load_model("v0007")
    with pytest.raises(RegistryError, match="v0007 not found"):
        reg.promote("v0007")
    with pytest.raises(RegistryError, match="not found"):
        reg.metadata("../../etc")
    with pytest.raises(RegistryError, match="has no file 'nope.csv'"):
        reg.fetch("v0001", "nope.csv")
    assert reg.production_version() is None


def test_publish_rejects_bad_input(env, tmp_path):
    reg = env.registry
    other = tmp_path / "x.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="model.pkl"):
        reg.publish({"x.bin": other}, {})
    with pytest.raises(ValueError, match="reserved"):
        reg.publish({"model.pkl": other}, {"version": "v9"})
    assert reg.list_versions() == []


# --------------------------------------------------------------------------- integrity


def test_tampered_model_detected_before_unpickling(env, tmp_path):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    reg.promote("v0001")
    sentinel = tmp_path / "unpickled"
    env.put_raw("versions/v0001/model.pkl", evil_pickle(sentinel))

    with pytest.raises(RegistryError, match="checksum mismatch for v0001/model.pkl: expected [0-9a-f]{64}, got"):
        reg.load_model()
    with pytest.raises(RegistryError, match="checksum mismatch"):
        reg.fetch("v0001", "model.pkl")
    assert not sentinel.exists()


def test_tampered_extra_file_detected(env, tmp_path):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    env.put_raw("versions/v0001/reference.parquet", b"not the reference")
    with pytest.raises(RegistryError, match="checksum mismatch for v0001/reference.parquet"):
        reg.fetch("v0001", "reference.parquet")


def test_missing_file_reported(env, tmp_path):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    if env.kind == "local":
        (reg.backend.root / "versions/v0001/model.pkl").unlink()
    else:
        reg.backend._client.delete_object(Bucket=reg.backend.bucket, Key=f"{PREFIX}/versions/v0001/model.pkl")
    with pytest.raises(RegistryError, match="v0001/model.pkl is missing"):
        reg.load_model("v0001")


def test_s3_tampered_cache_file_detected(moto_endpoint, tmp_path, registry_keys):
    bucket = _new_bucket(moto_endpoint)
    reg = ModelRegistry(S3Backend(bucket, PREFIX, endpoint_url=moto_endpoint, cache_dir=tmp_path / "cache"),
                        keys=registry_keys)
    _publish(reg, tmp_path, c=1.0)
    reg.promote("v0001")
    assert reg.load_model()[0].C == 1.0  # populates the cache

    [cached] = (tmp_path / "cache").rglob("model.pkl")
    sentinel = tmp_path / "unpickled"
    cached.write_bytes(evil_pickle(sentinel))
    with pytest.raises(RegistryError, match="checksum mismatch for v0001/model.pkl"):
        reg.load_model()
    with pytest.raises(RegistryError, match="checksum mismatch"):
        reg.fetch("v0001", "model.pkl")
    assert not sentinel.exists()


# --------------------------------------------------------------------------- crash safety


def test_crash_while_moving_pointer_keeps_old_production(env, tmp_path, monkeypatch):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    reg.promote("v0001")
    _publish(reg, tmp_path, c=2.0)

    def crash(*args, **kwargs):
        raise OSError("simulated crash while writing the pointer")

    if env.kind == "local":
        monkeypatch.setattr(durable.os, "replace", crash)  # temp pointer written, not yet swapped
    else:
        monkeypatch.setattr(reg.backend._client, "put_object", crash)
    with pytest.raises(OSError, match="simulated crash"):
        reg.promote("v0002")
    monkeypatch.undo()

    assert reg.production_version() == "v0001"
    assert reg.load_model()[0].C == 1.0
    if env.kind == "local":
        assert [p.name for p in reg.backend.root.iterdir() if p.name.endswith(".tmp")] == []


def test_crash_midway_through_publish_leaves_registry_intact(env, tmp_path, monkeypatch):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    reg.promote("v0001")

    calls = []

    def crash_on_second_file(original):
        def wrapper(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                raise RuntimeError("simulated crash after the first file was written")
            return original(*args, **kwargs)

        return wrapper

    if env.kind == "local":
        monkeypatch.setattr(durable, "copy_durable", crash_on_second_file(durable.copy_durable))
        monkeypatch.setattr(local_mod.shutil, "rmtree", lambda *a, **k: None)  # a real crash cleans nothing
    else:
        monkeypatch.setattr(reg.backend, "put_file", crash_on_second_file(reg.backend.put_file))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _publish(reg, tmp_path, c=2.0)
    monkeypatch.undo()

    if env.kind == "local":  # the half-built version really is left behind, in staging
        [staging] = [p for p in reg.backend.root.iterdir() if p.name.startswith(".staging-")]
        assert (staging / "model.pkl").exists() and not (staging / "metadata.json").exists()
    else:  # the half-uploaded version really is in the bucket, without metadata.json
        assert reg.backend.exists("versions/v0002/model.pkl")
        assert not reg.backend.exists("versions/v0002/metadata.json")

    assert [v.version for v in reg.list_versions()] == ["v0001"]
    assert reg.production_version() == "v0001"
    assert reg.load_model()[0].C == 1.0
    with pytest.raises(RegistryError, match="v0002 not found"):
        reg.promote("v0002")

    new = _publish(reg, tmp_path, c=3.0)  # the registry keeps working afterwards
    assert new == ("v0002" if env.kind == "local" else "v0003")  # S3 never reuses a claimed number
    reg.promote(new)
    assert reg.load_model()[0].C == 3.0


def test_leftovers_from_crashes_are_ignored(env, tmp_path):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    reg.promote("v0001")
    fake_meta = json.dumps({"version": "v0002", "files": {}}).encode()
    if env.kind == "local":
        env.put_raw(".staging-deadbeef/model.pkl", b"half a model")
        env.put_raw(".staging-deadbeef/metadata.json", fake_meta)
        env.put_raw("versions/.staging-junk/metadata.json", fake_meta)
    env.put_raw("versions/v0005/model.pkl", b"half a model")  # partial version: no metadata.json

    assert [v.version for v in reg.list_versions()] == ["v0001"]
    assert reg.load_model()[0].C == 1.0
    with pytest.raises(RegistryError, match="v0005 not found"):
        reg.load_model("v0005")
    assert _publish(reg, tmp_path, c=2.0) == "v0006"  # numbers above leftovers, never over them
    assert [v.version for v in reg.list_versions()] == ["v0001", "v0006"]


def test_racing_publisher_takes_next_number(env, tmp_path, monkeypatch):
    reg = env.registry
    _publish(reg, tmp_path, c=1.0)
    stale = iter([1])  # this publisher first believes v0001 is free (another one just took it)
    real_next = reg._next_number
    monkeypatch.setattr(reg, "_next_number", lambda: next(stale, None) or real_next())

    assert _publish(reg, tmp_path, c=2.0) == "v0002"
    assert reg.load_model("v0001")[0].C == 1.0  # the winner's version is untouched
    assert reg.load_model("v0002")[0].C == 2.0
    assert reg.metadata("v0002")["version"] == "v0002"


# --------------------------------------------------------------------------- S3 errors and config


def test_s3_missing_bucket_names_the_bucket(moto_endpoint, tmp_path, registry_keys):
    cfg = RegistryConfig(backend="s3", bucket="no-such-bucket-tabpipe", endpoint_url=moto_endpoint)
    reg = ModelRegistry.from_config(cfg, keys=registry_keys, cache_dir=tmp_path)
    with pytest.raises(RegistryError, match="S3 bucket 'no-such-bucket-tabpipe' does not exist"):
        reg.production_version()
    with pytest.raises(RegistryError, match="no-such-bucket-tabpipe"):
        reg.list_versions()


def test_s3_unreachable_endpoint_names_the_bucket(tmp_path, registry_keys):
    endpoint = "http://127.0.0.1:9"  # discard port: nothing listens
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    reg = ModelRegistry(S3Backend("models", "p", endpoint_url=endpoint, client=client, cache_dir=tmp_path),
                        keys=registry_keys)
    with pytest.raises(RegistryError, match="bucket 'models'"):
        reg.production_version()


def test_config_validation(tmp_path, registry_keys):
    with pytest.raises(ValidationError, match="registry.bucket is not set"):
        RegistryConfig(backend="s3")
    with pytest.raises(ValidationError):
        RegistryConfig(backend="s3", bucket="b", aws_secret_access_key="x")  # credentials never from config
    assert RegistryConfig().require_signature is True  # on by default
    assert isinstance(ModelRegistry.from_config(RegistryConfig(path=tmp_path), keys=registry_keys).backend, LocalBackend)
    s3 = ModelRegistry.from_config(RegistryConfig(backend="s3", bucket="b", prefix="/p/"), keys=registry_keys,
                                   cache_dir=tmp_path).backend
    assert isinstance(s3, S3Backend) and s3.where == "s3://b/p"
    assert s3.cache_dir == tmp_path / "s3" / "b" / "p"  # the caller's cache folder, not the environment

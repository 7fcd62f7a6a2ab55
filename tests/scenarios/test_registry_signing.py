"""Signed registry: unsigned, forged, altered, copied or rolled-back content is refused before any
unpickling; keys are loaded from the environment or files handed in by the caller."""
from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from pathlib import Path

import dill
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from helpers import evil_pickle
from tabpipe.errors import ConfigError, RegistryError
from tabpipe.registry import Keys, ModelRegistry, RegistryConfig, open_registry
from tabpipe.registry.base import SIGNING_KEY_ENV, VERIFY_KEY_ENV
from tabpipe.registry.core import STATE_FILE
from tabpipe.registry.signing import generate_keypair, load_keys, sign, write_keypair

X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
Y = np.array([0, 1, 0, 1])


def _keys(pem: bytes) -> Keys:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem, password=None)
    return Keys(signing=key, verify=key.public_key())


@pytest.fixture
def other_keys() -> Keys:
    """A second keypair: what a forger who does not hold the real private key would use."""
    return _keys(generate_keypair()[0])


def _model_file(folder: Path, c: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model-{uuid.uuid4().hex}.pkl"
    path.write_bytes(dill.dumps(LogisticRegression(C=c).fit(X, Y)))
    return path


def _publish(reg: ModelRegistry, tmp_path: Path, c: float = 1.0) -> str:
    return reg.publish({"model.pkl": _model_file(tmp_path / "src", c)}, {"metrics": {"roc_auc": 0.9}})


def _meta_path(root: Path, version: str) -> Path:
    return root / "versions" / version / "metadata.json"


def _plant_evil_model(root: Path, version: str, marker: Path) -> None:
    """The attack from issue 9: replace model.pkl and write its real SHA-256 into metadata.json."""
    import hashlib

    evil = evil_pickle(marker)
    (root / "versions" / version / "model.pkl").write_bytes(evil)
    meta = json.loads(_meta_path(root, version).read_text())
    meta["files"]["model.pkl"] = {"sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}
    _meta_path(root, version).write_text(json.dumps(meta))


@pytest.fixture
def local(tmp_path, registry_keys) -> ModelRegistry:
    return ModelRegistry.from_config(RegistryConfig(path=tmp_path / "reg"), keys=registry_keys)


def test_evil_pickle_really_runs_code(tmp_path):
    """Guard: the payload used below does have a side effect when unpickled."""
    marker = tmp_path / "fired"
    dill.loads(evil_pickle(marker))
    assert marker.exists()


def test_signed_round_trip_and_what_is_signed(local, tmp_path, registry_keys):
    version = _publish(local, tmp_path, c=2.0)
    local.promote(version)
    meta = local.metadata(version)
    assert meta["signature"]["alg"] == "ed25519" and len(base64.b64decode(meta["signature"]["value"])) == 64
    model, loaded_meta = local.load_model()
    assert model.C == 2.0 and loaded_meta == meta
    pointer = json.loads((tmp_path / "reg" / "production.json").read_text())
    assert pointer["version"] == version and pointer["counter"] > 0 and pointer["signature"]["alg"] == "ed25519"
    # a reader holding only the public key verifies, but cannot publish or move production
    reader = ModelRegistry.from_config(RegistryConfig(path=tmp_path / "reg"), keys=Keys(verify=registry_keys.verify))
    assert reader.load_model()[0].C == 2.0
    with pytest.raises(RegistryError, match="refusing to publish an unsigned version"):
        _publish(reader, tmp_path)
    with pytest.raises(RegistryError, match="needs the signing key"):
        reader.promote(version)


def test_tampered_model_with_matching_checksum_is_never_unpickled(local, tmp_path):
    version = _publish(local, tmp_path)
    local.promote(version)
    marker = tmp_path / "pwned"
    _plant_evil_model(tmp_path / "reg", version, marker)
    with pytest.raises(RegistryError, match="does not match its content: forged or altered"):
        local.load_model()
    with pytest.raises(RegistryError, match="forged or altered"):
        local.fetch(version, "model.pkl")
    with pytest.raises(RegistryError, match="forged or altered"):
        local.promote(version)
    assert not marker.exists()
    [info] = local.list_versions()
    assert "forged or altered" in info.problem


def test_unsigned_version_refused_and_signed_later(local, tmp_path, registry_keys):
    unsigned_reg = ModelRegistry.from_config(RegistryConfig(path=tmp_path / "reg", require_signature=False))
    version = _publish(unsigned_reg, tmp_path, c=3.0)
    assert "signature" not in local.metadata.__self__.backend.read_bytes(f"versions/{version}/metadata.json").decode()
    with pytest.raises(RegistryError, match="it is not signed"):
        local.load_model(version)
    with pytest.raises(RegistryError, match="it is not signed"):
        local.promote(version)
    # with signing off, that registry loads it (checksum only): the opt-out still works
    unsigned_reg.promote(version)
    assert unsigned_reg.load_model()[0].C == 3.0
    # migration: the key holder vouches for it after a checksum check; then it loads under signing
    local.sign_version(version)
    assert local.load_model(version)[0].C == 3.0


def test_old_hmac_signature_is_refused_with_a_way_out(local, tmp_path):
    version = _publish(local, tmp_path)
    meta = json.loads(_meta_path(tmp_path / "reg", version).read_text())
    meta["signature"] = "a" * 64  # what tabpipe's HMAC scheme wrote
    _meta_path(tmp_path / "reg", version).write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="old-style HMAC signature.*tabpipe models sign"):
        local.load_model(version)


def test_version_signed_by_another_key_is_refused(local, tmp_path, other_keys):
    forger = ModelRegistry.from_config(RegistryConfig(path=tmp_path / "reg"), keys=other_keys)
    version = _publish(forger, tmp_path)
    marker = tmp_path / "pwned"
    with pytest.raises(RegistryError, match="signed by key .* not by the trusted key"):
        local.load_model(version)
    assert not marker.exists()


def test_altered_metadata_and_copied_version_are_refused(local, tmp_path):
    import shutil

    v1 = _publish(local, tmp_path, c=1.0)
    root = tmp_path / "reg"
    meta = json.loads(_meta_path(root, v1).read_text())
    meta["metrics"]["roc_auc"] = 0.99  # a better-looking model, same bytes
    _meta_path(root, v1).write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="forged or altered"):
        local.metadata(v1)
    v2 = _publish(local, tmp_path, c=2.0)
    shutil.copytree(root / "versions" / v2, root / "versions" / "v0009")  # a validly signed v0002, as v0009
    with pytest.raises(RegistryError, match="describes version 'v0002', not v0009"):
        local.load_model("v0009")


def test_pointer_unsigned_or_forged_is_refused(local, tmp_path, other_keys):
    version = _publish(local, tmp_path)
    pointer = tmp_path / "reg" / "production.json"
    pointer.write_text(json.dumps({"version": version, "previous": None, "promoted_at": "x"}))
    with pytest.raises(RegistryError, match="production pointer .* refused: it is not signed"):
        local.production_version()
    document = {"version": version, "previous": None, "promoted_at": "x", "counter": 10**15}
    document["signature"] = sign(document, other_keys.signing)
    pointer.write_text(json.dumps(document))
    with pytest.raises(RegistryError, match="refused: it is signed by key"):
        local.load_model()
    # the key holder repairs it: a promotion replaces an untrusted pointer, with a fresh counter
    local.promote(version)
    assert local.production_version() == version


def test_rolled_back_pointer_is_refused(local, tmp_path, registry_keys):
    root = tmp_path / "reg"
    v1, v2 = _publish(local, tmp_path, c=1.0), _publish(local, tmp_path, c=2.0)
    local.promote(v1)
    old_pointer = (root / "production.json").read_bytes()  # validly signed, production = v1
    local.promote(v2)
    reader = ModelRegistry.from_config(RegistryConfig(path=root), keys=Keys(verify=registry_keys.verify))
    assert reader.load_model()[0].C == 2.0
    (root / "production.json").write_bytes(old_pointer)  # an attacker replays the old signed pointer
    with pytest.raises(RegistryError, match=r"counter \d+ is lower than \d+, already seen by this reader"):
        reader.production_version()
    with pytest.raises(RegistryError, match="rollback"):
        local.load_model()
    # a legitimate rollback is a new promotion of the old version, with a higher counter
    local.promote(v1)
    assert reader.load_model()[0].C == 1.0


def test_rolled_back_pointer_refused_across_restarts_where_a_cache_exists(moto_endpoint, s3_bucket, tmp_path,
                                                                          registry_keys):
    endpoint, bucket = moto_endpoint, s3_bucket
    cfg = RegistryConfig(backend="s3", bucket=bucket, prefix="p", endpoint_url=endpoint, region="us-east-1")
    writer = ModelRegistry.from_config(cfg, keys=registry_keys, cache_dir=tmp_path / "writer-cache")
    v1, v2 = _publish(writer, tmp_path, 1.0), _publish(writer, tmp_path, 2.0)
    writer.promote(v1)
    old = writer.backend.read_bytes("production.json")
    writer.promote(v2)
    verify_only = Keys(verify=registry_keys.verify)
    cache = tmp_path / "server-cache"
    assert ModelRegistry.from_config(cfg, keys=verify_only, cache_dir=cache).production_version() == v2
    assert (cache / "s3" / bucket / "p" / STATE_FILE).is_file()
    writer.backend.replace_if("production.json", old, writer.backend.read_tagged("production.json")[1])
    restarted = ModelRegistry.from_config(cfg, keys=verify_only, cache_dir=cache)  # a new process, same host
    with pytest.raises(RegistryError, match=r"lower than \d+, already seen by this reader \(remembered in"):
        restarted.production_version()
    # the documented residual risk: a reader with no state at all cannot tell an old pointer from a new one
    fresh = ModelRegistry.from_config(cfg, keys=verify_only, cache_dir=tmp_path / "fresh-cache")
    assert fresh.production_version() == v1


def test_fetch_never_uses_metadata_as_a_path(moto_endpoint, s3_bucket, tmp_path):
    """Even with signing off, checksums and names from metadata are validated before they touch a path."""
    endpoint, bucket = moto_endpoint, s3_bucket
    cfg = RegistryConfig(backend="s3", bucket=bucket, prefix="p", endpoint_url=endpoint, region="us-east-1",
                         require_signature=False)
    reg = ModelRegistry.from_config(cfg, cache_dir=tmp_path / "cache")
    version = reg.publish({"model.pkl": _model_file(tmp_path / "src"), "reference.parquet": _model_file(tmp_path / "r")},
                          {})
    meta = json.loads(reg.backend.read_bytes(f"versions/{version}/metadata.json"))
    outside = tmp_path / "outside"
    meta["files"]["reference.parquet"]["sha256"] = f"/{outside}/x"  # was: sha256[:16] became a path
    reg.backend._client.put_object(Bucket=bucket, Key=f"p/versions/{version}/metadata.json", Body=json.dumps(meta))
    with pytest.raises(RegistryError, match="file entry 'reference.parquet' is malformed"):
        reg.fetch(version, "reference.parquet")
    meta["files"]["reference.parquet"]["sha256"] = "0" * 64
    meta["files"]["../../escape"] = {"sha256": "0" * 64, "bytes": 1}
    reg.backend._client.put_object(Bucket=bucket, Key=f"p/versions/{version}/metadata.json", Body=json.dumps(meta))
    with pytest.raises(RegistryError, match="file entry '../../escape' is malformed"):
        reg.fetch(version, "../../escape")
    assert not outside.exists() and not (tmp_path / "escape").exists()
    assert all(str(p).startswith(str(tmp_path / "cache")) for p in tmp_path.rglob("*") if "cache" in p.parts)
    with pytest.raises(RegistryError, match="not 64 hex digits"):  # the backend refuses on its own too
        reg.backend.local_path("versions/v0001/model.pkl", "../../../../etc")


def test_require_signature_without_keys_is_an_error_never_a_silent_accept(tmp_path):
    cfg = RegistryConfig(path=tmp_path / "reg")
    with pytest.raises(RegistryError, match="require_signature is on but no verify key"):
        ModelRegistry.from_config(cfg)
    with pytest.raises(ConfigError, match=r"registry.require_signature: is on, and reading models needs .*"
                                          r"TABPIPE_REGISTRY_VERIFY_KEY"):
        open_registry(cfg, {}, sign=False, config_file="p.yaml")
    with pytest.raises(ConfigError, match="publishing needs the Ed25519 private key: set \\$TABPIPE_REGISTRY_SIGNING_KEY"):
        open_registry(cfg, {}, sign=True, config_file="p.yaml")
    # with signing explicitly off, no key is needed
    assert open_registry(cfg.model_copy(update={"require_signature": False}), {}, sign=True).keys == Keys()


def test_load_keys_from_env_and_files(tmp_path):
    private_pem, public_pem = generate_keypair()
    cfg = RegistryConfig(path=tmp_path)
    one_line = private_pem.decode().replace("\n", "\\n")  # how a PEM often travels in an env file
    keys = load_keys(cfg, {SIGNING_KEY_ENV: one_line}, sign=True)
    assert keys.signing is not None and keys.verify is not None
    reader = load_keys(cfg, {VERIFY_KEY_ENV: public_pem.decode()}, sign=False)
    assert reader.signing is None and reader.verify is not None
    assert load_keys(cfg, {SIGNING_KEY_ENV: private_pem.decode()}, sign=False).signing is None  # readers never sign
    private_path, public_path = write_keypair(tmp_path / "keys")
    assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    assert (tmp_path / "keys" / ".gitignore").read_text().strip().endswith("*")
    files = cfg.model_copy(update={"signing_key_file": private_path, "verify_key_file": public_path})
    assert load_keys(files, {}, sign=True).signing is not None
    with pytest.raises(FileExistsError, match="already exists"):
        write_keypair(tmp_path / "keys")
    with pytest.raises(ConfigError, match="HMAC secret of older tabpipe versions is no longer used"):
        load_keys(cfg, {SIGNING_KEY_ENV: "s3cret"}, sign=True)
    with pytest.raises(ConfigError, match="not the public half of the signing key"):
        load_keys(cfg, {SIGNING_KEY_ENV: private_pem.decode(), VERIFY_KEY_ENV: public_path.read_text()}, sign=True)
    with pytest.raises(ConfigError, match="does not hold an Ed25519 public key"):
        load_keys(cfg, {VERIFY_KEY_ENV: "nope"}, sign=False)


def test_deleted_pointer_is_not_taken_for_an_empty_registry(local, tmp_path):
    """Deleting production.json must not turn a serving reader into 'no model' silently."""
    local.promote(_publish(local, tmp_path))
    (tmp_path / "reg" / "production.json").unlink()
    with pytest.raises(RegistryError, match="has disappeared after this reader saw counter"):
        local.production_version()

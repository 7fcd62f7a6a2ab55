"""Ed25519 signatures over registry documents (version metadata, the production pointer).

The publisher (training, ``models promote``) holds the private key and signs; readers (the
service, ``predict``) hold only the public key and verify, so a serving host cannot sign.
What is signed is the canonical JSON of the whole document without its ``signature`` field
(sorted keys, no spaces), so every field — version id, file checksums, metrics, the pointer's
counter — is covered. Keys are read by ``load_keys`` from the environment mapping and the files
named in the config, both handed in by the caller (CLI, service start-up, pipeline construction).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tabpipe.errors import ConfigError
from tabpipe.registry import durable
from tabpipe.registry.base import RegistryConfig

ALGORITHM = "ed25519"
SIGNING_KEY_NAME = "registry-signing.pem"
VERIFY_KEY_NAME = "registry-verify.pem"


@dataclass(frozen=True)
class Keys:
    """The keys one process holds: ``signing`` only on a publisher, ``verify`` wherever models are read."""

    signing: Ed25519PrivateKey | None = None
    verify: Ed25519PublicKey | None = None


def signed_bytes(document: Mapping) -> bytes:
    """The bytes that are signed: the document without ``signature``, sorted keys, compact."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: first 16 hex digits of SHA-256 of its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(document: Mapping, key: Ed25519PrivateKey) -> dict:
    """The ``signature`` field for ``document``: algorithm, key id, base64 Ed25519 signature."""
    value = base64.b64encode(key.sign(signed_bytes(document))).decode()
    return {"alg": ALGORITHM, "key_id": key_id(key.public_key()), "value": value}


def verify(document: Mapping, key: Ed25519PublicKey) -> str | None:
    """None if ``document['signature']`` is a valid signature of it by ``key``; else why not."""
    signature = document.get("signature")
    if signature is None:
        return "it is not signed"
    if not isinstance(signature, dict):
        return "it carries an old-style HMAC signature, which is no longer accepted (re-sign it: tabpipe models sign)"
    if signature.get("alg") != ALGORITHM:
        return f"its signature algorithm {str(signature.get('alg'))[:40]!r} is not {ALGORITHM}"
    expected_id = key_id(key)
    if signature.get("key_id") != expected_id:
        return f"it is signed by key {str(signature.get('key_id'))[:40]!r}, not by the trusted key {expected_id}"
    try:
        key.verify(base64.b64decode(str(signature.get("value", "")), validate=True), signed_bytes(document))
    except (InvalidSignature, binascii.Error, ValueError):
        return f"its signature (key {expected_id}) does not match its content: forged or altered"
    return None


# --------------------------------------------------------------------------- keys


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 keypair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def write_keypair(directory: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write a new keypair into ``directory``: the private key mode 0600, the public key 0644, and a
    ``.gitignore`` that keeps the folder out of git.

    Refuses to overwrite an existing private key unless ``force`` (that would orphan every
    version signed with it).
    """
    directory = Path(directory)
    private_path, public_path = directory / SIGNING_KEY_NAME, directory / VERIFY_KEY_NAME
    if private_path.exists() and not force:
        raise FileExistsError(f"{private_path} already exists (use --force to replace it: versions signed "
                              "with the old key then no longer verify)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ignore = directory / ".gitignore"
    if not ignore.exists():  # never committed, whatever the enclosing repository ignores
        ignore.write_text("# written by `tabpipe keys generate`: keys never go into git\n*\n")
    private, public = generate_keypair()
    durable.replace_atomic(private_path, private, mode=0o600)
    durable.replace_atomic(public_path, public, mode=0o644)
    os.chmod(private_path, 0o600)
    return private_path, public_path


def _pem(text: str | bytes) -> bytes:
    """PEM bytes; a one-line environment value with literal ``\\n`` separators is accepted too."""
    raw = text.encode() if isinstance(text, str) else text
    return raw.replace(b"\\n", b"\n").strip() + b"\n"


def _read_source(environ: Mapping[str, str], env_name: str, file: Path | None) -> tuple[bytes, str] | None:
    """(PEM bytes, where they came from) from the env var if set, else from the file if it exists."""
    value = environ.get(env_name, "")
    if value.strip():
        return _pem(value), f"${env_name}"
    if file is not None and Path(file).is_file():
        return _pem(Path(file).read_bytes()), str(file)
    return None


def _private_key(pem: bytes, source: str, config_file: str, key: str) -> Ed25519PrivateKey:
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        loaded = None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(config_file, key, f"{source} does not hold an unencrypted Ed25519 private key in PEM "
                          "(the HMAC secret of older tabpipe versions is no longer used; create a keypair with "
                          "`tabpipe keys generate`)")
    return loaded


def _public_key(pem: bytes, source: str, config_file: str, key: str) -> Ed25519PublicKey:
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        loaded = None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ConfigError(config_file, key, f"{source} does not hold an Ed25519 public key in PEM "
                          "(`tabpipe keys generate` writes one)")
    return loaded


def load_keys(cfg: RegistryConfig, environ: Mapping[str, str], *, sign: bool,
              config_file: str | Path = "pipeline.yaml") -> Keys:
    """The keys this process needs, from ``environ`` (the env var named in the config) or the key file.

    ``sign=True`` (publishers): the private key is required when ``require_signature`` is on.
    Readers need the public key (``verify_key_env``/``verify_key_file``, or derived from a private
    key that happens to be present); with ``require_signature`` on, having none is a ConfigError,
    never a silent accept.
    """
    config_file = str(config_file)
    verify_found = _read_source(environ, cfg.verify_key_env, cfg.verify_key_file)
    signing = None
    if sign or verify_found is None:  # a reader touches the private key only to derive a missing public key
        found = _read_source(environ, cfg.signing_key_env, cfg.signing_key_file)
        if found is not None:
            signing = _private_key(*found, config_file, "registry.signing_key_env")
        elif sign and cfg.require_signature:
            where = f" or the file {cfg.signing_key_file}" if cfg.signing_key_file else ""
            raise ConfigError(config_file, "registry.require_signature",
                              f"is on, and publishing needs the Ed25519 private key: set ${cfg.signing_key_env}"
                              f"{where} (create a keypair with `tabpipe keys generate`)")
    verify = None
    if verify_found is not None:
        verify = _public_key(*verify_found, config_file, "registry.verify_key_env")
        if signing is not None and key_id(verify) != key_id(signing.public_key()):
            raise ConfigError(config_file, "registry.verify_key_env",
                              f"the verify key {verify_found[1]} is not the public half of the signing key")
    elif signing is not None:
        verify = signing.public_key()
    elif cfg.require_signature:
        where = f" or the file {cfg.verify_key_file}" if cfg.verify_key_file else ""
        raise ConfigError(config_file, "registry.require_signature",
                          f"is on, and reading models needs the Ed25519 public key: set ${cfg.verify_key_env}"
                          f"{where} (`tabpipe keys generate` writes a keypair; give servers only the public key)")
    return Keys(signing=signing if sign else None, verify=verify)

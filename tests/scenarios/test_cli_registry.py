"""`tabpipe keys generate`, `tabpipe models promote` (verify + load first, compare-and-swap),
`tabpipe models sign` and `models list`'s verified column, on small hand-published registries."""
from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import dill
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from helpers import evil_pickle, make_project, registry_of
from tabpipe.cli import app

X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
Y = np.array([0, 1, 0, 1])


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _publish(registry, tmp_path: Path, obj) -> str:
    path = tmp_path / f"m-{uuid.uuid4().hex}.pkl"
    path.write_bytes(dill.dumps(obj))
    return registry.publish({"model.pkl": path}, {"metrics": {"roc_auc": 0.8}})


@pytest.fixture
def project(tmp_path):
    config = make_project(tmp_path / "p", rows=200)
    registry = registry_of(config)
    v1 = _publish(registry, tmp_path, LogisticRegression().fit(X, Y))
    registry.promote(v1)
    return config, registry


def test_keys_generate(tmp_path):
    result = invoke("keys", "generate", "--dir", tmp_path / "k")
    assert result.exit_code == 0, result.output
    private = tmp_path / "k" / "registry-signing.pem"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600 and b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "k" / "registry-verify.pem").read_bytes()
    again = invoke("keys", "generate", "--dir", tmp_path / "k")
    assert again.exit_code == 1 and "already exists" in again.output
    assert invoke("keys", "generate", "--dir", tmp_path / "k", "--force").exit_code == 0


def test_promote_proves_the_version_loads_and_refuses_tampered(project, tmp_path):
    config, registry = project
    v2 = _publish(registry, tmp_path, LogisticRegression(C=2.0).fit(X, Y))
    not_a_model = _publish(registry, tmp_path, {"weights": [1, 2, 3]})
    result = invoke("models", "promote", not_a_model, "--config", config)
    assert result.exit_code == 1 and "not a model with predict_proba" in result.output
    marker = tmp_path / "pwned"
    model_path = Path(yaml.safe_load(config.read_text())["registry"]["path"]) / "versions" / v2 / "model.pkl"
    original = model_path.read_bytes()
    model_path.write_bytes(evil_pickle(marker))
    result = invoke("models", "promote", v2, "--config", config)
    assert result.exit_code == 1 and "v0002 did not load, production unchanged: checksum mismatch" in result.output
    assert not marker.exists() and registry.production_version() == "v0001"
    model_path.write_bytes(original)
    checked = invoke("models", "verify", v2, "--config", config)
    assert checked.exit_code == 0 and "v0002: signature, 1 file checksum(s) and loading verified" in checked.output
    result = invoke("models", "promote", v2, "--config", config)
    assert result.exit_code == 0 and "production: v0001 -> v0002" in result.output
    assert registry.production_version() == v2


def test_promote_needs_the_signing_key(project, monkeypatch):
    config, registry = project
    monkeypatch.delenv("TABPIPE_REGISTRY_SIGNING_KEY")  # a serving host: public key only
    result = invoke("models", "promote", "v0001", "--config", config)
    assert result.exit_code == 2 and "publishing needs the Ed25519 private key" in result.output
    listed = invoke("models", "list", "--config", config)  # reading works with the public key
    assert listed.exit_code == 0 and "v0001" in listed.output


def test_models_sign_migrates_an_unsigned_version(project, tmp_path):
    config, registry = project
    root = Path(yaml.safe_load(config.read_text())["registry"]["path"])
    v2 = _publish(registry, tmp_path, LogisticRegression(C=3.0).fit(X, Y))
    meta_path = root / "versions" / v2 / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["signature"] = "0" * 64  # as the old HMAC scheme left it
    meta_path.write_text(json.dumps(meta))
    listed = invoke("models", "list", "--config", config)
    assert listed.exit_code == 0 and "NO: it carries an old-style HMAC signature" in listed.output
    assert invoke("models", "promote", v2, "--config", config).exit_code == 1
    result = invoke("models", "sign", v2, "--config", config)
    assert result.exit_code == 0 and f"signed {v2}" in result.output
    assert invoke("models", "promote", v2, "--config", config).exit_code == 0
    assert registry.load_model()[0].C == 3.0


def test_init_writes_a_keypair_the_config_names(tmp_path):
    from tabpipe.sources.sample import generate

    generate(300, seed=0).to_csv(tmp_path / "d.csv", index=False)
    result = invoke("init", "--data", tmp_path / "d.csv", "--target", "fault_flag", "--dir", tmp_path / "p")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((tmp_path / "p" / "pipeline.yaml").read_text())
    assert doc["registry"]["require_signature"] is True
    assert (tmp_path / "p" / doc["registry"]["signing_key_file"]).is_file()
    assert (tmp_path / "p" / doc["registry"]["verify_key_file"]).is_file()
    assert (tmp_path / "p" / ".tabpipe" / "keys" / ".gitignore").is_file()


def test_predict_never_runs_a_planted_pickle(project, tmp_path):
    """Issue 9's attack: model.pkl replaced by a pickle that runs code, its real SHA-256 written into
    metadata.json. `tabpipe predict` (a real process) refuses it before unpickling."""
    import hashlib
    import subprocess

    from helpers import TABPIPE_BIN

    config, registry = project
    root = Path(yaml.safe_load(config.read_text())["registry"]["path"])
    marker = tmp_path / "pwned"
    evil = evil_pickle(marker)
    (root / "versions" / "v0001" / "model.pkl").write_bytes(evil)
    meta_path = root / "versions" / "v0001" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["model.pkl"] = {"sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}
    meta_path.write_text(json.dumps(meta))
    rows = tmp_path / "rows.csv"
    rows.write_text("latency_ms\n1\n")
    result = subprocess.run([str(TABPIPE_BIN), "predict", "-i", str(rows), "-o", str(tmp_path / "out.csv"),
                             "--config", str(config)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 1, result.stderr
    assert "v0001" in result.stderr and "forged or altered" in result.stderr
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_models_list_with_an_untrusted_pointer_still_lists(project):
    config, registry = project
    root = Path(yaml.safe_load(config.read_text())["registry"]["path"])
    (root / "production.json").write_text('{"version": "v0001"}')  # unsigned: written by someone without the key
    result = invoke("models", "list", "--config", config)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "it is not signed" in result.output
    assert "v0001" in result.output and "*" not in result.output.split("v0001")[0].splitlines()[-1]
    repaired = invoke("models", "promote", "v0001", "--config", config)
    assert repaired.exit_code == 0 and "untrusted pointer -> v0001" in repaired.output
    assert registry.production_version() == "v0001"

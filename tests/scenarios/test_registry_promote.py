"""Promotion by compare-and-swap, on a local folder and on S3 (moto server on loopback): production
moves only from the version the caller compared against, and a pointer rewritten between the read
and the write is never overwritten."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

import dill
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tabpipe.errors import RegistryError
from tabpipe.registry import ANY, ModelRegistry, PromotionConflict, RegistryConfig

X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
Y = np.array([0, 1, 0, 1])


@pytest.fixture(params=["local", "s3"])
def make_registry(request, tmp_path, registry_keys):
    """A factory: each call opens another handle (its own process state) on the same registry."""
    if request.param == "local":
        cfg = RegistryConfig(path=tmp_path / "reg")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        cfg = RegistryConfig(backend="s3", bucket=bucket, prefix="p", endpoint_url=request.getfixturevalue("moto_endpoint"),
                             region="us-east-1")

    def make() -> ModelRegistry:
        return ModelRegistry.from_config(cfg, keys=registry_keys, cache_dir=tmp_path / f"cache-{uuid.uuid4().hex[:6]}")

    return make


def _publish(reg: ModelRegistry, tmp_path: Path, c: float) -> str:
    path = tmp_path / f"m-{uuid.uuid4().hex}.pkl"
    path.write_bytes(dill.dumps(LogisticRegression(C=c).fit(X, Y)))
    return reg.publish({"model.pkl": path}, {"metrics": {"roc_auc": c}})


def test_promote_only_from_the_expected_version(make_registry, tmp_path):
    reg = make_registry()
    v1, v2, v3 = (_publish(reg, tmp_path, c) for c in (1.0, 2.0, 3.0))
    with pytest.raises(PromotionConflict, match="production is None, no longer v0001"):
        reg.promote(v2, expected=v1)
    assert reg.production_version() is None
    reg.promote(v1, expected=None)  # first model: "there was no production"
    with pytest.raises(PromotionConflict, match="production is v0001, no longer None"):
        reg.promote(v2, expected=None)
    reg.promote(v3, expected=v1)
    assert reg.production_version() == v3
    with pytest.raises(PromotionConflict, match=f"production is {v3}, no longer {v1}.*{v2} was not promoted"):
        reg.promote(v2, expected=v1)  # a stale comparison never moves production
    assert reg.production_version() == v3 and reg.load_model()[0].C == 3.0
    reg.promote(v1)  # the operator's explicit rollback (expected=ANY) still works, and still atomically
    assert reg.production_version() == v1


def test_pointer_rewritten_between_read_and_write_is_not_overwritten(make_registry, tmp_path, monkeypatch):
    """The other writer lands exactly between our read of the pointer and our conditional write."""
    reg, other = make_registry(), make_registry()
    v1, v2, v3 = (_publish(reg, tmp_path, c) for c in (1.0, 2.0, 3.0))
    reg.promote(v1)
    real_read = reg.backend.read_tagged
    raced = []

    def read_then_lose_the_race(key):
        found = real_read(key)
        if key == "production.json" and not raced:
            raced.append(True)
            other.promote(v3, expected=v1)  # the better model wins while we hold a stale read
        return found

    monkeypatch.setattr(reg.backend, "read_tagged", read_then_lose_the_race)
    with pytest.raises(PromotionConflict, match="changed while v0002 was being promoted; nothing was written"):
        reg.promote(v2, expected=v1)
    monkeypatch.undo()
    assert raced and reg.production_version() == v3 and other.production_version() == v3


def test_racing_promotions_exactly_one_wins(tmp_path, registry_keys):
    """Eight writers, all having compared against v0001, promote at once: one wins, the rest are refused.

    On a local registry (the lock file). Not on moto: it checks If-Match and stores the object
    without a lock between the two steps, so truly simultaneous PUTs can both pass there (AWS S3
    itself is atomic); the S3 path is proven by the deterministic interleaving test above.
    """
    def make_registry() -> ModelRegistry:
        return ModelRegistry.from_config(RegistryConfig(path=tmp_path / "reg"), keys=registry_keys)

    setup = make_registry()
    base = _publish(setup, tmp_path, 1.0)
    setup.promote(base)
    candidates = [_publish(setup, tmp_path, 2.0 + i) for i in range(8)]
    registries = [make_registry() for _ in candidates]
    start, results = threading.Barrier(len(candidates)), {}

    def attempt(reg: ModelRegistry, version: str) -> None:
        start.wait()
        try:
            reg.promote(version, expected=base)
            results[version] = "promoted"
        except PromotionConflict:
            results[version] = "refused"

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(registries, candidates)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [v for v, r in results.items() if r == "promoted"]
    assert len(results) == len(candidates) and len(winners) == 1, results
    assert setup.production_version() == winners[0]


def test_untrusted_pointer_blocks_conditional_promotion(make_registry, tmp_path):
    reg = make_registry()
    v1, v2 = _publish(reg, tmp_path, 1.0), _publish(reg, tmp_path, 2.0)
    reg.promote(v1)
    reg.backend.replace_if("production.json", b'{"version": "v0002"}', reg.backend.read_tagged("production.json")[1])
    with pytest.raises(RegistryError, match="it is not signed"):
        reg.production_version()
    with pytest.raises(PromotionConflict, match="production pointer is not trusted"):
        reg.promote(v2, expected=v1)
    reg.promote(v2, expected=ANY)  # the key holder's explicit promotion repairs it
    assert reg.production_version() == v2

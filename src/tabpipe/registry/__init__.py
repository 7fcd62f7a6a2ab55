"""Versioned model registry: signed versions and production pointer, on a folder or on S3.

One module per concern: ``base`` (layout, config, backend protocol), ``durable`` (fsync/atomic
writes), ``local`` and ``s3`` (the backends), ``signing`` (Ed25519 keys and signatures), ``core``
(``ModelRegistry``). Callers build it with ``open_registry(cfg, os.environ, sign=...)`` at the edge.
"""
from tabpipe.registry.base import RegistryConfig, VersionInfo
from tabpipe.registry.core import ANY, ModelRegistry, PromotionConflict, open_registry
from tabpipe.registry.signing import Keys

__all__ = ["ANY", "Keys", "ModelRegistry", "PromotionConflict", "RegistryConfig", "VersionInfo", "open_registry"]

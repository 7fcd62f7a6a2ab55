"""The service's endpoints as Flask Blueprints, one module per group; each reads its app's ``ServiceState``.

- ``predict``: ``GET|POST /`` (the HTML form), ``POST /predict`` (JSON), ``POST /predict/csv`` (multipart CSV)
- ``admin``: ``GET /health``, ``GET /openapi.json``, ``GET /model``, ``GET /dashboard``, ``POST /train``
- ``uploads``: ``POST /outcomes``, ``POST /data`` (docs/uploads.md)
- ``probes``: ``GET /livez``, ``GET /readyz``, ``GET /metrics`` (docs/deploy.md)
"""
from __future__ import annotations

from tabpipe.serving.routes import admin, predict, probes, uploads

BLUEPRINTS = (admin.blueprint, predict.blueprint, uploads.blueprint, probes.blueprint)

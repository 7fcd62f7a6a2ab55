"""Probes and metrics for operators: ``GET /livez``, ``GET /readyz`` and ``GET /metrics`` (docs/deploy.md).

``/livez`` answers 200 while the process serves HTTP at all; ``/readyz`` answers 200 only once a verified
model is loaded (503 before, JSON either way): orchestrators route traffic on it. ``/metrics`` is the
Prometheus text format of every worker (``serving/metrics.py``); 404 when the app was built without metrics.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from tabpipe.serving.inputs import ApiError
from tabpipe.serving.state import current_state

blueprint = Blueprint("probes", __name__)


@blueprint.get("/livez")
def livez():
    """Liveness: the process answers."""
    return jsonify({"status": "alive"})


@blueprint.get("/readyz")
def readyz():
    """Readiness: 200 with the model version once a verified model is loaded, else 503 with the reason's code."""
    holder = current_state().holder
    current = holder.current
    if current is None:
        return jsonify({"status": "not_ready", "model_loaded": False, "reason": holder.public_error["code"]}), 503
    return jsonify({"status": "ready", "model_loaded": True, "model_version": current.version})


@blueprint.get("/metrics")
def metrics():
    """Prometheus metrics of all workers, in the text exposition format."""
    state = current_state()
    if state.metrics is None:
        raise ApiError(404, "metrics are off in this app")
    return state.metrics.exposition(state.prediction_log)

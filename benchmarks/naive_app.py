"""The naive baseline the service is compared with: the usual template's predict path.

Per request: parse JSON, build a one-row DataFrame, call the saved model's ``predict_proba``
(schema check + ColumnTransformer + estimator, all through pandas and scikit-learn). Same model,
same registry, same gunicorn settings as the real service.
"""
import io
import os

import pandas as pd
from flask import Flask, Response, jsonify, request

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.config import load_settings
from tabpipe.registry import open_registry


def create_naive_app(config: str | None = None) -> Flask:
    settings = load_settings(config or os.environ.get("TABPIPE_CONFIG", "config/pipeline.yaml"))
    model, meta = open_registry(settings.pipeline.registry, os.environ, sign=False,
                                config_file=settings.config_path).load_model()
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        payload = request.get_json()
        records = payload["records"] if "records" in payload else [payload]
        proba = model.predict_proba(pd.DataFrame(records))
        labels = model.labels_for(proba)
        return jsonify({"model_version": meta["version"], "predictions": [
            {"prediction": label.item() if hasattr(label, "item") else label, "probability": float(p)}
            for label, p in zip(labels, proba)]})

    @app.post("/predict/csv")
    def predict_csv():
        frame = pd.read_csv(io.BytesIO(request.files["file"].read()))
        proba = model.predict_proba(frame)
        frame["prediction"], frame["probability"] = model.labels_for(proba), proba
        return Response(frame.to_csv(index=False), mimetype="text/csv")

    return app

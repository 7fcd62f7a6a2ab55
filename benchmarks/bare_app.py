"""The floor of the serving benchmarks: a bare Flask app that echoes what it is sent, run under the same
gunicorn settings as the service (``gunicorn -c gunicorn.conf.py benchmarks.bare_app:app``).

POST /predict answers the parsed JSON body, GET /health a constant, POST /predict/csv the uploaded file:
what gunicorn + Flask cost before any model work.
"""
from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/predict")
def predict():
    """The JSON body, parsed and serialised again."""
    return jsonify(request.get_json())


@app.get("/health")
def health():
    """A constant answer."""
    return jsonify({"status": "ok"})


@app.post("/predict/csv")
def predict_csv():
    """The uploaded file, sent back."""
    return Response(request.files["file"].read(), mimetype="text/csv")

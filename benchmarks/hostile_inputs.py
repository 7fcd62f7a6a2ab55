"""Memory and answer of the service for hostile request bodies at the body limit (issue #9).

Trains a small model on generated data in a temporary folder, then, for each body, starts a fresh
Python process that builds the app (Flask test client, no network), measures its resident memory,
sends the body once and reports the status, the response size and the growth of peak RSS
(``ru_maxrss`` after minus RSS before). Run it against another checkout's code to compare, e.g.
``PYTHONPATH=/work/main/src .venv/bin/python benchmarks/hostile_inputs.py``.

Command: ``.venv/bin/python benchmarks/hostile_inputs.py [--mb 32]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, json, resource, sys, time
from pathlib import Path
config, kind, mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
from tabpipe.serving.app import create_app

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

size = int(mb * 1024 * 1024) - 1024
if kind == "json_empty_records":
    n = (size - 20) // 3
    body = b'{"records":[' + b"{}," * (n - 1) + b"{}]}"
elif kind == "csv_one_unknown_column":
    n = (size - 10) // 2
    body = b"x\n" + b"1\n" * n
elif kind == "csv_blank_feature_rows":
    header = sys.argv[4].encode()
    row = b"," * header.count(b",") + b"\n"
    n = (size - len(header)) // len(row)
    body = header + b"\n" + row * n
app = create_app(config)
client = app.test_client()
client.get("/health")
before = rss_mb()
start = time.perf_counter()
if kind.startswith("json"):
    resp = client.post("/predict", data=body, content_type="application/json")
else:
    resp = client.post("/predict/csv", data={"file": (io.BytesIO(body), "rows.csv")}, content_type="multipart/form-data")
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
app.extensions["tabpipe"]["holder"].stop()
print(json.dumps({"body": kind, "body_mb": round(len(body) / 2**20, 1), "status": resp.status_code,
                  "response_bytes": len(resp.data), "rss_before_mb": round(before), "peak_growth_mb": round(peak - before),
                  "seconds": round(seconds, 2), "answer": resp.get_data(as_text=True)[:160]}))
"""


def build(folder: Path) -> Path:
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline
    from tabpipe.sources.sample import generate

    generate(2000, seed=0).to_csv(folder / "data.csv", index=False)
    schema = yaml.safe_load((REPO / "schema.yaml").read_text())
    for spec in schema["columns"].values():   # strengths do not matter here; older checkouts lack the key
        spec.pop("hard", None)
    (folder / "schema.yaml").write_text(yaml.safe_dump(schema))
    (folder / "model.yaml").write_text(yaml.safe_dump({"candidates": [
        {"name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}]}))
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({
        "source": {"type": "file", "path": "data.csv"}, "schema": "schema.yaml",
        "validation": {"drift": {"enabled": False}}, "transformation": {"resampling": "none"},
        "training": {"models": "model.yaml", "cv_folds": 2, "n_jobs": 1},
        "evaluation": {"min_score": 0.5}, "registry": {"backend": "local", "path": "registry"},
        "serve": {"poll_interval_s": 0}}))
    config = folder / "pipeline.yaml"
    TrainingPipeline(load_settings(config), environ=os.environ).run()
    return config


def _signing_keys() -> dict:
    """A throw-away Ed25519 keypair in the environment (registry.require_signature is on by default)."""
    try:
        from tabpipe.registry.base import SIGNING_KEY_ENV, VERIFY_KEY_ENV
        from tabpipe.registry.signing import generate_keypair
    except ImportError:   # a checkout from before signed registries
        return {}
    signing, verify = (pem.decode() for pem in generate_keypair())
    return {SIGNING_KEY_ENV: signing, VERIFY_KEY_ENV: verify}


def main() -> None:
    os.environ.update(_signing_keys())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=32.0, help="body size (the default serve.max_body_mb)")
    parser.add_argument("--bodies", default="json_empty_records,csv_one_unknown_column,csv_blank_feature_rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = build(Path(tmp))
        features = [n for n, c in yaml.safe_load((REPO / "schema.yaml").read_text())["columns"].items()
                    if c.get("role", "feature") == "feature"]
        for kind in args.bodies.split(","):
            out = subprocess.run([sys.executable, "-c", CHILD, str(config), kind, str(args.mb), ",".join(features)],
                                 capture_output=True, text=True, timeout=900, env={**os.environ})
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else json.dumps(
                {"body": kind, "error": out.stderr[-600:]})
            print(line, flush=True)


if __name__ == "__main__":
    main()

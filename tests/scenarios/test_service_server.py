"""The real production server (`tabpipe serve`: gunicorn, shipped settings, 2 workers) under load while
the production pointer moves with `tabpipe models promote`: zero failed requests, both versions
seen, every answer computed by the version it names, and convergence to the last promoted one."""
from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from service_helpers import (
    Project, build_project, copy_project, http_request, post_json, registry_of, run_cli, running_server, sample_records,
    wait_until,
)

THREADS = 8
MIN_PER_THREAD = 150
MAX_PER_THREAD = 5000     # clients run until the promotes are done; this only bounds the loop
PAUSE_S = 0.06            # between requests: keeps the load continuous without starving the CLI of CPU
TOL = 1e-6


@pytest.fixture(scope="session")
def main_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "main")


@pytest.fixture(scope="module")
def server_project(main_project, tmp_path_factory):
    root = tmp_path_factory.mktemp("server") / "p"
    config = copy_project(main_project, root, production="v0001")
    return config


@pytest.fixture(scope="module")
def server(server_project, tmp_path_factory):
    log = tmp_path_factory.mktemp("server-log") / "gunicorn.log"
    with running_server(server_project, log, workers=2) as srv:
        srv.wait_healthy(90)
        yield srv
    assert srv.proc.returncode == 0, f"server did not stop cleanly on SIGTERM:\n{srv.log()[-3000:]}"


def test_promote_under_load_drops_nothing(server, server_project, main_project):
    registry = registry_of(server_project)
    assert registry.production_version() == "v0001"
    records = [sample_records(main_project, 3, seed=s) for s in (31, 32, 33)]
    expected = {v: [registry.load_model(v)[0].predict_proba(pd.DataFrame(r)) for r in records]
                for v in ("v0001", "v0002")}
    assert max(np.abs(expected["v0001"][i] - expected["v0002"][i]).max() for i in range(3)) > 0.01

    lock = threading.Lock()
    log: list[tuple[float, str]] = []       # (time, version) of every good answer
    failures: list = []
    counts = [0] * THREADS
    stop = threading.Event()
    deadline = time.monotonic() + 120

    def client(i: int):
        n = 0
        while n < MAX_PER_THREAD and time.monotonic() < deadline and (n < MIN_PER_THREAD or not stop.is_set()):
            k = (i + n) % 3
            n += 1
            try:
                status, body = post_json(server.port, "/predict", {"records": records[k]}, timeout=30)
            except Exception as exc:  # noqa: BLE001 - a dropped connection is a failure
                failures.append(("exception", repr(exc)))
                continue
            if status != 200:
                failures.append((status, body))
                continue
            version = body["model_version"]
            got = [p["probability"] for p in body["predictions"]]
            if version not in expected or not np.allclose(got, expected[version][k], rtol=0, atol=TOL):
                failures.append(("wrong answer", version, got))
                continue
            with lock:
                log.append((time.monotonic(), version))
            time.sleep(PAUSE_S)
        counts[i] = n

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(log) >= 100, 60, what="100 answers from v0001")
        done = run_cli("models", "promote", "v0002", "--config", str(server_project))
        assert done.returncode == 0, done.stderr
        promoted_at = time.monotonic()
        wait_until(lambda: any(v == "v0002" for t, v in list(log) if t > promoted_at), 20,
                   what="answers from v0002")
        n_v2 = len(log)
        wait_until(lambda: len(log) >= n_v2 + 200, 60, what="more answers")
        done = run_cli("models", "promote", "v0001", "--config", str(server_project))
        assert done.returncode == 0, done.stderr
        back_at = time.monotonic()

        def converged():
            after = [v for t, v in list(log) if t > back_at + 2.0]   # well past one poll interval (0.2 s)
            return len(after) >= 40 and set(after[-40:]) == {"v0001"}

        wait_until(converged, 30, what="every worker back on v0001")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == [], failures[:10]
    assert min(counts) >= MIN_PER_THREAD, counts
    versions = [v for _, v in log]
    assert len(versions) == sum(counts)
    assert {"v0001", "v0002"} <= set(versions)
    assert versions[-1] == "v0001"
    # converged: every further answer (any worker) comes from v0001
    for _ in range(30):
        status, body = post_json(server.port, "/predict", records[0][0])
        assert status == 200 and body["model_version"] == "v0001"
    status, _, body = http_request(server.port, "GET", "/health")
    assert status == 200 and json.loads(body)["model_version"] == "v0001"


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_predict_csv_through_the_server(server, server_project, main_project):
    registry = registry_of(server_project)
    version = wait_until(lambda: (v := json.loads(http_request(server.port, "GET", "/health")[2])["model_version"])
                         == registry.production_version() and v, 10, what="health")
    model, _ = registry.load_model(version)
    df = pd.read_csv(main_project.root / "data1.csv").sample(n=100, random_state=4).reset_index(drop=True)
    body, ctype = _multipart("file", "rows.csv", df.to_csv(index=False).encode())
    status, headers, data = http_request(server.port, "POST", "/predict/csv", body, {"Content-Type": ctype})
    assert status == 200, data[:500]
    assert headers["content-type"].startswith("text/csv")
    assert headers["x-model-version"] == version
    import io

    out = pd.read_csv(io.BytesIO(data))
    assert len(out) == 100 and list(out["measurement_id"]) == list(df["measurement_id"])
    np.testing.assert_allclose(out["probability"].to_numpy(float), model.predict_proba(df), rtol=0, atol=TOL)


def test_errors_are_json_through_the_server(server):
    status, headers, body = http_request(server.port, "POST", "/predict", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and headers["content-type"].startswith("application/json") and json.loads(body)["error"]
    status, headers, body = http_request(server.port, "POST", "/predict", b"{}", {"Content-Type": "text/plain"})
    assert status == 415 and json.loads(body)["error"]
    status, headers, body = http_request(server.port, "GET", "/nope")
    assert status == 404 and json.loads(body)["error"]
    status, headers, body = http_request(server.port, "GET", "/")
    assert status == 200 and b"<form" in body and headers["content-type"].startswith("text/html")

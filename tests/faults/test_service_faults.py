"""Abuse of the prediction service (pytest -m faults): hostile uploads, an OpenAPI-driven fuzzer, and a load
run with promotions mid-way. Real gunicorn on 127.0.0.1; requests are bounded in count and time.

Figures (max worker RSS growth, throughput, failed requests) are recorded with ``faults_figures.record``.
"""
from __future__ import annotations

import http.client
import json
import math
import random
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from faults_figures import record
from service_helpers import (
    REPO_SCHEMA, Project, build_project, copy_project, http_request, run_cli,
    running_server, sample_records,
)
from tabpipe.serving.app import create_app

pytestmark = pytest.mark.faults
FEATURES = [n for n, c in REPO_SCHEMA["columns"].items() if c.get("role", "feature") == "feature"]
RSS_GROWTH_LIMIT_MB = 400      # per worker, over its size after warm-up; the figure itself is recorded


@pytest.fixture(scope="session")
def main_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "main")


# --------------------------------------------------------------------------- OpenAPI + schemathesis

@pytest.fixture(scope="module")
def api_app(main_project, tmp_path_factory):
    config = copy_project(main_project, tmp_path_factory.mktemp("openapi") / "p", production="v0001")
    app = create_app(config)
    yield app
    app.extensions["tabpipe"]["holder"].stop()


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", api_app)


def test_openapi_document_describes_the_loaded_model(api_app):
    doc = api_app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.0")
    assert {"/predict", "/predict/csv", "/health", "/model", "/openapi.json"} <= set(doc["paths"])
    record_schema = doc["components"]["schemas"]["Record"]
    assert set(record_schema["properties"]) == set(FEATURES)
    assert record_schema["properties"]["latency_ms"]["type"] == "number"
    assert record_schema["properties"]["active_users"]["type"] == "integer"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_service_conforms_to_its_openapi_document(api_schema):
    """Generated (valid and invalid) requests for every documented operation: never a 5xx, every status,
    content type and body as documented. (Driven through schemathesis's Python API: its pytest plugin does
    not load with this pytest.)"""
    from hypothesis import given
    from hypothesis import strategies as st

    from schemathesis.generation.modes import GenerationMode

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/predict/csv", "/health", "/model"}
    calls = {"n": 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.data())
    def run(data):
        op = data.draw(st.sampled_from(operations))
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        case = data.draw(op.as_strategy(generation_mode=mode))
        case.call_and_validate(checks=CHECKS)
        calls["n"] += 1

    run()
    record("schemathesis", operations=len(operations), cases=calls["n"], checks=[c.__name__ for c in CHECKS])


# --------------------------------------------------------------------------- hostile requests

def _json_bodies(records: list[dict], n: int, rng: random.Random):
    """n hostile/odd JSON bodies: (body bytes, content type)."""
    kinds = ["valid", "wrong_types", "huge_numbers", "nul_bytes", "deep_nesting", "many_keys", "huge_string",
             "truncated", "utf16", "latin1", "random_bytes", "not_object", "records_mixed", "nan_literals", "empty"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rec = dict(rng.choice(records))
        if kind == "valid":
            body = json.dumps(rec).encode()
        elif kind == "wrong_types":
            key = rng.choice(FEATURES)
            rec[key] = rng.choice([[1, 2], {"a": 1}, True, "abc", -1e308, "", " ", "1_000"])
            body = json.dumps(rec).encode()
        elif kind == "huge_numbers":
            body = json.dumps({k: rng.choice([1e300, -1e300, 10 ** 400, "1e300"]) for k in FEATURES}).encode()
        elif kind == "nul_bytes":
            rec[rng.choice(FEATURES)] = "a\x00b"
            body = json.dumps(rec).encode().replace(b"a\\u0000b", b"a\\u0000b") + (b"\x00" if i % 2 else b"")
        elif kind == "deep_nesting":
            depth = rng.choice([100, 5_000, 100_000])
            body = b'{"records": ' + b"[" * depth + b"]" * depth + b"}"
        elif kind == "many_keys":
            body = json.dumps({f"k{j}": j for j in range(rng.choice([1_000, 50_000]))}).encode()
        elif kind == "huge_string":
            rec[rng.choice(FEATURES)] = "x" * rng.choice([10_000, 2_000_000])
            body = json.dumps(rec).encode()
        elif kind == "truncated":
            full = json.dumps({"records": [rec, rec]}).encode()
            body = full[: rng.randrange(1, len(full))]
        elif kind == "utf16":
            body = json.dumps(rec).encode("utf-16")
        elif kind == "latin1":
            rec["vendor"] = "Nökia\xff"
            body = json.dumps(rec, ensure_ascii=False).encode("latin-1")
        elif kind == "random_bytes":
            body = bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))
        elif kind == "not_object":
            body = json.dumps(rng.choice([[rec], "text", 42, None, {"records": rec}, {"records": [1, "a", None]}])).encode()
        elif kind == "records_mixed":
            batch = [dict(rng.choice(records)) for _ in range(rng.choice([2, 50, 500]))]
            for b in batch[::3]:
                b[rng.choice(FEATURES)] = rng.choice(["oops", None, 1e300, {"x": 1}])
            body = json.dumps({"records": batch}).encode()
        elif kind == "nan_literals":
            body = json.dumps(rec).replace(str(rec.get("latency_ms")), rng.choice(["NaN", "Infinity", "-Infinity"])).encode()
        else:
            body = b""
        yield body, "application/json"


def _multipart(payload: bytes, boundary: str = "tabpipefuzz") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _csv_payloads(records: list[dict], n: int, rng: random.Random):
    header = ",".join(FEATURES)
    good_rows = [",".join("" if r[f] is None else str(r[f]) for f in FEATURES) for r in records]
    kinds = ["valid", "huge_line", "many_columns", "unknown_column_many_rows", "nul_bytes", "utf16", "latin1",
             "e300_everywhere", "ragged", "quotes", "header_only", "binary", "missing_required", "duplicate_header"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "valid":
            payload = "\n".join([header, *rng.sample(good_rows, 20)]).encode()
        elif kind == "huge_line":
            payload = (header + "\n" + "9" * rng.choice([100_000, 20_000_000])).encode()
        elif kind == "many_columns":
            payload = (",".join(f"c{j}" for j in range(100_000)) + "\n" + ",".join("1" * 100_000)).encode()
        elif kind == "unknown_column_many_rows":
            payload = b"zz\n" + b"1\n" * rng.choice([1_000, 5_000_000])
        elif kind == "nul_bytes":
            payload = ("\n".join([header, *rng.sample(good_rows, 5)])).encode().replace(b",", b",\x00", 3)
        elif kind == "utf16":
            payload = "\n".join([header, *rng.sample(good_rows, 5)]).encode("utf-16")
        elif kind == "latin1":
            payload = "\n".join([header, *rng.sample(good_rows, 5)]).replace("Nokia", "Nökia\xff").encode("latin-1")
        elif kind == "e300_everywhere":
            payload = (header + "\n" + ",".join("1e300" for _ in FEATURES) + "\n"
                       + ",".join("-1e300" for _ in FEATURES)).encode()
        elif kind == "ragged":
            payload = "\n".join([header, "1,2,3", good_rows[0] + ",extra,extra"]).encode()
        elif kind == "quotes":
            payload = (header + '\n"unterminated' + good_rows[0]).encode()
        elif kind == "header_only":
            payload = header.encode()
        elif kind == "binary":
            payload = bytes(rng.randrange(256) for _ in range(4096))
        elif kind == "missing_required":
            payload = "\n".join([",".join(FEATURES[:-3]), *[",".join(r.split(",")[:-3]) for r in good_rows[:200]]]).encode()
        else:
            payload = ("\n".join([header + ",latency_ms", good_rows[0] + ",1"])).encode()
        yield _multipart(payload)


class _Watch:
    """Samples the gunicorn workers' RSS and polls /health while the abuse runs."""

    def __init__(self, server):
        self.server, self.stop_event = server, threading.Event()
        self.health_failures, self.health_polls = [], 0
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.server.proc.pid).children(recursive=True)

    def start(self):
        for w in self.workers():
            self.baseline[w.pid] = w.memory_info().rss
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_event.is_set():
            for w in self.workers():
                try:
                    rss = w.memory_info().rss
                except psutil.Error:
                    continue
                self.baseline.setdefault(w.pid, rss)
                self.peak[w.pid] = max(self.peak.get(w.pid, 0), rss)
            try:
                status, _, _ = http_request(self.server.port, "GET", "/health", timeout=10)
                self.health_polls += 1
                if status != 200:
                    self.health_failures.append(status)
            except OSError as exc:
                self.health_failures.append(repr(exc))
            time.sleep(0.25)

    def finish(self) -> float:
        self.stop_event.set()
        self.thread.join(10)
        return max(((self.peak[p] - self.baseline[p]) / 2**20 for p in self.peak), default=0.0)


def _send(port: int, path: str, body: bytes, content_type: str) -> int:
    try:
        status, _, _ = http_request(port, "POST", path, body, {"Content-Type": content_type}, timeout=120)
        return status
    except (OSError, http.client.HTTPException) as exc:  # a dropped connection counts as a failure
        return -1 if "Connection" in type(exc).__name__ or isinstance(exc, OSError) else -2


def test_hostile_uploads_never_5xx_and_memory_stays_bounded(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    records = sample_records(main_project, 300)
    rng = random.Random(20261130)
    with running_server(config, tmp_path / "server.log", workers=2) as server:
        server.wait_healthy()
        for body, ctype in _json_bodies(records, 30, random.Random(1)):   # warm-up: code paths loaded
            _send(server.port, "/predict", body, ctype)
        watch = _Watch(server).start()
        started = time.monotonic()
        statuses: dict[int, int] = {}
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(_send, server.port, "/predict", b, c) for b, c in _json_bodies(records, 10_000, rng)]
            jobs += [pool.submit(_send, server.port, "/predict/csv", b, c) for b, c in _csv_payloads(records, 1_000, rng)]
            for job in jobs:
                code = job.result()
                statuses[code] = statuses.get(code, 0) + 1
        seconds = time.monotonic() - started
        growth = watch.finish()
        alive = server.proc.poll() is None
        log = server.log()
    server_errors = {c: n for c, n in statuses.items() if c >= 500 or c < 0}
    record("hostile_uploads", requests=sum(statuses.values()), json=10_000, csv=1_000, seconds=round(seconds, 1),
           statuses=dict(sorted(statuses.items())), max_worker_rss_growth_mb=round(growth, 1),
           health_polls=watch.health_polls, health_failures=len(watch.health_failures))
    assert alive, log[-3000:]
    assert not server_errors, f"{server_errors} (server log tail):\n{log[-3000:]}"
    assert not watch.health_failures, watch.health_failures[:10]
    assert watch.health_polls > 10
    assert growth < RSS_GROWTH_LIMIT_MB, f"a worker grew by {growth:.0f} MB"
    assert "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------- load with promotions

@pytest.mark.serial   # timing: run alone, after the parallel phase (make test)
def test_load_with_two_promotions_no_failed_request_and_flat_memory(main_project, tmp_path):
    import os
    seconds = int(os.environ.get("TABPIPE_LOAD_SECONDS", "60"))
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    record_ = sample_records(main_project, 1)[0]
    body = json.dumps(record_).encode()
    script = tmp_path / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [[{json.dumps(record_)}]]\n")
    with running_server(config, tmp_path / "server.log", workers=2) as server:
        server.wait_healthy()
        for _ in range(50):
            http_request(server.port, "POST", "/predict", body, {"Content-Type": "application/json"})
        watch = _Watch(server).start()
        probe = _Probe(server.port, body).start()      # which model answers, while wrk saturates the service
        t0 = time.monotonic()
        wrk = subprocess.Popen(["wrk", "-t1", "-c8", f"-d{seconds}s", "-s", str(script),
                                f"http://127.0.0.1:{server.port}/predict"], stdout=subprocess.PIPE, text=True)
        promotions = []
        for at, version in ((seconds / 3, "v0002"), (2 * seconds / 3, "v0001")):
            # A promotion is two CLI processes (it verifies in a subprocess), seconds each on 2 saturated cores:
            # the next one waits until the previous has settled and been answered for a while.
            if promotions:
                at = max(at, promotions[-1][-1] - t0 + SETTLE_S + OBSERVE_S)
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            started = time.monotonic()
            done = run_cli("models", "promote", version, "--config", str(config))
            promotions.append((version, done.returncode, done.stderr[-500:], started, time.monotonic()))
        out, _ = wrk.communicate(timeout=seconds + 60)
        # The last promotion may end near the load's end (each takes seconds on saturated cores): the probe goes
        # on until the version it restored has been answered for OBSERVE_S after settling, as between promotions.
        time.sleep(max(0.0, promotions[-1][-1] + SETTLE_S + OBSERVE_S - time.monotonic()))
        probe.stop()
        growth = watch.finish()
    requests_ = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket_errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    record("load_with_promotions", seconds=seconds, requests=requests_, requests_per_s=rps, non_2xx=non2xx,
           socket_errors=socket_errors, promotions=[(*p[:2], round(p[4] - p[3], 1)) for p in promotions], probe_requests=probe.count,
           probe_failures=len(probe.failures), versions_in_order=probe.switches,
           probe_max_latency_s=round(probe.max_latency, 3), max_worker_rss_growth_mb=round(growth, 1))
    assert all(rc == 0 for _, rc, *_ in promotions), promotions
    assert non2xx == 0 and socket_errors == 0, out
    assert not probe.failures, probe.failures[:5]
    # Both promotions took effect, in order. Each worker polls the registry on its own, so for a moment
    # after a promotion the two may answer different versions; outside that settling time every answer
    # must be the version in production.
    (_, _, _, start2, end2), (_, _, _, start1, end1) = promotions
    expected = [(-math.inf, start2, "v0001"), (end2 + SETTLE_S, start1, "v0002"), (end1 + SETTLE_S, math.inf, "v0001")]
    for lo, hi, version in expected:
        answers = [v for at, v in probe.answers if lo <= at < hi]
        assert answers and set(answers) == {version}, (version, answers, probe.switches)
    assert growth < 100, f"worker memory grew by {growth:.0f} MB under steady load"


SETTLE_S = 3.0   # after a promotion returns: every worker's registry poll (0.2 s) has run, with room for load
OBSERVE_S = 3.0  # then at least this long (~15 probes) answered by the promoted version before the next promotion


class _Probe:
    """POSTs the record every 0.2 s during the load; records each answer's time and model version, failures, latency."""

    def __init__(self, port: int, body: bytes):
        self.port, self.body = port, body
        self.count, self.failures, self.answers, self.max_latency = 0, [], [], 0.0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                status, _, raw = http_request(self.port, "POST", "/predict", self.body,
                                              {"Content-Type": "application/json"}, timeout=30)
                version = json.loads(raw).get("model_version") if status == 200 else None
                if status != 200:
                    self.failures.append(status)
                else:
                    self.answers.append((time.monotonic(), version))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            self.count += 1
            self.max_latency = max(self.max_latency, time.monotonic() - started)
            time.sleep(0.2)

    def stop(self):
        self.stop_event.set()
        self.thread.join(35)

    @property
    def switches(self) -> list[str]:
        """The versions that answered, in order, each run of equal answers once."""
        return [v for i, (_, v) in enumerate(self.answers) if i == 0 or self.answers[i - 1][1] != v]



"""Metrics, probes and JSON logs of the prediction service: ``GET /metrics`` values after known requests (Flask
test client), the counters of 2 real gunicorn workers adding up, a real Prometheus server scraping the service,
``/livez`` and ``/readyz``, and JSON log lines carrying the request id."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service_helpers import (
    Project, build_project, copy_project, free_port, http_request, registry_of, running_server, sample_records,
    wait_until,
)
from tabpipe.serving import logs as serving_logs
from tabpipe.serving.app import create_app
from tabpipe.serving.logs import JsonFormatter
from tabpipe.serving.predlog_hook import request_id


@pytest.fixture(scope="session")
def main_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "main")


# --------------------------------------------------------------------------- helpers


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a text exposition: (sample name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    """One sample's value (0 when absent, as for a counter never incremented)."""
    return scraped.get((name, frozenset(labels.items())), 0.0)


def label_values(scraped: dict, name: str, label: str) -> set[str]:
    return {dict(key)[label] for (sample, key) in scraped if sample == name and label in dict(key)}


def post(client, payload, path="/predict", headers=None):
    return client.post(path, data=json.dumps(payload), content_type="application/json", headers=headers or {})


def scrape(client) -> dict:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return samples(resp.get_data(as_text=True))


def variant(config: Path, name: str, **monitoring) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["monitoring"] = {**(doc.get("monitoring") or {}), **monitoring}
    path = config.parent / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.contextmanager
def app_for(config: Path, **kwargs):
    app = create_app(config, **kwargs)
    try:
        yield app
    finally:
        app.extensions["tabpipe"]["holder"].stop()
        if app.extensions["tabpipe"]["metrics"] is not None:
            app.extensions["tabpipe"]["metrics"].stop()


def good_bad_records(project: Project) -> tuple[list[dict], dict]:
    """3 scorable records (the third breaks an expectation: latency_ms over its max) and 1 refused one."""
    good = sample_records(project, 3, seed=7)
    good[2] = {**good[2], "latency_ms": 99_999.0}                 # expectation (soft): warning, still scored
    bad = {**sample_records(project, 1, seed=8)[0], "packet_loss_pct": 150.0}   # hard range: refused
    return good, bad


# --------------------------------------------------------------------------- in process


def test_metrics_count_rows_warnings_requests_and_the_model(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0002")
    with app_for(config) as app:
        c = app.test_client()
        before = scrape(c)
        assert value(before, "tabpipe_model_info", version="v0002") == 1
        good, bad = good_bad_records(main_project)
        resp = post(c, {"records": [*good, bad]})
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        summary = resp.get_json()["summary"]
        assert (summary["scored"], summary["failed"]) == (3, 1)
        assert summary["warnings"].get("latency_ms"), summary
        after = scrape(c)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("tabpipe_rows_scored_total") == 3
        assert delta("tabpipe_rows_failed_total") == 1
        for column, rules in summary["warnings"].items():
            for rule, n in rules.items():
                assert delta("tabpipe_expectation_warnings_total", column=column, rule=rule) == n, (column, rule)
        assert delta("tabpipe_http_requests_total", endpoint="/predict", status="200") == 1
        assert delta("tabpipe_http_request_duration_seconds_count", endpoint="/predict") == 1
        assert 0 < delta("tabpipe_http_request_duration_seconds_sum", endpoint="/predict") < 60
        assert delta("tabpipe_prediction_probability_count") == 3
        probabilities = [p["probability"] for p in resp.get_json()["predictions"] if p["probability"] is not None]
        assert abs(delta("tabpipe_prediction_probability_sum") - sum(probabilities)) < 1e-9
        assert delta("tabpipe_prediction_probability_bucket", le="+Inf") == 3
        assert value(after, "tabpipe_model_info", version="v0002") == 1
        # the /metrics scrape before counted itself under its route rule
        assert value(after, "tabpipe_http_requests_total", endpoint="/metrics", status="200") >= 1

        # nothing scorable: 422, every row failed; a CSV upload counts its rows and warnings too
        assert post(c, {"records": [bad, bad]}).status_code == 422
        csv = "\n".join([",".join(good[0]), *[",".join("" if v is None else str(v) for v in r.values())
                                              for r in (*good, bad)]]).encode()
        resp = c.post("/predict/csv", data={"file": (io.BytesIO(csv), "rows.csv")}, content_type="multipart/form-data")
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        assert (resp.headers["X-Scored"], resp.headers["X-Failed"]) == ("3", "1")
        final = scrape(c)
        assert value(final, "tabpipe_rows_scored_total") - value(after, "tabpipe_rows_scored_total") == 3
        assert value(final, "tabpipe_rows_failed_total") - value(after, "tabpipe_rows_failed_total") == 3
        assert value(final, "tabpipe_http_requests_total", endpoint="/predict", status="422") == 1
        assert value(final, "tabpipe_http_requests_total", endpoint="/predict/csv", status="200") == 1
        assert value(final, "tabpipe_expectation_warnings_total", column="latency_ms", rule="range") \
            - value(after, "tabpipe_expectation_warnings_total", column="latency_ms", rule="range") == 1
        assert value(final, "tabpipe_prediction_probability_count") - value(after, "tabpipe_prediction_probability_count") == 3


def test_metric_labels_are_bounded(main_project, tmp_path):
    """endpoint is the route rule (unmatched paths share one label), columns come from the schema."""
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    with app_for(config) as app:
        c = app.test_client()
        for i in range(5):
            assert c.get(f"/no/such/path/{i}").status_code == 404
        assert c.get("/predict").status_code == 405
        post(c, {"records": [{"not_a_column": 1, **sample_records(main_project, 1)[0]}]})
        scraped = scrape(c)
        endpoints = label_values(scraped, "tabpipe_http_requests_total", "endpoint")
        assert value(scraped, "tabpipe_http_requests_total", endpoint="unmatched", status="404") == 5
        assert value(scraped, "tabpipe_http_requests_total", endpoint="unmatched", status="405") == 1
        rules = {str(r.rule) for r in app.url_map.iter_rules()}
        assert endpoints <= rules | {"unmatched"}, endpoints - rules
        schema_columns = set(yaml.safe_load((main_project.root / "schema.yaml").read_text())["columns"])
        assert label_values(scraped, "tabpipe_expectation_warnings_total", "column") <= schema_columns


def test_refresh_failures_and_the_model_swap(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    with app_for(config) as app:
        c = app.test_client()
        holder = app.extensions["tabpipe"]["holder"]
        scraped = scrape(c)
        assert value(scraped, "tabpipe_model_info", version="v0001") == 1
        assert value(scraped, "tabpipe_model_refresh_failures_total", code="registry_error") == 0
        # a corrupt v0002 promoted: every refresh attempt fails and is counted, v0001 stays in service
        path = config.parent / "registry" / "versions" / "v0002" / "model.pkl"
        original = path.read_bytes()
        data = bytearray(original)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        registry_of(config).promote("v0002")
        wait_until(lambda: value(scrape(c), "tabpipe_model_refresh_failures_total", code="registry_error") >= 2, 10,
                   what="refresh failures counted")
        scraped = scrape(c)
        assert value(scraped, "tabpipe_model_info", version="v0001") == 1
        assert value(scraped, "tabpipe_model_info", version="v0002") == 0
        # repaired: the next poll loads it; the gauge moves to v0002
        path.write_bytes(original)
        wait_until(lambda: holder.current.version == "v0002", 10, what="the swap to v0002")
        # the gauge is set just after the swap, on the refresh thread: wait for it, not for one moment
        wait_until(lambda: value(scrape(c), "tabpipe_model_info", version="v0002") == 1, 10, what="the gauge")
        scraped = scrape(c)
        assert value(scraped, "tabpipe_model_info", version="v0002") == 1
        assert value(scraped, "tabpipe_model_info", version="v0001") == 0


def test_prediction_log_queue_and_drops(main_project, tmp_path):
    config = variant(copy_project(main_project, tmp_path / "p", production="v0001"), "logged.yaml",
                     log_predictions=True, queue_rows=3)
    with app_for(config) as app:
        c = app.test_client()
        prediction_log = app.extensions["tabpipe"]["prediction_log"]
        assert post(c, {"records": sample_records(main_project, 2)}).status_code == 200
        assert post(c, {"records": sample_records(main_project, 5)}).status_code == 200   # over the queue: dropped
        assert prediction_log.flush(30)
        scraped = scrape(c)
        assert value(scraped, "tabpipe_prediction_log_dropped_rows_total") == 5
        assert ("tabpipe_prediction_log_waiting_rows", frozenset()) in scraped
        assert value(scraped, "tabpipe_prediction_log_waiting_rows") == prediction_log.stats()["waiting_rows"] == 0
        assert value(scraped, "tabpipe_rows_scored_total") == 7


def test_metrics_off_leaves_out_the_endpoint(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    with app_for(config, metrics=False) as app:
        c = app.test_client()
        assert post(c, sample_records(main_project, 1)[0]).status_code == 200
        assert c.get("/metrics").status_code == 404
        assert c.get("/readyz").status_code == 200


# --------------------------------------------------------------------------- probes


def test_livez_and_readyz_follow_the_model(main_project, tmp_path):
    config = copy_project(main_project, tmp_path / "p")
    doc = yaml.safe_load(config.read_text())
    doc["registry"]["path"] = "empty_registry"
    empty = config.parent / "empty.yaml"
    empty.write_text(yaml.safe_dump(doc))
    with app_for(empty) as app:
        c = app.test_client()
        live = c.get("/livez")
        assert live.status_code == 200 and live.get_json() == {"status": "alive"}
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.is_json
        assert ready.get_json() == {"status": "not_ready", "model_loaded": False, "reason": "no_production_model"}
        health = c.get("/health")   # unchanged
        assert health.status_code == 503 and health.get_json()["status"] == "no_model"
        target = registry_of(empty)
        version = target.publish({"model.pkl": registry_of(config).fetch("v0001", "model.pkl")},
                                 {"candidate": "random_forest", "metrics": {"roc_auc": 0.5}})
        target.promote(version)
        wait_until(lambda: c.get("/readyz").status_code == 200, 10, what="ready once the model is loaded")
        assert c.get("/readyz").get_json() == {"status": "ready", "model_loaded": True, "model_version": version}
        assert c.get("/health").get_json()["status"] == "ok"
        assert value(scrape(c), "tabpipe_model_info", version=version) == 1


# --------------------------------------------------------------------------- JSON logs, in process


def test_json_formatter_puts_the_request_id_on_request_lines(main_project, tmp_path):
    formatter = JsonFormatter()
    record = logging.LogRecord("tabpipe.test", logging.WARNING, __file__, 1, "outside %s", ("a request",), None)
    line = json.loads(formatter.format(record))
    assert line["message"] == "outside a request" and line["level"] == "WARNING" and "request_id" not in line
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    with app_for(config) as app:
        with app.test_request_context("/predict", headers={"X-Request-ID": "req-42"}):
            request_id()
            try:
                raise ValueError("boom")
            except ValueError:
                record = logging.LogRecord("tabpipe.serving", logging.ERROR, __file__, 1, "inside", (), sys.exc_info())
            line = json.loads(formatter.format(record))
        assert line["request_id"] == "req-42" and line["logger"] == "tabpipe.serving"
        assert "ValueError: boom" in line["exception"]


def test_json_log_mode_gives_every_request_an_id(main_project, tmp_path, monkeypatch):
    monkeypatch.setenv("TABPIPE_LOG_FORMAT", "json")
    root = logging.getLogger()
    level = root.level
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    try:
        with app_for(config) as app:
            handlers = [h for h in root.handlers if getattr(h, "_tabpipe_json", False)]
            assert len(handlers) == 1
            buffer = io.StringIO()
            handlers[0].setStream(buffer)

            @app.get("/_log_something")
            def log_something():
                logging.getLogger("tabpipe.serving.test").warning("while handling")
                return "ok"

            c = app.test_client()
            resp = c.get("/_log_something", headers={"X-Request-ID": "abc-1"})
            assert resp.headers["X-Request-ID"] == "abc-1"
            assert c.get("/health").headers.get("X-Request-ID")   # every request has an id in JSON mode
            lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
            ours = [line for line in lines if line["message"] == "while handling"]
            assert len(ours) == 1 and ours[0]["request_id"] == "abc-1", lines
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_tabpipe_json", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
    assert serving_logs.json_logs_wanted({"TABPIPE_LOG_FORMAT": "JSON"})
    assert not serving_logs.json_logs_wanted({})


# --------------------------------------------------------------------------- real gunicorn workers


def _metrics_over_http(port: int) -> dict:
    status, headers, body = http_request(port, "GET", "/metrics", timeout=10)
    assert status == 200, body[:500]
    return samples(body.decode())


def _send(port: int, records: list[dict], n: int, threads: int = 8, headers: dict | None = None) -> None:
    """``n`` one-record POST /predict, each on a new connection, from ``threads`` threads; all must answer 200."""
    def one(i):
        status, _, body = http_request(port, "POST", "/predict", json.dumps(records[i % len(records)]).encode(),
                                       {"Content-Type": "application/json", **(headers or {})})
        assert status == 200, body[:300]

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))


def _per_worker_counts(folder: Path, tmp_path: Path) -> dict[int, float]:
    """pid -> the /predict 200 count that worker wrote to its own counter file (each file read alone, through
    prometheus_client's MultiProcessCollector on a copy)."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        alone = Path(tempfile.mkdtemp(dir=tmp_path, prefix=f"alone-{path.stem}-"))
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(alone))
        scraped = samples(generate_latest(registry).decode())
        counts[int(path.stem.split("_", 1)[1])] = value(scraped, "tabpipe_http_requests_total", endpoint="/predict",
                                                        status="200")
    return counts


def test_counters_add_up_across_two_gunicorn_workers_and_logs_are_json(main_project, tmp_path):
    """Both workers serve /predict (bursts of concurrent requests until each worker's own file counts some: the
    kernel decides which worker accepts a connection), then any worker's scrape adds up exactly what was sent."""
    config = copy_project(main_project, tmp_path / "p", production="v0001")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale: from an earlier run, must be wiped at start")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "TABPIPE_LOG_FORMAT": "json"}
    records = sample_records(main_project, 20)
    burst, sent = 16, 0
    with running_server(config, tmp_path / "server.log", workers=2, env=env) as server:
        assert server.wait_healthy() == "v0001"
        assert not (metrics_dir / "counter_1.db").exists()
        master = psutil.Process(server.proc.pid)   # tabpipe serve execs gunicorn: the same process
        workers = wait_until(lambda: {p.pid for p in master.children()} if len(master.children()) == 2 else None, 30,
                             what="gunicorn's 2 workers")
        deadline = time.monotonic() + 60
        while True:   # bounded: 60 s of bursts; each burst is 16 requests at once, each on its own connection
            _send(server.port, records, burst, threads=burst, headers={"X-Request-ID": "load-test"})
            sent += burst
            served = {pid for pid, n in _per_worker_counts(metrics_dir, tmp_path).items() if n > 0}
            if served == workers:
                break
            assert served <= workers, (served, workers)
            if time.monotonic() > deadline:
                pytest.fail(f"after 60 s and {sent} concurrent requests, only workers {sorted(served)} of "
                            f"{sorted(workers)} have counted a /predict request", pytrace=False)
            time.sleep(0.2)   # the other worker's counts reach its file within metrics.FLUSH_S
        status, _, body = http_request(server.port, "GET", "/readyz")
        assert status == 200 and json.loads(body)["model_version"] == "v0001"

        def totals_add_up():
            scraped = _metrics_over_http(server.port)
            return value(scraped, "tabpipe_http_requests_total", endpoint="/predict", status="200") == sent

        wait_until(totals_add_up, 10, interval=0.2, what=f"the scraped /predict count to reach {sent}")
        for _ in range(6):   # whichever worker answers, the totals are every worker's
            scraped = _metrics_over_http(server.port)
            assert value(scraped, "tabpipe_http_requests_total", endpoint="/predict", status="200") == sent
            assert value(scraped, "tabpipe_rows_scored_total") == sent
            assert value(scraped, "tabpipe_http_request_duration_seconds_count", endpoint="/predict") == sent
            assert value(scraped, "tabpipe_http_request_duration_seconds_bucket", endpoint="/predict",
                         le="+Inf") == sent
            assert value(scraped, "tabpipe_prediction_probability_count") == sent
            assert value(scraped, "tabpipe_model_info", version="v0001") == 1
        per_worker = _per_worker_counts(metrics_dir, tmp_path)
        assert set(per_worker) == workers, (per_worker, workers)
        assert sum(per_worker.values()) == sent and all(n > 0 for n in per_worker.values()), per_worker
        # plain probe, for the log lines below
        http_request(server.port, "GET", "/livez", headers={"X-Request-ID": "probe-1"})
        time.sleep(0.5)
    assert not list(metrics_dir.glob("gauge_live*")), "child_exit should drop the exited workers' live gauges"
    lines = [line for line in server.log().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    access = [line for line in parsed if line["logger"] == "gunicorn.access"]
    predict = [line for line in access if line.get("path") == "/predict"]
    assert len(predict) == sent and all(line["request_id"] == "load-test" and line["status"] == 200
                                        for line in predict)
    probe = [line for line in access if line.get("path") == "/livez"]
    assert len(probe) == 1 and probe[0]["request_id"] == "probe-1"
    health = [line for line in access if line.get("path") == "/health"]
    assert health and all(line.get("request_id") for line in health)   # an id made by the app
    assert any(line["logger"] == "gunicorn.error" for line in parsed)


# --------------------------------------------------------------------------- a real Prometheus server


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        pytest.fail("the Prometheus server is not installed: run scripts/test_deps.sh (make test does) or "
                    "apt-get install prometheus", pytrace=False)
    return found


def _query(port: int, promql: str) -> list[dict]:
    status, _, body = http_request(port, "GET", "/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
                                   timeout=10)
    assert status == 200, body[:500]
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _scalar(port: int, promql: str) -> float | None:
    result = _query(port, promql)
    return float(result[0]["value"][1]) if result else None


def test_a_real_prometheus_scrapes_the_service(main_project, tmp_path):
    binary = _prometheus_binary()
    config = copy_project(main_project, tmp_path / "p", production="v0002")
    records = sample_records(main_project, 10)
    n = 60
    with running_server(config, tmp_path / "server.log", workers=2) as server:
        assert server.wait_healthy() == "v0002"
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "tabpipe", "scrape_interval": "1s", "scrape_timeout": "1s",
                                "metrics_path": "/metrics",
                                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
        }))
        with open(tmp_path / "prometheus.log", "wb") as out:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def ready():
                if prometheus.poll() is not None:
                    raise AssertionError(f"prometheus exited with {prometheus.returncode}:\n"
                                         f"{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
                return http_request(prom_port, "GET", "/-/ready", timeout=2)[0] == 200

            wait_until(ready, 60, interval=0.2, what="prometheus ready")
            wait_until(lambda: _scalar(prom_port, 'up{job="tabpipe"}') == 1, 30, interval=0.5, what="up == 1")
            _send(server.port, records, n)
            promql = 'sum(tabpipe_http_requests_total{job="tabpipe",endpoint="/predict",status="200"})'
            wait_until(lambda: _scalar(prom_port, promql) == n, 30, interval=0.5,
                       what=f"prometheus to see {n} /predict requests")
            assert _scalar(prom_port, 'sum(tabpipe_rows_scored_total{job="tabpipe"})') == n
            assert _scalar(prom_port, 'tabpipe_model_info{job="tabpipe",version="v0002"}') == 1
            assert _scalar(prom_port, 'up{job="tabpipe"}') == 1
            assert _scalar(prom_port, 'sum(tabpipe_http_request_duration_seconds_count{endpoint="/predict"})') == n
        finally:
            if prometheus.poll() is None:
                prometheus.terminate()
                try:
                    prometheus.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(prometheus.pid, 9)
                    prometheus.wait(10)

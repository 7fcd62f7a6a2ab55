"""``serving/metrics.py`` in process: per-worker tallies reach prometheus_client only when flushed, whatever the
threads; histograms kept as bucket counters expose exactly what prometheus_client's own Histogram would."""
from __future__ import annotations

import math
import threading

import numpy as np
from flask import Flask
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tabpipe.schema import Problem
from tabpipe.serving.metrics import LATENCY_BUCKETS, PROBABILITY_BUCKETS, ServiceMetrics


def samples(text: str, family: str) -> dict[tuple[str, frozenset], float]:
    """The _bucket, _count and _sum samples of ``family`` in a text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) if f.name == family for s in f.samples
            if s.name in (f"{family}_bucket", f"{family}_count", f"{family}_sum")}


def scraped(metrics: ServiceMetrics) -> str:
    return metrics.exposition(None).get_data(as_text=True)


def test_probability_histogram_equals_prometheus_clients_own():
    values = [0.0, 0.05, 0.1, 0.1000001, 0.35, 0.5, 0.5, 0.77, 0.9, 1.0, 1.0, 1.5, float("nan")]
    metrics = ServiceMetrics({})
    metrics.rows(1, 0, probabilities=[values[0]])                      # one-record path
    metrics.rows(len(values) - 2, 0, probabilities=np.array(values[1:]))   # batch path (CSV), NaN skipped
    metrics.rows(0, 1, probabilities=np.array([]))                      # nothing scored
    reference_registry = CollectorRegistry()
    reference = Histogram("tabpipe_prediction_probability", "reference", buckets=PROBABILITY_BUCKETS,
                          registry=reference_registry)
    for v in values:
        if not math.isnan(v):
            reference.observe(v)
    ours = samples(scraped(metrics), "tabpipe_prediction_probability")
    theirs = samples(generate_latest(reference_registry).decode(), "tabpipe_prediction_probability")
    assert ours.keys() == theirs.keys()
    for key, expected in theirs.items():
        assert math.isclose(ours[key], expected, rel_tol=1e-12), (key, ours[key], expected)
    assert ours[("tabpipe_prediction_probability_count", frozenset())] == len(values) - 1


def test_request_latency_and_counts_by_route_rule():
    app = Flask(__name__)
    metrics = ServiceMetrics({})
    metrics.install(app)

    @app.get("/items/<int:n>")
    def item(n):
        return {"n": n}

    client = app.test_client()
    for n in range(3):
        assert client.get(f"/items/{n}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    text = scraped(metrics)
    latency = samples(text, "tabpipe_http_request_duration_seconds")
    assert latency[("tabpipe_http_request_duration_seconds_count", frozenset({("endpoint", "/items/<int:n>")}))] == 3
    assert latency[("tabpipe_http_request_duration_seconds_count", frozenset({("endpoint", "unmatched")}))] == 1
    assert latency[("tabpipe_http_request_duration_seconds_bucket",
                    frozenset({("endpoint", "/items/<int:n>"), ("le", "+Inf")}))] == 3
    assert {dict(labels)["le"] for name, labels in latency if name.endswith("_bucket")} == \
        {str(b) for b in LATENCY_BUCKETS} | {"+Inf"}
    assert 0 < latency[("tabpipe_http_request_duration_seconds_sum", frozenset({("endpoint", "/items/<int:n>")}))] < 60
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value for f in text_string_to_metric_families(text)
                if f.name == "tabpipe_http_requests" for s in f.samples if s.name.endswith("_total")}
    assert requests == {("/items/<int:n>", "200"): 3, ("unmatched", "404"): 1}


def test_tallies_reach_prometheus_client_only_when_flushed():
    metrics = ServiceMetrics({})
    metrics.rows(2, 1, [Problem("latency_ms", "range", "too high", hard=False)], np.array([0.2, 0.4]))
    assert metrics.registry.get_sample_value("tabpipe_rows_scored_total") == 0
    metrics.flush()
    assert metrics.registry.get_sample_value("tabpipe_rows_scored_total") == 2
    assert metrics.registry.get_sample_value("tabpipe_rows_failed_total") == 1
    assert metrics.registry.get_sample_value("tabpipe_expectation_warnings_total",
                                             {"column": "latency_ms", "rule": "range"}) == 1
    metrics.flush()   # nothing new: nothing added twice
    assert metrics.registry.get_sample_value("tabpipe_rows_scored_total") == 2


def test_tallies_from_many_threads_add_up_exactly_while_flushing():
    metrics = ServiceMetrics({})
    warning = Problem("latency_ms", "range", "too high", hard=False)
    threads, per_thread, done = 8, 2000, threading.Event()

    def work():
        for _ in range(per_thread):
            metrics.rows(1, 1, [warning], [0.25])

    def flush_all_along():
        while not done.is_set():
            metrics.flush()

    flusher = threading.Thread(target=flush_all_along)
    flusher.start()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    flusher.join()
    text = scraped(metrics)
    n = threads * per_thread
    assert metrics.registry.get_sample_value("tabpipe_rows_scored_total") == n
    assert metrics.registry.get_sample_value("tabpipe_rows_failed_total") == n
    assert metrics.registry.get_sample_value("tabpipe_expectation_warnings_total",
                                             {"column": "latency_ms", "rule": "range"}) == n
    histogram = samples(text, "tabpipe_prediction_probability")
    assert histogram[("tabpipe_prediction_probability_count", frozenset())] == n
    assert histogram[("tabpipe_prediction_probability_sum", frozenset())] == 0.25 * n
    assert histogram[("tabpipe_prediction_probability_bucket", frozenset({("le", "0.2")}))] == 0
    assert histogram[("tabpipe_prediction_probability_bucket", frozenset({("le", "0.3")}))] == n

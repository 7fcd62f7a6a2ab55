"""The service's Prometheus metrics (``GET /metrics``), one ``ServiceMetrics`` per app.

Under gunicorn every worker writes its values to files in ``$PROMETHEUS_MULTIPROC_DIR`` (the gunicorn
config makes a private one when unset) and a scrape of any worker sums them all. Label values are
bounded: ``endpoint`` is the route rule (never the raw path), ``column`` a schema column, ``rule`` an
expectation rule, ``code`` a refresh error code. The request path does little: label children are bound
once and cached, a request costs two cached lookups, a counter increment and a histogram observation.
Metric names and labels are listed in docs/serving.md.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping

import numpy as np
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tabpipe.history.predlog import PredictionLog
from tabpipe.schema import Problem

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
UNMATCHED = "unmatched"      # the endpoint label of a request no route matched (404, 405)
SAMPLE_S = 2.0               # how often a worker copies its prediction log's counters into the metrics
_STARTED = "tabpipe.metrics_t0"


class ServiceMetrics:
    """One app's metrics; ``install`` times every request, the routes report rows, the holder reports models."""

    def __init__(self, environ: Mapping[str, str]):
        self.registry = CollectorRegistry()
        self.multiproc_dir = environ.get(MULTIPROC_ENV) or None
        reg = self.registry
        self.requests = Counter("tabpipe_http_requests", "HTTP requests answered, by route rule and status code.",
                                ("endpoint", "status"), registry=reg)
        self.latency = Histogram("tabpipe_http_request_duration_seconds",
                                 "Seconds from the app's WSGI entry to the response, by route rule.", ("endpoint",),
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.rows_scored = Counter("tabpipe_rows_scored", "Rows (records, CSV rows, form posts) scored.", registry=reg)
        self.rows_failed = Counter("tabpipe_rows_failed", "Rows refused by the schema (not scored).", registry=reg)
        self.warnings = Counter("tabpipe_expectation_warnings", "Broken expectations in scored rows, by column and rule.",
                                ("column", "rule"), registry=reg)
        self.probability = Histogram("tabpipe_prediction_probability", "Positive-class probabilities served.",
                                     buckets=PROBABILITY_BUCKETS, registry=reg)
        self.model = Gauge("tabpipe_model_info", "1 for the model version in service (in any live worker), else 0.",
                           ("version",), multiprocess_mode="livemax", registry=reg)
        self.refresh_failures = Counter("tabpipe_model_refresh_failures",
                                        "Failed attempts to load or refresh the production model, by error code.",
                                        ("code",), registry=reg)
        self.log_waiting = Gauge("tabpipe_prediction_log_waiting_rows", "Rows queued for the prediction log, not yet written.",
                                 multiprocess_mode="livesum", registry=reg)
        self.log_dropped = Counter("tabpipe_prediction_log_dropped_rows",
                                   "Rows the prediction log dropped because its queue was full.", registry=reg)
        # the hot path increments the children's value objects directly (prometheus_client's per-call checks
        # cost as much as the write): counters' ``_value``, histograms' ``_sum`` and per-bucket ``_buckets``
        self._scored, self._failed = self.rows_scored._value, self.rows_failed._value
        self._request_children: dict[tuple[str | None, int], tuple] = {}
        self._warning_children: dict[tuple[str, str], Counter] = {}
        self._version: str | None = None
        self._dropped_seen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.multiproc_dir:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, self.multiproc_dir)
        else:
            self._exposed = reg

    # ---- requests

    def install(self, app: Flask) -> None:
        """Time and count every request of ``app``: the clock starts in its WSGI entry (before routing and
        the other hooks), the count and latency are taken by an ``after_request`` hook (register it first,
        so that it runs last, on the final response)."""
        inner = app.wsgi_app

        def timed(environ, start_response):
            environ[_STARTED] = time.perf_counter()
            return inner(environ, start_response)

        app.wsgi_app = timed
        app.after_request(self._count_request)

    def _count_request(self, response: Response) -> Response:
        rule = request.url_rule
        key = (rule.rule if rule is not None else None, response.status_code)
        children = self._request_children.get(key) or self._bind_request(key)
        children[0].inc(1)
        started = request.environ.get(_STARTED)
        if started is not None:
            _observe(children[1], time.perf_counter() - started)
        return response

    def _bind_request(self, key: tuple[str | None, int]) -> tuple:
        endpoint = key[0] or UNMATCHED
        children = self._request_children[key] = (self.requests.labels(endpoint, str(key[1]))._value,
                                                   self.latency.labels(endpoint))
        return children

    # ---- rows

    def rows(self, scored: int, failed: int, warnings: Iterable[Problem] = (), probabilities=None) -> None:
        """Count one request's rows: scored, failed, each warning by (column, rule), the probabilities served."""
        if scored:
            self._scored.inc(scored)
        if failed:
            self._failed.inc(failed)
        for warning in warnings:
            self.warning_counts(warning.column, warning.rule, 1)
        if probabilities is not None:
            observe_many(self.probability, probabilities)

    def warning_counts(self, column: str | None, rule: str, n: int) -> None:
        """Add ``n`` broken expectations of ``rule`` on ``column``."""
        key = (str(column), rule)
        child = self._warning_children.get(key)
        if child is None:
            child = self._warning_children[key] = self.warnings.labels(*key)
        child.inc(n)

    # ---- the model holder's events

    def model_loaded(self, version: str) -> None:
        """The holder now serves ``version``: its gauge goes to 1, the previous one's to 0."""
        with self._lock:
            if self._version is not None and self._version != version:
                self.model.labels(self._version).set(0)
            self.model.labels(version).set(1)
            self._version = version

    def refresh_failed(self, code: str) -> None:
        """One failed load or refresh, by its stable code."""
        self.refresh_failures.labels(code).inc()

    # ---- the prediction log

    def sample(self, prediction_log: PredictionLog | None) -> None:
        """Copy the prediction log's queue depth and new drops into the metrics."""
        if prediction_log is None:
            return
        stats = prediction_log.stats()
        with self._lock:
            self.log_waiting.set(stats["waiting_rows"])
            new = stats["dropped_rows"] - self._dropped_seen
            if new > 0:
                self.log_dropped.inc(new)
                self._dropped_seen += new

    def watch(self, prediction_log: PredictionLog) -> None:
        """Sample ``prediction_log`` every SAMPLE_S seconds in a daemon thread (the other workers' scrapes see it)."""
        def loop():
            while not self._stop.wait(SAMPLE_S):
                self.sample(prediction_log)
        threading.Thread(target=loop, name="tabpipe-metrics-sample", daemon=True).start()

    def stop(self) -> None:
        """Stop the sampling thread."""
        self._stop.set()

    # ---- exposition

    def exposition(self, prediction_log: PredictionLog | None) -> Response:
        """The text format of every worker's metrics (this worker's prediction log sampled first)."""
        self.sample(prediction_log)
        return Response(generate_latest(self._exposed), headers={"Content-Type": CONTENT_TYPE_LATEST})


def observe_many(histogram: Histogram, values) -> None:
    """Observe every value of ``values`` (array-like, NaN skipped): one increment per bucket, not per value."""
    if len(values) == 1:   # one-record /predict: no array work
        value = float(values[0])
        if value == value:
            _observe(histogram, value)
        return
    array = np.asarray(values, dtype=float).ravel()
    array = array[~np.isnan(array)]
    if array.size:
        bounds = histogram._upper_bounds   # prometheus_client keeps per-bucket (not cumulative) counts in _buckets
        counts = np.bincount(np.searchsorted(bounds, array, side="left"), minlength=len(bounds))
        for bucket, n in zip(histogram._buckets, counts.tolist()):
            if n:
                bucket.inc(n)
        histogram._sum.inc(float(array.sum()))


def _observe(histogram: Histogram, amount: float) -> None:
    """``histogram.observe(amount)`` without the per-call checks (no exemplars): the sum and one bucket."""
    histogram._sum.inc(amount)
    histogram._buckets[bisect_left(histogram._upper_bounds, amount)].inc(1)

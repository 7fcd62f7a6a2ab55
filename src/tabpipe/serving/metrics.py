"""The service's Prometheus metrics (``GET /metrics``), one ``ServiceMetrics`` per app.

Under gunicorn every worker writes its values to files in ``$PROMETHEUS_MULTIPROC_DIR`` (the gunicorn
config makes a private one when unset) and a scrape of any worker sums them all. Label values are
bounded: ``endpoint`` is the route rule (never the raw path), ``column`` a schema column, ``rule`` an
expectation rule, ``code`` a refresh error code. Metric names and labels are listed in docs/serving.md.

Cost: a request only adds to plain per-worker tallies (one lock, a few additions); a daemon thread folds
them into prometheus_client every ``FLUSH_S`` seconds, as do a scrape (this worker's first) and the
worker's exit. A scrape therefore sees the other workers' requests up to ``FLUSH_S`` late. Histograms are
kept as two counters (per-bucket counts and the sum, ``BucketHistogram``) so that a tally or a CSV upload's
probabilities go in with one increment per bucket, and are exposed as true histograms.
Only prometheus_client's public API is used.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from tabpipe.history.predlog import PredictionLog
from tabpipe.schema import Problem

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
UNMATCHED = "unmatched"      # the endpoint label of a request no route matched (404, 405)
FLUSH_S = 1.0                # how often a worker folds its tallies into the shared values and samples its log
_STARTED = "tabpipe.metrics_t0"


class BucketHistogram:
    """A Prometheus histogram stored as two counters: per-bucket counts (an extra ``le`` label, not cumulative)
    and the sum, so that many observations are added with one increment per bucket. ``expose`` turns the
    collected counters back into the histogram family ``name``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = (*buckets, math.inf)
        self.le = tuple(floatToGoString(b) for b in self.bounds)
        # the stored counters' family names (their samples end in "_total"); /metrics shows the histogram instead
        self.counts_name, self.sum_name = f"{name}_raw_buckets", f"{name}_raw_summed"
        self.counts = Counter(self.counts_name, f"Per-bucket counts of {name} (exposed as {name}).",
                              (*self.labelnames, "le"), registry=registry)
        self.sum = Counter(self.sum_name, f"Sum of {name} (exposed as {name}).", self.labelnames, registry=registry)

    def empty(self) -> list:
        """A tally for one label set: [sum, count of bucket 0, count of bucket 1, ...]."""
        return [0.0] * (len(self.bounds) + 1)

    def add(self, labelvalues: Sequence[str], tally: Sequence[float]) -> None:
        """Add one ``empty()``-shaped tally (its sum and its per-bucket counts) to the counters."""
        if not any(tally[1:]):
            return
        for le, n in zip(self.le, tally[1:]):
            if n:
                self.counts.labels(*labelvalues, le).inc(n)
        (self.sum.labels(*labelvalues) if labelvalues else self.sum).inc(tally[0])

    def expose(self, samples: Mapping[str, list]) -> HistogramMetricFamily:
        """The histogram family from the collected samples of the two counters (``samples``: counter name ->
        its ``_total`` samples)."""
        per_labels: dict[tuple, list] = {}
        order = {le: i for i, le in enumerate(self.le)}
        for sample in samples.get(self.counts_name, ()):
            key = tuple(sample.labels[n] for n in self.labelnames)
            tally = per_labels.setdefault(key, self.empty())
            tally[1 + order[sample.labels["le"]]] += sample.value
        for sample in samples.get(self.sum_name, ()):
            key = tuple(sample.labels[n] for n in self.labelnames)
            per_labels.setdefault(key, self.empty())[0] += sample.value
        if not self.labelnames:   # the one series of an unlabelled histogram is there from the start
            per_labels.setdefault((), self.empty())
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, tally in sorted(per_labels.items()):
            cumulative = np.cumsum(tally[1:]).tolist()
            family.add_metric(list(key), list(zip(self.le, cumulative)), tally[0])
        return family


class _View:
    """The collector ``/metrics`` reads: ``source``'s families, with each ``BucketHistogram``'s two counters
    replaced by its histogram."""

    def __init__(self, source, histograms: Sequence[BucketHistogram]):
        self.source, self.histograms = source, histograms
        self.raw = {name for h in histograms for name in (h.counts_name, h.sum_name)}

    def collect(self):
        """Every family of the source, histograms rebuilt."""
        samples: dict[str, list] = {}
        for family in self.source.collect():
            if family.name in self.raw:
                samples[family.name] = [s for s in family.samples if s.name.endswith("_total")]
            else:
                yield family
        for histogram in self.histograms:
            yield histogram.expose(samples)


class ServiceMetrics:
    """One app's metrics; ``install`` times every request, the routes report rows, the holder reports models."""

    def __init__(self, environ: Mapping[str, str]):
        self.registry = reg = CollectorRegistry()
        self.multiproc_dir = environ.get(MULTIPROC_ENV) or None
        self.requests = Counter("tabpipe_http_requests", "HTTP requests answered, by route rule and status code.",
                                ("endpoint", "status"), registry=reg)
        self.latency = BucketHistogram("tabpipe_http_request_duration_seconds",
                                       "Seconds from the app's WSGI entry to the response, by route rule.",
                                       ("endpoint",), LATENCY_BUCKETS, reg)
        self.rows_scored = Counter("tabpipe_rows_scored", "Rows (records, CSV rows, form posts) scored.", registry=reg)
        self.rows_failed = Counter("tabpipe_rows_failed", "Rows refused by the schema (not scored).", registry=reg)
        self.warnings = Counter("tabpipe_expectation_warnings", "Broken expectations in scored rows, by column and rule.",
                                ("column", "rule"), registry=reg)
        self.probability = BucketHistogram("tabpipe_prediction_probability", "Positive-class probabilities served.",
                                           (), PROBABILITY_BUCKETS, reg)
        self.model = Gauge("tabpipe_model_info", "1 for the model version in service (in any live worker), else 0.",
                           ("version",), multiprocess_mode="livemax", registry=reg)
        self.refresh_failures = Counter("tabpipe_model_refresh_failures",
                                        "Failed attempts to load or refresh the production model, by error code.",
                                        ("code",), registry=reg)
        self.log_waiting = Gauge("tabpipe_prediction_log_waiting_rows", "Rows queued for the prediction log, not yet written.",
                                 multiprocess_mode="livesum", registry=reg)
        self.log_dropped = Counter("tabpipe_prediction_log_dropped_rows",
                                   "Rows the prediction log dropped because its queue was full.", registry=reg)
        self._tally_lock = threading.Lock()   # the request threads' tallies, swapped out by flush()
        self._new_tallies()
        self._version: str | None = None
        self._dropped_seen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        source = MultiProcessCollector(None, self.multiproc_dir) if self.multiproc_dir else reg
        self._exposed = CollectorRegistry(auto_describe=False)
        self._exposed.register(_View(source, (self.latency, self.probability)))

    def _new_tallies(self) -> None:
        self._requests: dict[tuple[str | None, int], list] = {}   # (rule, status) -> latency tally
        self._scored = self._failed = 0
        self._warned: dict[tuple[str, str], int] = {}
        self._probabilities = self.probability.empty()

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
        now = time.perf_counter()
        seconds = now - request.environ.get(_STARTED, now)   # always set: the WSGI entry is installed with the hook
        rule = request.url_rule
        key = (rule.rule if rule is not None else None, response.status_code)
        with self._tally_lock:
            tally = self._requests.get(key)
            if tally is None:
                tally = self._requests[key] = self.latency.empty()
            tally[0] += seconds
            tally[1 + bisect_left(self.latency.bounds, seconds)] += 1
        return response

    # ---- rows

    def rows(self, scored: int, failed: int, warnings: Iterable[Problem] = (), probabilities=None) -> None:
        """Count one request's rows: scored, failed, each warning by (column, rule), the probabilities served."""
        warned = [(str(w.column), w.rule) for w in warnings]
        batch = None
        if probabilities is not None and len(probabilities) != 1:
            batch = _bucket_counts(self.probability.bounds, probabilities)
        with self._tally_lock:
            self._scored += scored
            self._failed += failed
            for key in warned:
                self._warned[key] = self._warned.get(key, 0) + 1
            if batch is not None:
                tally = self._probabilities
                for i, n in enumerate(batch):
                    tally[i] += n
            elif probabilities is not None:   # one-record /predict: no array work
                value = float(probabilities[0])
                if value == value:
                    self._probabilities[0] += value
                    self._probabilities[1 + bisect_left(self.probability.bounds, value)] += 1

    def warning_counts(self, column: str | None, rule: str, n: int) -> None:
        """Add ``n`` broken expectations of ``rule`` on ``column``."""
        key = (str(column), rule)
        with self._tally_lock:
            self._warned[key] = self._warned.get(key, 0) + n

    # ---- the tallies into prometheus_client

    def flush(self) -> None:
        """Fold this worker's tallies since the last flush into the shared values (other workers' scrapes see them)."""
        with self._tally_lock:
            requests, scored, failed = self._requests, self._scored, self._failed
            warned, probabilities = self._warned, self._probabilities
            self._new_tallies()
        per_endpoint: dict[str, list] = {}
        for (rule, status), tally in requests.items():
            endpoint = rule or UNMATCHED
            self.requests.labels(endpoint, str(status)).inc(sum(tally[1:]))
            into = per_endpoint.setdefault(endpoint, self.latency.empty())
            for i, x in enumerate(tally):
                into[i] += x
        for endpoint, tally in per_endpoint.items():
            self.latency.add((endpoint,), tally)
        if scored:
            self.rows_scored.inc(scored)
        if failed:
            self.rows_failed.inc(failed)
        for (column, rule), n in warned.items():
            self.warnings.labels(column, rule).inc(n)
        self.probability.add((), probabilities)

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

    # ---- the worker's thread

    def start(self, prediction_log: PredictionLog | None) -> None:
        """Every FLUSH_S seconds, in a daemon thread: flush the tallies, sample ``prediction_log``; flush at exit.

        Call it in the process that serves (gunicorn: ``preload_app`` is off, each worker builds its own app):
        a thread does not survive a fork."""
        def loop():
            while not self._stop.wait(FLUSH_S):
                self.flush()
                self.sample(prediction_log)
        self._thread = threading.Thread(target=loop, name="tabpipe-metrics-flush", daemon=True)
        self._thread.start()
        atexit.register(self.flush)   # a worker's graceful exit (gunicorn: SIGTERM, max_requests)

    def stop(self) -> None:
        """Stop the thread, flush what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            atexit.unregister(self.flush)
        self.flush()

    # ---- exposition

    def exposition(self, prediction_log: PredictionLog | None) -> Response:
        """The text format of every worker's metrics (this worker's tallies flushed and its log sampled first)."""
        self.flush()
        self.sample(prediction_log)
        return Response(generate_latest(self._exposed), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _bucket_counts(bounds: Sequence[float], values) -> list:
    """``BucketHistogram.empty()``-shaped tally of ``values`` (array-like, NaN skipped): sum, then per-bucket counts."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[~np.isnan(array)]
    counts = np.bincount(np.searchsorted(np.asarray(bounds), array, side="left"), minlength=len(bounds))
    return [float(array.sum()), *counts.tolist()]

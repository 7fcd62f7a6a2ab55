"""Gunicorn settings for the tabpipe prediction service, used by `tabpipe serve` and the top-level gunicorn.conf.py.

Every value can be overridden through the environment, so the same image serves locally, in
docker compose and on EC2:

    PORT                      port to bind on all interfaces (default 8000)
    GUNICORN_WORKERS          worker processes (default 2; WEB_CONCURRENCY is honoured too)
    GUNICORN_THREADS          threads per worker (default 4)
    GUNICORN_TIMEOUT          seconds before a silent worker is killed and restarted (default 60)
    GUNICORN_GRACEFUL_TIMEOUT seconds a worker gets to finish requests on shutdown (default 30)
    GUNICORN_LOG_LEVEL        debug, info, warning, error (default info)
    GUNICORN_MAX_REQUESTS     recycle a worker after this many requests (default 0: never)
    TABPIPE_LOG_FORMAT        json: one JSON object per log line, with the request id (default text)
    PROMETHEUS_MULTIPROC_DIR  where the workers keep their metrics (default: a private temporary
                              folder made here, on /dev/shm when present, removed on exit); emptied
                              when the server starts
"""
import os
import shutil
import tempfile

from tabpipe.edge import prepare_process
from tabpipe.serving.logs import json_logs_wanted

prepare_process()   # before any worker imports scikit-learn

# Metrics: each worker writes its values under this folder, a scrape of any worker adds them up. It must be
# in the environment before a worker imports prometheus_client; a folder made here is ours to remove
# (remembered in the environment too: gunicorn runs this file again on a reload). On tmpfs when there is
# one: the values are memory-mapped files, and a disk's writeback of their pages slows every request.
_MADE = "TABPIPE_METRICS_DIR_MADE"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # bandit B108: a private folder made by mkdtemp (mode 0700) under /dev/shm, not a fixed path
    _shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nosec B108
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_MADE] = tempfile.mkdtemp(prefix="tabpipe-metrics-", dir=_shm)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", 2))
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5

# Each worker loads the model itself: no state is shared across fork, and a worker that is
# recycled (max_requests) reloads cleanly.
preload_app = False
# Worker recycling is off by default: each new worker re-imports scikit-learn and reloads the model
# (seconds of CPU), which at 1,000 requests/s every 2,000 requests costs a third of the throughput.
# Set GUNICORN_MAX_REQUESTS to recycle anyway (e.g. to contain a leaking custom estimator).
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10

# Heartbeat files on tmpfs: Docker's overlay filesystem can stall workers otherwise.
# bandit B108: not a file of ours; gunicorn creates its heartbeat files there with mkstemp
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nosec B108

# Logs to stdout/stderr, where Docker collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
if json_logs_wanted(os.environ):   # the app factory reads the same variable
    logger_class = "tabpipe.serving.logs.JsonGunicornLogger"


def on_starting(server):
    """Master start (not on reload): empty the metrics folder, so no earlier run's counts are added in."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    """A worker exited: drop its live gauges (its counters and histograms stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Master exit: remove the metrics folder if this config made it."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.environ.get(_MADE) == folder:
        shutil.rmtree(folder, ignore_errors=True)

"""S3 registry outages (pytest -m faults): a moto server in its own process, frozen (SIGSTOP: a hung
endpoint) or killed while `tabpipe train` publishes. The run must fail within a bounded time with a
clear error and exit 1, and nothing may be half-published: once the endpoint is back, production is
still the old version, loads, and every listed version verifies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from helpers import TABPIPE_BIN, make_project, registry_of
from service_helpers import free_port, wait_until

from faults_figures import record

pytestmark = pytest.mark.faults
MOTO = Path(TABPIPE_BIN).parent / "moto_server"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}


def _start_moto() -> tuple[subprocess.Popen, str] | None:
    """moto_server on a free port, once it answers; None if it exited (the port was taken before it bound)."""
    port = free_port()
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"

    def answers():
        if proc.poll() is not None:
            return "exited"
        quick = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
        return boto3.client("s3", endpoint_url=endpoint, config=quick).list_buckets() is not None

    return (proc, endpoint) if wait_until(answers, 30, what="moto") is True else None


@pytest.fixture
def moto_process(monkeypatch):
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    started = next(filter(None, (_start_moto() for _ in range(3))), None)
    assert started is not None, "moto_server exited on start three times"
    proc, endpoint = started
    yield proc, endpoint
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait(10)


def _stage_running(run_root: Path) -> str | None:
    for folder in sorted(run_root.glob("*/run.json"), reverse=True)[:1]:
        try:
            stages = json.loads(folder.read_text())["stages"]
        except (OSError, ValueError):
            return None
        return next((n for n, e in stages.items() if e.get("status") == "running"), None)
    return None


@pytest.mark.parametrize("outage", ["hung", "killed"])
def test_s3_outage_mid_publish_fails_cleanly_and_publishes_nothing(tmp_path, moto_process, outage):
    proc, endpoint = moto_process
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    registry = {"backend": "s3", "bucket": bucket, "prefix": "reg", "endpoint_url": endpoint,
                "timeout_s": 3, "max_attempts": 2}
    config = make_project(tmp_path, rows=1500, pipeline={"registry": registry,
                                                         "evaluation": {"min_improvement": -1.0}})
    first = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(config)], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    run = subprocess.Popen([str(TABPIPE_BIN), "train", "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _stage_running(config.parent / "artifacts") == "pusher" or run.poll() is not None, 300,
               interval=0.005, what="the pusher stage")
    assert run.poll() is None, "the run ended before its pusher stage could be interrupted"
    os.kill(proc.pid, signal.SIGSTOP if outage == "hung" else signal.SIGKILL)
    started = time.monotonic()
    _, stderr = run.communicate(timeout=600)
    seconds = time.monotonic() - started
    if outage == "hung":
        os.kill(proc.pid, signal.SIGCONT)          # the endpoint comes back: what did the failed run leave?
        reg = registry_of(config)
        assert reg.production_version() == "v0001"
        reg.load_model()
        for version in reg.list_versions():
            reg.load_model(version.version)     # anything listed is complete, signed and loads
        listed = [v.version for v in reg.list_versions()]
    else:
        listed = None
    record(f"s3_{outage}_mid_publish", exit_code=run.returncode, seconds_to_fail=round(seconds, 1),
           versions_after=listed, error=next((line.strip()[:300] for line in stderr.splitlines() if "training failed" in line), ""))
    assert run.returncode == 1, stderr[-3000:]
    assert "training failed" in stderr and ("s3://" in stderr or bucket in stderr), stderr[-2000:]
    assert "Traceback" not in stderr
    assert seconds < 120, f"took {seconds:.0f}s to give up"

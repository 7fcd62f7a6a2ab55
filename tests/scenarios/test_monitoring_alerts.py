"""Webhook delivery against a real local HTTP server that answers, hangs, or fails; de-duplication."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tabpipe.config import AlertsSection
from tabpipe.monitoring.alerts import Alert, deliver, slack_payload
from webhook_server import Hook

ALERT = Alert(model_version="v0003", decision="retrain", window="file new.csv", rows=5000, run_id="r1",
              reasons=({"rule": "psi_retrain", "level": "retrain", "observed": 0.31, "threshold": 0.2,
                        "window": "file new.csv", "rows": 5000, "feature": "latency_ms",
                        "message": "PSI of latency_ms = 0.3100 >= 0.2"},),
              report="/runs/x/report.html")
FAST = AlertsSection(timeout_s=1.0, retries=2, backoff_s=0.05, total_s=4.0)


@pytest.fixture
def hook(request):
    servers = []

    def make(*plan):
        servers.append(Hook(list(plan)))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def test_payload_is_slack_compatible():
    body = slack_payload(ALERT)
    assert body["text"].startswith("tabpipe monitor: RETRAIN for model v0003")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert fields == ["*Model version*\nv0003", "*Decision*\nretrain", "*Window*\nfile new.csv", "*Rows*\n5000"]
    assert "PSI of latency_ms" in body["blocks"][2]["text"]["text"]
    assert body["alert"]["key"] == "v0003|retrain|psi_retrain"
    json.dumps(body)


def test_answering_server_gets_one_post(hook):
    server = hook("ok")
    result = deliver(ALERT, server.url, FAST)
    assert (result.status, result.attempts, result.http_status) == ("sent", 1, 200)
    assert server.bodies == [json.loads(json.dumps(slack_payload(ALERT)))]


def test_500_is_retried_then_reported_failed(hook):
    server = hook("500")
    result = deliver(ALERT, server.url, FAST)
    assert (result.status, result.attempts, result.http_status) == ("failed", 3, 500)
    assert len(server.bodies) == 3 and result.history[-1] == "attempt 3: HTTP 500"


def test_transient_failure_recovers(hook):
    server = hook("500", "429", "ok")
    result = deliver(ALERT, server.url, FAST)
    assert (result.status, result.attempts) == ("sent", 3)


def test_client_error_is_not_retried(hook):
    server = hook("400")
    result = deliver(ALERT, server.url, FAST)
    assert (result.status, result.attempts, result.http_status) == ("failed", 1, 400)


def test_hanging_server_never_blocks_past_the_total_cap(hook):
    server = hook("hang")
    settings = AlertsSection(timeout_s=1.0, retries=5, backoff_s=0.05, total_s=2.5)
    start = time.monotonic()
    result = deliver(ALERT, server.url, settings)
    elapsed = time.monotonic() - start
    assert result.status == "failed" and result.http_status is None
    assert elapsed < settings.total_s + 1.0, elapsed           # generous: the cap itself is what is checked
    assert 1 <= result.attempts == len(server.bodies) <= 1 + settings.retries


def test_unreachable_url_fails_quickly():
    result = deliver(ALERT, "http://127.0.0.1:9/hook", FAST)     # discard port: connection refused
    assert result.status == "failed" and "attempt 1" in result.history[0]


def test_deduplication_within_the_cool_down(hook):
    server = hook("ok")
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    settings = AlertsSection(cooldown_s=3600, timeout_s=1.0, total_s=3.0)
    recent = deliver(ALERT, server.url, settings, last_sent=now - timedelta(minutes=59), now=now)
    assert recent.status == "suppressed" and server.bodies == []
    old = deliver(ALERT, server.url, settings, last_sent=now - timedelta(minutes=61), now=now)
    assert old.status == "sent" and len(server.bodies) == 1


def test_no_url_is_not_an_error():
    result = deliver(ALERT, None, FAST)
    assert result.status == "not_configured" and "TABPIPE_ALERT_WEBHOOK_URL" in result.error


@pytest.mark.parametrize("kwargs, message", [({"timeout_s": 0}, r"timeout_s\n.*greater than 0"),
                                             ({"retries": -1}, r"retries\n.*greater than or equal to 0")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        AlertsSection(**kwargs)

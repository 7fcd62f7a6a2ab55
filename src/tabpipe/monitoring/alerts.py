"""Alerts of a monitoring run: a Slack-compatible JSON POST to an optional webhook, never blocking the run.

Bounded retries within ``total_s``, de-duplicated by ``Alert.key`` within the cool-down; the URL is
passed in and never logged or stored.
Design notes: docs/monitoring.md#alert-delivery
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabpipe.config import AlertsSection


@dataclass(frozen=True, kw_only=True)
class Alert:
    """What a monitoring run that decided watch/retrain sends: model, decision, window, rows, reasons."""
    model_version: str
    decision: str                     # "watch" | "retrain"
    window: str
    rows: int
    reasons: tuple[dict, ...]         # governance Reason.as_dict()
    run_id: str = ""
    report: str | None = None         # path of the HTML report

    @property
    def key(self) -> str:
        """``version|decision|rules``: an alert with the key of one sent within the cool-down is suppressed."""
        rules = sorted({r["rule"] for r in self.reasons})
        return f"{self.model_version}|{self.decision}|{','.join(rules)}"

    @property
    def summary(self) -> str:
        """One line for the alert's ``text``: decision, model, rules fired, window, rows."""
        return (f"tabpipe monitor: {self.decision.upper()} for model {self.model_version} "
                f"({len(self.reasons)} rule{'s' if len(self.reasons) != 1 else ''} fired, window {self.window}, "
                f"{self.rows} rows)")


@dataclass(frozen=True)
class Delivery:
    """What became of one alert: sent, failed, suppressed or not configured, with attempts and timings."""
    status: str                       # "sent" | "failed" | "suppressed" | "not_configured"
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None
    seconds: float = 0.0
    history: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        """The JSON form (seconds rounded to ms)."""
        return {"status": self.status, "attempts": self.attempts, "http_status": self.http_status,
                "error": self.error, "seconds": round(self.seconds, 3), "history": list(self.history)}


def slack_payload(alert: Alert) -> dict:
    """A JSON body Slack incoming webhooks accept (``text`` + ``blocks``); other receivers read ``text``/``alert``."""
    lines = [f"• *{r['rule']}* ({r['level']}): {r['message']}" for r in alert.reasons[:20]]
    if len(alert.reasons) > 20:
        lines.append(f"• … and {len(alert.reasons) - 20} more")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"tabpipe: {alert.decision} — model {alert.model_version}"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Model version*\n{alert.model_version}"},
            {"type": "mrkdwn", "text": f"*Decision*\n{alert.decision}"},
            {"type": "mrkdwn", "text": f"*Window*\n{alert.window}"},
            {"type": "mrkdwn", "text": f"*Rows*\n{alert.rows}"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines) or "no rule fired"}},
    ]
    if alert.report:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"report: {alert.report}"}]})
    return {"text": alert.summary, "blocks": blocks,
            "alert": {"key": alert.key, "model_version": alert.model_version, "decision": alert.decision,
                      "window": alert.window, "rows": alert.rows, "run_id": alert.run_id,
                      "reasons": list(alert.reasons)}}


def _post_once(url: str, body: bytes, timeout: float) -> tuple[int | None, str | None]:
    """(HTTP status, error text) of one POST, bounded by ``timeout`` even if the server trickles."""
    outcome: dict = {}
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return None, "the webhook URL must start with http:// or https://"

    def attempt() -> None:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "tabpipe-monitor"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310 -- scheme checked above
                response.read(65536)
                outcome["status"] = response.status
        except urllib.error.HTTPError as exc:
            outcome["status"], outcome["error"] = exc.code, f"HTTP {exc.code}"
        except Exception as exc:  # noqa: BLE001 — any failure of the call is a failed attempt, reported
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=attempt, name="tabpipe-webhook", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if worker.is_alive():
        return None, f"no complete answer within {timeout:.1f}s"
    return outcome.get("status"), outcome.get("error")


def deliver(alert: Alert, url: str | None, settings: AlertsSection, *, last_sent: datetime | None = None,
            now: datetime | None = None) -> Delivery:
    """POST ``alert`` to ``url`` with bounded retries; never raises, never runs past ``settings.total_s``."""
    if not url:
        return Delivery("not_configured", error=f"no webhook URL (set ${settings.webhook_url_env})")
    if last_sent is not None and now is not None and now - last_sent < timedelta(seconds=settings.cooldown_s):
        return Delivery("suppressed", error=f"same alert ({alert.key}) sent at {last_sent.isoformat()}, "
                                            f"within the cool-down of {settings.cooldown_s:g}s")
    body = json.dumps(slack_payload(alert), default=str).encode()
    start = time.monotonic()
    deadline = start + settings.total_s
    history: list[str] = []
    status, error, backoff = None, None, settings.backoff_s
    for attempt in range(1 + settings.retries):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            error = f"gave up: the total delivery time of {settings.total_s:g}s is used up"
            break
        status, error = _post_once(url, body, min(settings.timeout_s, max(remaining - 0.5, 0.05)))
        history.append(f"attempt {attempt + 1}: " + (f"HTTP {status}" if status and not error else str(error)))
        if status is not None and 200 <= status < 300:
            return Delivery("sent", attempt + 1, status, None, time.monotonic() - start, tuple(history))
        if status is not None and 400 <= status < 500 and status != 429:
            break                                         # the request is wrong: retrying will not help
        pause = min(backoff, deadline - time.monotonic() - 0.1)
        if attempt < settings.retries and pause > 0:
            time.sleep(pause)
            backoff *= 2
    return Delivery("failed", len(history), status, error or f"HTTP {status}", time.monotonic() - start, tuple(history))

"""Opt-in JSON logs (``TABPIPE_LOG_FORMAT=json``): one JSON object per line, the request id on request lines.

Read at the edge only: the gunicorn config picks ``JsonGunicornLogger`` (gunicorn's error and access logs,
and the root logger the app's own ``tabpipe.*`` loggers reach), the app factory gives every request an id
(``predlog_hook.request_id``). Lines logged while a request is handled carry its ``request_id``; access
lines carry it too, with method, path, status, bytes and milliseconds. The default stays plain text.
Light on purpose: gunicorn's master imports it.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from flask import has_request_context, request
from gunicorn.glogging import Logger as GunicornLogger

LOG_FORMAT_ENV = "TABPIPE_LOG_FORMAT"   # "json", or unset / "text" for the plain default
REQUEST_ID_KEY = "tabpipe.request_id"   # the WSGI environ key of a request's id (set by predlog_hook.request_id)
_MARK = "_tabpipe_json"


def assigned_request_id(environ) -> str | None:
    """The id already given to the request of this WSGI ``environ``, or None."""
    return environ.get(REQUEST_ID_KEY)


def json_logs_wanted(environ) -> bool:
    """True when ``environ`` asks for JSON logs."""
    return (environ.get(LOG_FORMAT_ENV) or "text").strip().lower() == "json"


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time (UTC), level, logger, message, request_id, exception, access fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's JSON line."""
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id is None and has_request_context():
            request_id = assigned_request_id(request.environ)
        if request_id is not None:
            line["request_id"] = request_id
        access = getattr(record, "access", None)
        if access:
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_json_logs(level: int | str | None = None) -> None:
    """Send the root logger (the app's own logs, Python warnings) to stderr as JSON lines; idempotent.

    ``level``: the root logger's level (gunicorn passes its ``loglevel``); INFO when first set up without one."""
    root = logging.getLogger()
    if not any(getattr(h, _MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
        level = logging.INFO if level is None else level
    if level is not None:
        root.setLevel(level)
    logging.captureWarnings(True)


class JsonGunicornLogger(GunicornLogger):
    """gunicorn's logger with JSON lines for its error and access logs, and the root logger set up alike."""

    def setup(self, cfg) -> None:
        """gunicorn's setup, then every handler of its two logs formats JSON."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
        use_json_logs(self.loglevel)

    def access(self, resp, req, environ, request_time) -> None:
        """One JSON access line with the request's id (the app's, else the client's X-Request-ID)."""
        if not getattr(self, "access_log_enabled", self.cfg.accesslog is not None):
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        fields = {"method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
                  "status": int(status), "bytes": getattr(resp, "sent", None),
                  "duration_ms": round(request_time.total_seconds() * 1000, 3),
                  "remote": environ.get("REMOTE_ADDR"), "user_agent": environ.get("HTTP_USER_AGENT")}
        request_id = assigned_request_id(environ) or (environ.get("HTTP_X_REQUEST_ID") or "")[:64] or None
        self.access_log.info("%s %s %s", fields["method"], fields["path"], status,
                             extra={"access": fields, "request_id": request_id})

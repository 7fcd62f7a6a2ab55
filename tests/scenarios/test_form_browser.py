"""The HTML form in a real headless Chromium, driven over the Chrome DevTools Protocol.

Chromium is the Debian package (/usr/bin/chromium); when it is missing and the tests run as root
it is installed with apt-get (how CI gets it), otherwise the test FAILS (never skips). CDP is spoken
over a minimal standard-library WebSocket client, so no browser-automation package is needed.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from service_helpers import Project, build_project, copy_project, ensure_chromium, sample_records
from tabpipe.serving.app import create_app

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------- a tiny CDP client


class CDP:
    """One WebSocket connection to a DevTools target; commands are synchronous, events are queued."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        url = urllib.parse.urlparse(ws_url)
        self.timeout = timeout
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the WebSocket handshake")
            data += chunk
        head, self._buf = data.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n")[0]
        if b" 101 " not in status:
            raise ConnectionError(f"WebSocket handshake refused: {head.decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if accept.encode() not in head:
            raise ConnectionError("bad Sec-WebSocket-Accept in the handshake")
        self._next_id = 0
        self.events: list[dict] = []

    # ---- framing (RFC 6455: client frames masked, server frames not)

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(head + mask + masked)

    def _recv_message(self) -> dict:
        parts = []
        while True:
            b1, b2 = self._exact(2)
            opcode, n = b1 & 0x0F, b2 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b2 & 0x80 else None
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:            # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if b1 & 0x80:
                    return json.loads(b"".join(parts))

    # ---- protocol

    def send(self, method: str, **params):
        self._next_id += 1
        msg_id = self._next_id
        self._send_frame(0x1, json.dumps({"id": msg_id, "method": method, "params": params}).encode())
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = self._recv_message()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no answer to CDP {method} within {self.timeout}s")

    def wait_event(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} event within {timeout}s")
            self.sock.settimeout(remaining)
            try:
                msg = self._recv_message()
            finally:
                self.sock.settimeout(self.timeout)
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def main_project(tmp_path_factory) -> Project:
    return build_project(tmp_path_factory, "main")


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def form_server(main_project, tmp_path_factory):
    """The app (production v0001) on a real HTTP server in a thread; yields its base URL."""
    config = copy_project(main_project, tmp_path_factory.mktemp("form") / "p", production="v0001")
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    app.extensions["tabpipe"]["holder"].stop()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """Headless Chromium with remote debugging; yields a CDP connection to its page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,1400", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    cdp = None
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.is_file() and len(active.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start (exit {proc.poll()}):\n"
                                     f"{(profile.parent / 'chromium.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        pages = [t for t in targets if t.get("type") == "page"]
        assert pages, targets
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        cdp.send("Page.enable")
        cdp.send("Runtime.enable")
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # the browser and its helper processes (own session)
            proc.wait(10)
        log.close()


# --------------------------------------------------------------------------- helpers


def form_value(name: str, value) -> str:
    if value is None:
        return ""
    if name == "timestamp":   # datetime-local wants YYYY-MM-DDTHH:MM
        return str(value).replace(" ", "T")[:16]
    return str(value)


def fill_form(cdp: CDP, record: dict) -> dict:
    """Set every field (inputs and selects) like a user would; returns what the page now holds."""
    values = {k: form_value(k, v) for k, v in record.items()}
    script = """
    (() => {
      const values = __VALUES__;
      for (const [name, value] of Object.entries(values)) {
        const el = document.getElementById(name);
        if (!el) throw new Error('no form field ' + name);
        el.focus();
        el.value = value;
        el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true}));
      }
      return Object.fromEntries(Object.keys(values).map(n => [n, document.getElementById(n).value]));
    })()
    """.replace("__VALUES__", json.dumps(values))
    held = cdp.evaluate(script)
    assert held == values, {k: (values[k], held.get(k)) for k in values if held.get(k) != values[k]}
    return values


def submit(cdp: CDP, no_validate: bool = False) -> None:
    cdp.events.clear()
    cdp.evaluate(("document.querySelector('form').noValidate = true;" if no_validate else "")
                 + "document.getElementById('submit').click(); true")
    cdp.wait_event("Page.loadEventFired", 20)


def text_of(cdp: CDP, element_id: str):
    return cdp.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
                        f"return e ? e.textContent.trim() : null; }})()")


def api_predict(base: str, record: dict) -> dict:
    req = urllib.request.Request(f"{base}/predict", data=json.dumps(record).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["predictions"][0]


def screenshot(cdp: CDP, path: Path) -> Path:
    data = base64.b64decode(cdp.send("Page.captureScreenshot", format="png")["data"])
    path.write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, len(data)
    return path


# --------------------------------------------------------------------------- tests


def test_chromium_is_installed(chromium):
    out = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Chromium" in out.stdout, out


def test_form_renders_typed_inputs_from_the_schema(browser, form_server, tmp_path):
    browser.navigate(form_server + "/")
    info = browser.evaluate("""
    (() => {
      const out = {};
      for (const el of document.querySelectorAll('form input, form select')) {
        out[el.name] = {tag: el.tagName.toLowerCase(), type: el.type, min: el.min, max: el.max,
                        required: el.required, options: el.tagName === 'SELECT' ? [...el.options].map(o => o.value) : null};
      }
      return {fields: out, version: document.getElementById('model-version').textContent};
    })()
    """)
    fields = info["fields"]
    assert info["version"] == "v0001"
    # hard: [category]: a select of the allowed values ((missing) too: nullable: false is only an expectation)
    assert fields["technology"]["tag"] == "select" and fields["technology"]["options"] == ["", "3G", "4G", "5G"]
    # listed categories are suggestions (datalist); other values are scored with a warning
    assert fields["vendor"]["tag"] == "input" and fields["region"]["tag"] == "input"
    listed = browser.evaluate("[...document.querySelectorAll('#region-listed option')].map(o => o.value)")
    assert listed == ["central", "east", "north", "south", "west"]
    assert fields["timestamp"]["type"] == "datetime-local"
    # the browser enforces hard ranges only; an expected range is a hint
    assert fields["packet_loss_pct"]["type"] == "number" and float(fields["packet_loss_pct"]["max"]) == 100
    assert fields["latency_ms"]["type"] == "number" and fields["latency_ms"]["max"] == ""
    assert "5000" in browser.evaluate("document.getElementById('latency_ms').placeholder")
    assert fields["latency_ms"]["required"] is False and fields["sinr_db"]["required"] is False
    assert "measurement_id" not in fields and "cell_id" not in fields
    screenshot(browser, tmp_path / "form.png")


def test_fill_and_submit_shows_the_api_prediction(browser, form_server, main_project, tmp_path):
    records = sample_records(main_project, 2, seed=41)
    records[1]["sinr_db"] = None        # nullable field left empty
    records[1]["vendor"] = None         # nullable select on "(missing)"
    for i, record in enumerate(records):
        browser.navigate(form_server + "/")
        values = fill_form(browser, record)
        submit(browser)
        shot = screenshot(browser, tmp_path / f"result-{i}.png")
        assert shot.stat().st_size > 2000
        api_record = {**record, "timestamp": values["timestamp"]}
        expected = api_predict(form_server, api_record)
        assert text_of(browser, "prediction") == str(expected["prediction"]), browser.evaluate("document.body.innerText")
        assert text_of(browser, "probability") == f"{expected['probability']:.4f}"
        # the form comes back filled with what was sent
        assert browser.evaluate("document.getElementById('latency_ms').value") == values["latency_ms"]


def test_out_of_range_value_is_scored_with_a_warning(browser, form_server, main_project, tmp_path):
    record = {**sample_records(main_project, 1, seed=42)[0], "latency_ms": 99999}
    browser.navigate(form_server + "/")
    fill_form(browser, record)
    # an expected range does not stop the browser: the value is sent ...
    assert browser.evaluate("document.querySelector('form').checkValidity()") is True
    # ... scored, and the expectation is named next to the result
    submit(browser)
    warning = text_of(browser, "warn-latency_ms")
    assert warning is not None, browser.evaluate("document.body.innerText")
    assert "latency_ms" in warning and "above the maximum 5000" in warning
    expected = api_predict(form_server, record)
    assert text_of(browser, "probability") == f"{expected['probability']:.4f}"
    assert "1 warning" in text_of(browser, "warnings") and text_of(browser, "errors") is None
    assert browser.evaluate("document.getElementById('latency_ms').value") == "99999"
    png = screenshot(browser, tmp_path / "warning.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_hard_violation_shows_the_field_error(browser, form_server, main_project, tmp_path):
    record = sample_records(main_project, 1, seed=43)[0]
    browser.navigate(form_server + "/")
    fill_form(browser, record)
    # a hard range: the browser's own constraint validation knows it ...
    browser.evaluate("(() => { document.getElementById('packet_loss_pct').value = '150'; return true; })()")
    assert browser.evaluate("document.querySelector('form').checkValidity()") is False
    browser.evaluate("(() => { document.getElementById('packet_loss_pct').value = " + json.dumps(str(record["packet_loss_pct"]))
                     + "; return true; })()")
    # ... and the server refuses what a client that edits the page sends: technology is hard: [category]
    browser.evaluate("(() => { const s = document.getElementById('technology'); s.add(new Option('6G', '6G')); "
                     "s.value = '6G'; return true; })()")
    submit(browser, no_validate=True)
    error = text_of(browser, "err-technology")
    assert error is not None and "allowed categories" in error, browser.evaluate("document.body.innerText")
    assert text_of(browser, "prediction") is None
    assert text_of(browser, "errors") == "Please fix the highlighted fields."
    screenshot(browser, tmp_path / "error.png")


@pytest.fixture(scope="module")
def other_site(tmp_path_factory):
    """A page on another site (http://localhost:PORT vs the service's http://127.0.0.1:PORT)."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path_factory.mktemp("other-site")
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://localhost:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_cross_site_page_cannot_post_a_csv(browser, form_server, other_site, main_project):
    """Any web page could make a browser send a multipart POST (a "simple" request, no preflight):
    the service refuses it, while the same upload from the service's own origin is scored."""
    root, base = other_site
    csv = ",".join(sample_records(main_project, 1)[0]) + "\n"
    rec = sample_records(main_project, 1, seed=44)[0]
    csv += ",".join("" if v is None else str(v) for v in rec.values()) + "\n"
    page = """<!doctype html><form id="f" method="post" enctype="multipart/form-data" action="__TARGET__/predict/csv">
    <input type="file" name="file" id="file"></form>
    <script>
      const dt = new DataTransfer();
      dt.items.add(new File([__CSV__], 'rows.csv', {type: 'text/csv'}));
      document.getElementById('file').files = dt.files;
    </script>""".replace("__TARGET__", form_server).replace("__CSV__", json.dumps(csv))
    (root / "attack.html").write_text(page)
    browser.navigate(base + "/attack.html")
    browser.events.clear()
    browser.evaluate("document.getElementById('f').submit(); true")
    browser.wait_event("Page.loadEventFired", 20)
    text = browser.evaluate("document.body.innerText")
    assert browser.evaluate("location.href") == form_server + "/predict/csv"
    assert "cross-site request refused" in text and "serve.allowed_origins" in text, text[:500]
    # the same multipart upload from the service's own page (Origin and Sec-Fetch-Site: same-origin)
    browser.navigate(form_server + "/")
    answer = browser.evaluate("""(async () => {
      const body = new FormData();
      body.append('file', new File([__CSV__], 'rows.csv', {type: 'text/csv'}));
      const r = await fetch('/predict/csv', {method: 'POST', body});
      return {status: r.status, text: await r.text()};
    })()""".replace("__CSV__", json.dumps(csv)))
    assert answer["status"] == 200 and "probability" in answer["text"].splitlines()[0], answer

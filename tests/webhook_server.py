"""A webhook receiver on 127.0.0.1 for the alert tests: answers, hangs, or fails, as planned per request."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hook:
    """A webhook on 127.0.0.1: ``plan`` is the list of behaviours for successive requests (last one repeats)."""

    def __init__(self, plan: list[str]):
        self.plan, self.bodies, self.release = plan, [], threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                mode = hook.plan[min(len(hook.bodies), len(hook.plan)) - 1]
                if mode == "hang":
                    hook.release.wait(30)
                    return
                status = {"ok": 200, "500": 500, "400": 400, "429": 429}[mode]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

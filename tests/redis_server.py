"""A throwaway Redis server for tests: Debian's ``redis-server`` on a free port of 127.0.0.1, its files in a temp
dir, stopped afterwards. A missing binary makes the test FAIL, not skip (scripts/test_deps.sh installs it).

    with redis_server() as url:
        client = redis.Redis.from_url(url)
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

INSTALL_HINT = "redis-server not found: install Debian's redis-server (scripts/test_deps.sh does)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(*, appendonly: bool = False) -> Iterator[str]:
    """Start ``redis-server`` (no persistence unless ``appendonly``), yield its ``redis://`` URL, stop it."""
    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not shutil.which(binary):
        raise RuntimeError(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="tabpipe-redis-") as folder:
        for _ in range(5):   # a port taken between the probe and the bind: try another
            port = _free_port()
            proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
                                     "--save", "", "--appendonly", "yes" if appendonly else "no",
                                     "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                proc.kill()
                proc.wait()
                continue
            try:
                yield url
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        raise RuntimeError("redis-server did not start on a free port in 5 attempts")

"""Misbehaving servers on loopback for outage tests.

- :func:`stalled_tcp_server`: accepts connections and never answers (a hung database host).
- :func:`stalling_mongo`: speaks just enough of the MongoDB wire protocol (OP_QUERY/OP_MSG ``hello``,
  ``ping``, ``find``) for pymongo to connect and get a cursor's first batch, then never answers the
  ``getMore``: a cursor stalled mid-read, as a real server under a network partition would leave it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


@dataclass
class ServerStats:
    port: int
    connections: int = 0
    commands: list[str] = field(default_factory=list)


def _handle(handler, conn: socket.socket, stats: ServerStats, stop: threading.Event) -> None:
    """Run ``handler`` on ``conn``; the handler's thread owns the socket and closes it."""
    with conn:
        try:
            handler(conn, stats, stop)
        except OSError:
            pass  # the client went away, or the server is stopping


def _serve(handler, stats: ServerStats, listener: socket.socket, stop: threading.Event) -> None:
    """Accept connections until ``stop``; each one is handled on its own daemon thread."""
    listener.settimeout(0.1)
    held: list[tuple[socket.socket, threading.Thread]] = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        stats.connections += 1
        thread = threading.Thread(target=_handle, args=(handler, conn, stats, stop), daemon=True)
        thread.start()
        held.append((conn, thread))
    for conn, _ in held:  # wake the handlers; each closes its own socket
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
    for _, thread in held:
        thread.join(5)


@contextmanager
def _server(handler) -> Iterator[ServerStats]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stats = ServerStats(port=listener.getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(handler, stats, listener, stop), daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _never_answer(conn: socket.socket, stats: ServerStats, stop: threading.Event) -> None:
    """Read and discard whatever the client sends; never write a byte."""
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


@contextmanager
def stalled_tcp_server() -> Iterator[ServerStats]:
    """A loopback TCP server that accepts and never answers."""
    with _server(_never_answer) as stats:
        yield stats


def _recv_exact(conn: socket.socket, n: int, stop: threading.Event) -> bytes | None:
    data = b""
    while len(data) < n and not stop.is_set():
        try:
            chunk = conn.recv(n - len(data))
        except TimeoutError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data if len(data) == n else None


def _hello() -> dict:
    return {"ok": 1.0, "isWritablePrimary": True, "ismaster": True, "helloOk": True, "maxWireVersion": 21,
            "minWireVersion": 0, "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000, "localTime": dt.datetime.now(dt.timezone.utc), "connectionId": 1}


FIRST_BATCH = [{"id": i, "amount": float(i), "label": i % 2} for i in range(3)]


def _answer(command: dict) -> dict | None:
    """The reply to one command, or None to stall (``getMore``)."""
    name = next(iter(command))
    if name.lower() in ("hello", "ismaster"):
        return _hello()
    if name == "find":
        ns = f"{command.get('$db', 'test')}.{command['find']}"
        return {"ok": 1.0, "cursor": {"id": bson.int64.Int64(4242), "ns": ns, "firstBatch": FIRST_BATCH}}
    if name == "getMore":
        return None
    return {"ok": 1.0}  # ping, endSessions, killCursors, ...


def _speak_mongo(conn: socket.socket, stats: ServerStats, stop: threading.Event) -> None:
    """Answer hello/find; on getMore go silent (keep reading, never reply)."""
    conn.settimeout(0.2)
    while not stop.is_set():
        header = _recv_exact(conn, 16, stop)
        if header is None:
            return
        length, request_id, _, opcode = struct.unpack("<iiii", header)
        body = _recv_exact(conn, length - 16, stop)
        if body is None:
            return
        if opcode == OP_QUERY:
            name_end = body.index(b"\x00", 4)
            doc = bson.decode(body[name_end + 9:name_end + 9 + struct.unpack("<i", body[name_end + 9:name_end + 13])[0]])
            reply = _answer(doc)
            stats.commands.append(next(iter(doc)))
            if reply is None:
                continue
            payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
            conn.sendall(struct.pack("<iiii", 16 + len(payload), 0, request_id, OP_REPLY) + payload)
        elif opcode == OP_MSG:
            doc = bson.decode(body[5:5 + struct.unpack("<i", body[5:9])[0]])  # flags(4) + kind 0 (1)
            stats.commands.append(next(iter(doc)))
            reply = _answer(doc)
            if reply is None:
                continue
            payload = struct.pack("<IB", 0, 0) + bson.encode(reply)
            conn.sendall(struct.pack("<iiii", 16 + len(payload), 0, request_id, OP_MSG) + payload)
        else:
            return


@contextmanager
def stalling_mongo() -> Iterator[ServerStats]:
    """A fake MongoDB whose cursors return a first batch of 3 documents and then stall."""
    with _server(_speak_mongo) as stats:
        yield stats

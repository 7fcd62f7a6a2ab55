"""Unit tests are the fast loop: pure logic only. A unit test that starts a process or opens a listening
socket fails here, naming where it belongs (tests/scenarios)."""
import multiprocessing.process
import socket
import subprocess

import pytest


def _refuse(what: str):
    def refuse(*_args, **_kwargs):
        raise AssertionError(f"a unit test {what}: move it to tests/scenarios (tests/unit is pure logic)")
    return refuse


@pytest.fixture(autouse=True)
def _pure(monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starts a process"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse("starts a process"))
    monkeypatch.setattr(socket.socket, "listen", _refuse("opens a server socket"))

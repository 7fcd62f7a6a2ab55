"""The Dockerfile, built and run (docs/deploy.md, "The image, tested"; ``make test-container``).

The real Dockerfile is built unchanged by ``buildah bud`` (chroot isolation, no pull) on a stand-in for
``python:3.11-slim-bookworm`` (standin_image.py). In the image, as the user it declares: a keypair,
training with the shipped config, gunicorn answering the host (health, prediction, the image's own
HEALTHCHECK, /metrics, /livez and /readyz), and nothing writable but the run outputs.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import standin_image
from standin_image import say

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/tabpipe:test"
USER = "10001:10001"              # the Dockerfile's USER
APP_CONFIG = "/app/config/pipeline.yaml"
SIGNING_KEY_ENV, VERIFY_KEY_ENV = "TABPIPE_REGISTRY_SIGNING_KEY", "TABPIPE_REGISTRY_VERIFY_KEY"


@pytest.fixture(scope="module")
def buildah() -> standin_image.Buildah:
    """buildah's storage with the stand-in base image (cached between runs)."""
    problems = standin_image.preconditions()
    if problems:
        pytest.fail("cannot build images here: " + "; ".join(problems))
    return standin_image.ensure_base()


@pytest.fixture(scope="module")
def image(buildah):
    """The Dockerfile built as tabpipe:test; the image's configuration (buildah inspect)."""
    say("buildah bud the Dockerfile")
    started = time.monotonic()
    buildah.bud(IMAGE, "Dockerfile", REPO)
    say(f"built in {time.monotonic() - started:.0f}s")
    yield json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)
    buildah("rmi", "--force", IMAGE, check=False)
    buildah("rmi", "--prune", check=False, timeout=600)   # the builder stage's leftovers


@pytest.fixture(scope="module")
def container(buildah, image):
    """A working container of the image; its changes (the registry, the runs) last for the module."""
    name = buildah("from", "--pull=never", IMAGE).stdout.strip()
    yield name
    buildah("rm", name, check=False)


@pytest.fixture(scope="module")
def keys(buildah, container):
    """``tabpipe keys generate`` in the container, into a host folder mounted at /keys: the keys' PEM."""
    folder = Path(tempfile.mkdtemp(prefix="tabpipe-container-keys-"))
    os.chown(folder, 10001, 10001)
    try:
        done = buildah.run_in(container, "tabpipe", "keys", "generate", "--dir", "/keys",
                              volumes=(f"{folder}:/keys:rw",))
        assert "registry-signing.pem" in done.stdout, done.stdout
        yield {SIGNING_KEY_ENV: (folder / "registry-signing.pem").read_text(),
               VERIFY_KEY_ENV: (folder / "registry-verify.pem").read_text()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(buildah, container, keys):
    """``tabpipe train`` in the container (signing key from the environment): its output."""
    say(f"tabpipe train --config {APP_CONFIG}")
    started = time.monotonic()
    done = buildah.run_in(container, "tabpipe", "train", "--config", APP_CONFIG, env=keys, check=False,
                          timeout=3600)
    say(f"trained in {time.monotonic() - started:.0f}s (exit {done.returncode})")
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method: str, url: str, body: dict | list | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """One request from the host: (status, body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:   # nosec B310: our own server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def server(buildah, container, image, keys, trained):
    """The image's CMD (gunicorn) in the background, bound to 127.0.0.1 on a free port (chroot isolation
    shares the host's network): its base URL and port."""
    port = free_port()
    command = image["Docker"]["config"]["Cmd"]
    env = {"PORT": str(port), "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}", VERIFY_KEY_ENV: keys[VERIFY_KEY_ENV]}
    options = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
    log = tempfile.TemporaryFile(mode="w+")
    say(f"serving: {' '.join(command)} on 127.0.0.1:{port}")
    process = subprocess.Popen(buildah.argv("run", "--isolation", "chroot", *options, container, "--", *command),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read()[-4000:]

    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, f"the server exited {process.returncode}:\n{output()}"
            try:
                if http("GET", url + "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no healthy answer in 240 s:\n{output()}"
            time.sleep(1)
        yield url, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)   # the process group this fixture started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def a_record() -> dict:
    """The first row of the bundled sample without its target, as the service takes it."""
    with open(REPO / "data/network_kpis.csv", newline="") as f:
        row = next(csv.DictReader(f))
    del row["fault_flag"]
    record = {}
    for name, value in row.items():
        try:
            record[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            record[name] = value
    return record


def test_the_image_runs_as_its_non_root_user(buildah, image, container):
    """The image declares the non-root user, and commands run as it without asking."""
    assert image["OCIv1"]["config"]["User"] == USER
    ids = buildah.run_in(container, "sh", "-c", "id -u; id -g").stdout.split()
    assert ids == USER.split(":")


def test_keys_and_training_with_the_shipped_config(buildah, container, keys, trained):
    """A keypair made in the container signs the version that training publishes as production."""
    listed = buildah.run_in(container, "tabpipe", "models", "list", "--config", APP_CONFIG,
                          env={VERIFY_KEY_ENV: keys[VERIFY_KEY_ENV], "COLUMNS": "200"}).stdout
    rows = [line for line in listed.splitlines() if "*" in line]
    assert rows and "yes" in rows[0], listed   # a production version, its signature verified


def test_the_service_answers_the_host(server):
    """GET /health and POST /predict from the host, to gunicorn in the container."""
    url, _ = server
    status, body = http("GET", url + "/health")
    assert status == 200, body
    status, body = http("POST", url + "/predict", {"records": [a_record()]})
    assert status == 200, body
    answer = json.loads(body)
    scored = answer["predictions"][0]
    assert answer["model_version"] and scored["prediction"] is not None and 0.0 <= scored["probability"] <= 1.0, answer


def test_the_images_healthcheck_passes(buildah, container, image, server):
    """The image's own HEALTHCHECK command, run in the container against the live service, exits 0."""
    _, port = server
    test = image["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    command = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    done = buildah.run_in(container, *command, env={"PORT": str(port)}, check=False, timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr)


def test_metrics_and_probes_answer(server):
    """GET /metrics answers in Prometheus' text format with the served requests counted; /livez and /readyz
    answer 200 (a verified model is loaded)."""
    url, _ = server
    for probe in ("/livez", "/readyz"):
        status, body = http("GET", url + probe)
        assert status == 200, (probe, body)
    status, body = http("GET", url + "/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    assert status == 200 and "# TYPE" in text and "tabpipe_" in text, text[:500]


PROBE = """
for d in "$@"; do
  case "$d" in
    file:*) f="${d#file:}"; if ( : >> "$f" ) 2>/dev/null; then echo "$f writable"; else echo "$f read-only"; fi ;;
    *) if touch "$d/.write-probe" 2>/dev/null; then rm -f "$d/.write-probe"; echo "$d writable";
       else echo "$d read-only"; fi ;;
  esac
done
"""
READ_ONLY = ["/", "/app", "/app/config", "/app/data", "file:/app/app.py", "file:/app/config/pipeline.yaml",
             "/opt/venv", "/opt/venv/bin", "/opt/venv/lib/python3.11/site-packages", "/usr/local/bin", "/etc"]
WRITABLE = ["/app/artifacts", "/app/model_registry"]


def test_nothing_writable_but_the_run_outputs(buildah, container, trained):
    """As the image's user: the code, the venv, the configs and the system refuse writes; the artifacts
    and the registry take them."""
    done = buildah.run_in(container, "sh", "-c", PROBE, "probe", *READ_ONLY, *WRITABLE)
    found = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    expected = {path.removeprefix("file:"): "read-only" for path in READ_ONLY}
    expected.update({path: "writable" for path in WRITABLE})
    assert found == expected

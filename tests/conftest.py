"""Make the in-tree package and the tests' support modules (helpers, service_helpers, ...) importable, mark
each test by its folder (unit / scenario / faults), and give the whole test session (including the
``tabpipe`` subprocesses it starts, which inherit the environment) one registry keypair, since
``registry.require_signature`` is on by default."""
import os
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS.parent / "src"))
sys.path.insert(0, str(TESTS))   # support modules for the tests in unit/, scenarios/ and faults/
from tabpipe.edge import prepare_process  # noqa: E402

prepare_process()   # OMP_WAIT_POLICY for this process and the ones it starts, before scikit-learn loads
from tabpipe.registry.base import CACHE_DIR_ENV, SIGNING_KEY_ENV, VERIFY_KEY_ENV  # noqa: E402
from tabpipe.registry.signing import generate_keypair  # noqa: E402

SIGNING_PEM, VERIFY_PEM = (pem.decode() for pem in generate_keypair())
os.environ[SIGNING_KEY_ENV] = SIGNING_PEM
os.environ[VERIFY_KEY_ENV] = VERIFY_PEM
if os.environ.get("PYTEST_XDIST_WORKER"):   # one registry cache per worker process
    os.environ[CACHE_DIR_ENV] = tempfile.mkdtemp(prefix=f"tabpipe-test-cache-{os.environ['PYTEST_XDIST_WORKER']}-")
else:
    os.environ.setdefault(CACHE_DIR_ENV, tempfile.mkdtemp(prefix="tabpipe-test-cache-"))

FOLDER_MARKERS = {"unit": ("unit",), "scenarios": ("scenario",), "faults": ("faults",)}


def pytest_collection_modifyitems(config, items):
    """Mark each test by the folder it lives in (pytest.ini lists the markers)."""
    for item in items:
        folder = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        for name in FOLDER_MARKERS.get(folder, ()):
            item.add_marker(name)


@pytest.fixture(scope="session")
def registry_keys():
    """The session's keys as loaded objects (``Keys(signing=..., verify=...)``)."""
    from cryptography.hazmat.primitives import serialization

    from tabpipe.registry import Keys

    signing = serialization.load_pem_private_key(SIGNING_PEM.encode(), password=None)
    return Keys(signing=signing, verify=signing.public_key())


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server on 127.0.0.1 (any free port) for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch):
    """Fake credentials through the standard AWS chain (and nothing pointing elsewhere)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_bucket(moto_endpoint, aws_credentials) -> str:
    """A fresh, empty bucket on the session's moto server."""
    import uuid

    import boto3

    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket

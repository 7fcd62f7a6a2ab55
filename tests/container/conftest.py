"""tests/container builds and runs the Docker image (minutes, root, debootstrap + buildah): collected only
when asked for, with ``-m container`` (``make test-container``) or ``TABPIPE_TEST_CONTAINER=1``; any other
run (``make test``, ``make test-fast``) does not collect it at all."""
import os


def container_tests_wanted(config) -> bool:
    """Whether this run asked for the container tests."""
    markexpr = config.getoption("markexpr", "") or ""
    return os.environ.get("TABPIPE_TEST_CONTAINER") == "1" or (
        "container" in markexpr and "not container" not in markexpr)


def pytest_ignore_collect(collection_path, config):
    """Leave this folder's test files out unless the container tests were asked for."""
    if collection_path.name.startswith("test_") and not container_tests_wanted(config):
        return True
    return None

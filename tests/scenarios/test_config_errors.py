"""A configuration error through the installed console script: exit code 2, one line, no traceback."""
from __future__ import annotations

import os
import subprocess

import yaml

from helpers import REPO, TABPIPE_BIN, make_project


def edit_yaml(path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _flat(text: str) -> str:
    """Output with terminal line wrapping undone."""
    return text.replace("\n", "")


def test_cli_config_error_real_process(tmp_path):
    """The installed console script: exit code 2 and no traceback, end to end."""
    project = make_project(tmp_path / "proj", rows=60)
    edit_yaml(project, lambda d: d["training"].update(metrc=1))
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run([str(TABPIPE_BIN), "train", "--config", str(project)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert f"{project}: training.metrc: unknown key" in _flat(out)

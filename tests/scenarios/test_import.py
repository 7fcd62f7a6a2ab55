"""Importing tabpipe, in a fresh interpreter, changes nothing in the environment."""
from __future__ import annotations

import sys

from helpers import REPO


def test_importing_tabpipe_leaves_the_environment_alone():
    import subprocess

    code = "import os; before = dict(os.environ); import tabpipe; assert dict(os.environ) == before, 'changed'"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(REPO / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)

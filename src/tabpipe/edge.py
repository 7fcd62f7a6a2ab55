"""Process set-up done by entry points (the CLI, the WSGI app, gunicorn's config, benchmarks), never on import.

OpenMP's busy-wait between parallel regions starves other threads on small or shared VMs: a
HistGradientBoosting fit measured 25x slower with 2 spinning threads on a 2-core machine. The policy
must be in the environment before scikit-learn loads its OpenMP runtime; worker processes inherit it.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping


def prepare_process(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set OpenMP's passive wait policy in ``environ`` unless the user set one."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

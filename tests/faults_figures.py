"""Figures of the fault-injection suite: each test records what it measured; with
``TABPIPE_FAULT_FIGURES=path.json`` set they are also written there (RELIABILITY.md quotes such a run)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()


def record(section: str, **figures) -> None:
    print(f"[faults] {section}: {json.dumps(figures, default=str)}")
    target = os.environ.get("TABPIPE_FAULT_FIGURES")
    if not target:
        return
    with _LOCK:
        path = Path(target)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[section] = figures
        path.write_text(json.dumps(data, indent=2, default=str))

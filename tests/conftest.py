"""Make the in-tree package importable without installing it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import tabpipe  # noqa: F401

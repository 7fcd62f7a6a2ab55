"""The ``tabpipe monitor`` workflow's pure parts (tabpipe.monitoring.job)."""
from __future__ import annotations

from tabpipe.monitoring.job import SMALL_FILE_ROWS, SMALL_FILES, compaction_advice


def test_many_small_log_files_are_worth_a_warning_naming_the_command():
    small = [{"rows": 1_000}] * (SMALL_FILES + 1)
    advice = compaction_advice(small)
    assert advice is not None and "tabpipe log compact" in advice and f"{SMALL_FILES + 1} files" in advice
    assert compaction_advice(small[:SMALL_FILES]) is None                      # few files: read them as they are
    assert compaction_advice([{"rows": SMALL_FILE_ROWS}] * (SMALL_FILES + 1)) is None   # large files: rows dominate

"""Reading a config must not import the heavy libraries only training needs: every CLI command reads one
(``tabpipe models promote`` twice, in two processes), and under load each second of imports is several."""
import subprocess
import sys

from helpers import REPO


def test_reading_a_config_without_candidates_imports_no_scipy_stats_and_no_readers():
    code = ("import sys; from tabpipe.config import load_settings; "
            f"load_settings({str(REPO / 'config' / 'pipeline.yaml')!r}, check_candidates=False); "
            "print(sorted(m for m in ('scipy.stats', 'sklearn', 'sqlalchemy', 'pymongo', 'tabpipe.sources.core') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_search_spaces_still_build_scipy_distributions():
    from tabpipe.config import parse_space

    dist = parse_space({"log_uniform": [0.01, 10.0]})
    assert 0.01 <= dist.rvs(random_state=0) <= 10.0
    assert parse_space({"int_uniform": [2, 4]}).support() == (2, 4)

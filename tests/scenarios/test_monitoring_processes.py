"""A columnar log window counted by several processes gives, field for field, what one pass gives
(tabpipe.monitoring.log_stats); one pass is kept where several cannot pay or cannot be exact."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from log_helpers import SCHEMA, T0, counting, logged, same
from tabpipe.history.logread import log_chunks
from tabpipe.history.store import HistoryStore
from tabpipe.monitoring.log_stats import counted_in_processes, plan
from tabpipe.monitoring.window_stats import stream_stats


@pytest.fixture()
def window(tmp_path):
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.sqlite'}", log_format="parquet")
    rows = logged(3000, seed=1)
    store.log_predictions(rows)
    store.attach_outcomes({f"id{i}": int(i % 3 == 0) for i in range(0, 3000, 4)})
    spec, profile = counting(train_seed=2)
    yield store, spec, profile
    store.close()


@pytest.mark.parametrize("bounds", [{}, {"since": T0 + timedelta(hours=1, minutes=30),
                                         "until": T0 + timedelta(hours=6, minutes=10)}])
def test_processes_count_what_one_pass_counts(window, bounds):
    store, spec, _ = window
    since, until = bounds.get("since"), bounds.get("until")
    groups = plan(store, since=since, until=until, version="v1", processes=3, min_rows=1)
    assert groups is not None and len(groups) == 3
    assert [g.first_row for g in groups[1:]] == list(np.cumsum([g.rows for g in groups])[:-1])
    one = stream_stats(log_chunks(store, SCHEMA, since=since, until=until, version="v1", chunk_rows=256), spec)
    assert one.rows == sum(g.rows for g in groups) and one.labelled.sum() > 0 and one.rules
    several = counted_in_processes(store, groups, spec, since=since, until=until, version="v1", where="the log")
    same(several, one)


def test_one_pass_where_several_cannot_pay_or_be_exact(window, tmp_path):
    store, _, _ = window
    assert plan(store, since=None, until=None, version="v1", processes=2, min_rows=1) is not None
    assert plan(store, since=None, until=None, version="v1", processes=2, min_rows=3001) is None   # too few rows
    assert plan(store, since=None, until=None, version="v1", processes=1, min_rows=1) is None      # one core
    assert plan(store, since=T0 + timedelta(hours=9), until=None, version="v1", processes=2, min_rows=1) is None
    mixed = HistoryStore.open(f"sqlite:///{tmp_path / 'mixed.sqlite'}", log_format="sql")
    mixed.log_predictions(logged(10, seed=4))                        # rows in the SQL table
    mixed.close()
    mixed = HistoryStore.open(f"sqlite:///{tmp_path / 'mixed.sqlite'}", log_format="parquet")
    mixed.log_predictions(logged(3000, seed=5))
    assert plan(mixed, since=None, until=None, version="v1", processes=2, min_rows=1) is None
    mixed.close()


@pytest.mark.parametrize("exact_rows", [2_000_000, 1_000])
def test_a_monitoring_run_over_the_log_decides_the_same_either_way(window, tmp_path, monkeypatch, exact_rows):
    """``run_monitor`` over a log window: counted by several processes (the size threshold lowered to 1 row)
    or in one pass, the same monitoring result — with every row's score kept, and with the scores binned
    (``exact_rows`` below the window: the bins' float sums then differ in the last digits, by the order they
    were added in)."""
    import json

    from tabpipe.config import AlertsSection, RulesSection
    from tabpipe.monitoring import log_stats
    from tabpipe.monitoring.monitor import MonitorSettings, log_window, run_monitor

    store, spec, profile = window
    settings = MonitorSettings(rules=RulesSection(), alerts=AlertsSection(), psi_min_rows=100, evidently=False,
                               evidently_max_rows=20_000, evidently_drift_share=0.5, seed=3, exact_rows=exact_rows)
    results = []
    for min_rows in (10**9, 1):
        monkeypatch.setattr(log_stats, "MIN_ROWS", min_rows)
        started = []
        monkeypatch.setattr(log_stats, "plan", _recording(log_stats.plan, started))
        result = run_monitor(log_window(store, "v1", T0, T0 + timedelta(hours=9)), model=spec.model, version="v1",
                             profile=profile, reference=None, out_dir=tmp_path / str(min_rows), settings=settings,
                             store=store, now=T0 + timedelta(hours=9))
        assert started == [min_rows == 1]          # several processes only with the threshold lowered
        results.append({k: v for k, v in result.items() if k not in ("reports", "stage_seconds", "run_id", "alert")})
    assert results[0]["window"]["rows"] == 3000 and results[0]["window"]["labelled_rows"] == 750
    assert ("binned" in results[0]["metrics"]["realised"]) == (exact_rows < 3000)
    digits = 17 if exact_rows > 3000 else 10
    assert (json.dumps(_rounded(results[0], digits), sort_keys=True, default=str)
            == json.dumps(_rounded(results[1], digits), sort_keys=True, default=str))


def _rounded(value, digits: int):
    """``value`` with every float to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _recording(plan_function, started: list):
    def recorded(*args, **kwargs):
        groups = plan_function(*args, **kwargs)
        started.append(groups is not None)
        return groups
    return recorded


def test_a_process_that_cannot_count_leaves_the_window_to_one_pass(window, tmp_path, monkeypatch, caplog):
    """A broken process pool (a process that could not start, or was killed) does not fail the monitoring run:
    the window is counted in one pass, with a warning."""
    from concurrent.futures.process import BrokenProcessPool

    from tabpipe.config import AlertsSection, RulesSection
    from tabpipe.monitoring import log_stats
    from tabpipe.monitoring.monitor import MonitorSettings, log_window, run_monitor

    store, spec, profile = window
    settings = MonitorSettings(rules=RulesSection(), alerts=AlertsSection(), psi_min_rows=100, evidently=False,
                               evidently_max_rows=20_000, evidently_drift_share=0.5, seed=3)

    def broken(*_args, **_kwargs):
        raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(log_stats, "MIN_ROWS", 1)
    monkeypatch.setattr(log_stats, "counted_in_processes", broken)
    result = run_monitor(log_window(store, "v1", T0, T0 + timedelta(hours=9)), model=spec.model, version="v1",
                         profile=profile, reference=None, out_dir=tmp_path / "run", settings=settings, store=store,
                         now=T0 + timedelta(hours=9))
    assert result["window"]["rows"] == 3000 and result["window"]["labelled_rows"] == 750
    assert "counting it in one pass" in caplog.text

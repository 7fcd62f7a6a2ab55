"""SIGKILL of `tabpipe stream` mid-stream, ten times, restarted each time (pytest -m faults).

At the end every input row is in the output stream and in the prediction log, and the log holds each row id
exactly once: a killed consumer's messages stay pending and are scored again (by a restart under the same
name, or claimed with XAUTOCLAIM by one under a new name), and a row the log already has is not logged again.
The kill points are drawn from a seeded generator.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest
import redis

from faults_figures import record
from helpers import TABPIPE_BIN, make_project, run_pipeline
from redis_server import redis_server
from tabpipe.history.store import HistoryStore
from tabpipe.sources.sample import generate

pytestmark = pytest.mark.faults
KILLS = 10
ROWS = 80_000   # enough that the tenth kill still falls mid-stream on an idle machine


def _consumer(config, env, name: str | None) -> subprocess.Popen:
    args = [str(TABPIPE_BIN), "stream", "--config", str(config), "--batch-size", "50", "--block-ms", "200",
            "--claim-idle-ms", "500"]
    return subprocess.Popen(args + (["--consumer", name] if name else []), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _results(client) -> int:
    return sum(len(json.loads(fields[b"results"])) for _, fields in client.xrange("tabpipe:scores"))


@pytest.mark.serial   # timing: run alone, after the parallel phase (make test)
def test_ten_sigkills_lose_no_row_and_log_none_twice(tmp_path):
    config = make_project(tmp_path, rows=1500, seed=2, pipeline={"validation": {"drift": {"enabled": False}},
                                                                  "monitoring": {"log_predictions": True}})
    run_pipeline(config)
    records = generate(ROWS, seed=8).drop(columns=["fault_flag"])
    records["timestamp"] = records["timestamp"].astype(str)
    records = records.astype(object).where(records.notna(), None).to_dict("records")
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        pipe = client.pipeline(transaction=False)
        position = 0
        while position < ROWS:             # one row per message, then ten rows per message, alternating
            if (position // 1000) % 2 == 0:
                pipe.xadd("tabpipe:rows", {k: "" if v is None else str(v) for k, v in records[position].items()})
                position += 1
            else:
                pipe.xadd("tabpipe:rows", {"rows": json.dumps(records[position:position + 10])})
                position += 10
        pipe.execute()
        env = {**os.environ, "TABPIPE_REDIS_URL": url, "TABPIPE_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite"}
        rng = random.Random(11)
        kills, ahead = [], []
        for kill in range(KILLS):
            before = client.xlen("tabpipe:scores")
            proc = _consumer(config, env, "steady" if kill % 2 else None)   # same name: own pending; new: claimed
            deadline = time.monotonic() + 120
            while client.xlen("tabpipe:scores") == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            assert proc.poll() is None, proc.stderr.read()
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc.stderr.close()
            kills.append((client.xlen("tabpipe:scores"), client.xinfo_groups("tabpipe:rows")[0]["pending"]))
            with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:   # logged, not acknowledged: redelivered
                ahead.append(store.count_predictions() - _results(client))
        assert kills[-1][0] < client.xlen("tabpipe:rows"), "every kill must fall mid-stream"
        assert sum(pending > 0 for _, pending in kills) >= KILLS // 2, f"kills must catch batches in flight: {kills}"
        final = subprocess.run([str(TABPIPE_BIN), "stream", "--config", str(config), "--block-ms", "200",
                                "--claim-idle-ms", "500", "--until-idle"], env=env, capture_output=True, text=True,
                               timeout=600)
        assert final.returncode == 0, final.stderr
        seen: dict[str, int] = {}
        for _, fields in client.xrange("tabpipe:scores"):
            message = fields[b"message"].decode()
            for result in json.loads(fields[b"results"]):
                seen[f"{message}:{result['index']}"] = seen.get(f"{message}:{result['index']}", 0) + 1
        group = client.xinfo_groups("tabpipe:rows")[0]
        assert group["pending"] == 0 and client.xlen("tabpipe:dead") == 0
        expected = {f"{mid.decode()}:{i}" for mid, fields in client.xrange("tabpipe:rows")
                    for i in range(len(json.loads(fields[b"rows"])) if b"rows" in fields else 1)}
    assert len(expected) == ROWS and set(seen) == expected   # every input row has its result (some maybe twice)
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        log = store.predictions(with_inputs=False)
    counts = log["row_id"].value_counts()
    assert set(counts.index) == {r["measurement_id"] for r in records}   # every row logged...
    assert counts.max() == 1 and len(log) == ROWS                       # ...exactly once
    record("stream_sigkill", kills=KILLS, rows=ROWS, pending_after_each_kill=[p for _, p in kills],
           output_entries_after_each_kill=[n for n, _ in kills],
           rows_logged_not_acknowledged_after_each_kill=ahead, results_written_twice=sum(seen.values()) - ROWS,
           final_run=final.stdout.strip().splitlines()[-1])

"""`tabpipe stream` against a real redis-server: rows in, the scores `tabpipe predict` gives out, dead letters for
what cannot be scored (with row and field), the prediction log under each row's id, SIGTERM drains."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import redis

from helpers import TABPIPE_BIN, make_project, run_pipeline
from redis_server import redis_server
from tabpipe.history.store import HistoryStore
from tabpipe.sources.sample import generate

FAST = ["--block-ms", "200", "--claim-idle-ms", "500"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    config = make_project(root, rows=1500, seed=2, pipeline={"validation": {"drift": {"enabled": False}},
                                                              "monitoring": {"log_predictions": True}})
    run_pipeline(config)
    return SimpleNamespace(config=config, root=root)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
def env(redis_url, tmp_path):
    """The consumer's environment: the Redis URL and a fresh history store; an empty Redis database."""
    redis.Redis.from_url(redis_url).flushdb()
    return {**os.environ, "TABPIPE_REDIS_URL": redis_url, "TABPIPE_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite",
            "COLUMNS": "300"}


def flat_fields(row: dict) -> dict:
    """One row as a flat message: every column a field, its value as text (missing: empty)."""
    return {k: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for k, v in row.items()}


def json_row(row: dict) -> dict:
    return {k: None if isinstance(v, float) and np.isnan(v) else (str(v) if isinstance(v, pd.Timestamp) else v)
            for k, v in row.items()}


def run_stream(config, env, *args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([str(TABPIPE_BIN), "stream", "--config", str(config), *FAST, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def outputs(client, stream="tabpipe:scores") -> dict[str, list[dict]]:
    """{input message id: its results} of the output stream."""
    got: dict[str, list[dict]] = {}
    for _, fields in client.xrange(stream):
        got.setdefault(fields[b"message"].decode(), []).extend(json.loads(fields[b"results"]))
    return got


def test_rows_in_scores_out_as_predict_scores_them_and_dead_letters_name_row_and_field(trained, env, tmp_path):
    client = redis.Redis.from_url(env["TABPIPE_REDIS_URL"])
    rows = generate(300, seed=5).drop(columns=["fault_flag"])
    records = rows.to_dict("records")
    ids: dict[str, str] = {}                    # measurement_id -> message id
    where: dict[str, tuple[str, int]] = {}      # measurement_id -> (message id, row index in the message)
    for record in records[:100]:                # one row per message, flat text fields
        ids[record["measurement_id"]] = client.xadd("tabpipe:rows", flat_fields(record)).decode()
        where[record["measurement_id"]] = (ids[record["measurement_id"]], 0)
    for start in range(100, 300, 50):           # several rows per message, JSON
        chunk = [json_row(r) for r in records[start:start + 50]]
        if start == 150:
            chunk[7]["latency_ms"] = "slow"     # unreadable: this row alone is refused
        if start == 200:
            del chunk[3]["region"]              # a missing field: this row alone is refused
        mid = client.xadd("tabpipe:rows", {"rows": json.dumps(chunk)}).decode()
        ids.update({r["measurement_id"]: mid for r in chunk})
        where.update({r["measurement_id"]: (mid, i) for i, r in enumerate(chunk)})
    bad_json = client.xadd("tabpipe:rows", {"rows": '[{"latency_ms": 3'}).decode()
    not_utf8 = client.xadd("tabpipe:rows", {"row": b"\xff\xfe{}"}).decode()
    one = client.xadd("tabpipe:rows", {"row": json.dumps(json_row(records[0]) | {"measurement_id": "single"})}).decode()

    proc = run_stream(trained.config, env, "--until-idle")
    assert proc.returncode == 0, proc.stderr
    assert "299 rows scored, 4 dead letters" in proc.stdout

    # the scores are those of `tabpipe predict` on the same rows
    good = rows.drop(index=[157, 203])
    csv = tmp_path / "rows.csv"
    good.to_csv(csv, index=False)
    predicted = subprocess.run([str(TABPIPE_BIN), "predict", "--config", str(trained.config), "--input", str(csv),
                                "--output", str(tmp_path / "scored.csv")], capture_output=True,
                               env={**env, "TABPIPE_HISTORY_URL": f"sqlite:///{tmp_path}/predict.sqlite"}, text=True,
                               timeout=180)
    assert predicted.returncode == 0, predicted.stderr
    expected = pd.read_csv(tmp_path / "scored.csv")
    got = outputs(client)
    by_origin = {(mid, r["index"]): r for mid, results in got.items() for r in results}
    assert len(by_origin) == 299                # 298 + the single-row message
    for _, row in expected.iterrows():
        result = by_origin[where[row["measurement_id"]]]
        assert result["probability"] == pytest.approx(row["probability"], abs=1e-9)
        assert str(result["prediction"]) == str(row["prediction"])
    assert got[one][0]["probability"] == pytest.approx(expected["probability"].iloc[0], abs=1e-9)

    dead = {(f[b"message"].decode(), f[b"row"].decode()): f[b"reason"].decode() for _, f in client.xrange("tabpipe:dead")}
    assert set(dead) == {(ids[records[157]["measurement_id"]], "7"), (ids[records[203]["measurement_id"]], "3"),
                         (bad_json, ""), (not_utf8, "")}
    assert "latency_ms" in dead[(ids[records[157]["measurement_id"]], "7")]
    assert "row 7" in dead[(ids[records[157]["measurement_id"]], "7")]
    assert "region" in dead[(ids[records[203]["measurement_id"]], "3")]
    assert "not JSON" in dead[(bad_json, "")]
    assert "not UTF-8" in dead[(not_utf8, "")]
    # the refused rows' neighbours in the same message were scored
    assert len(got[ids[records[157]["measurement_id"]]]) == 49

    # every scored row is logged once, under its schema id (measurement_id)
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        log = store.predictions()
    assert sorted(log["row_id"]) == sorted([*good["measurement_id"], "single"])
    np.testing.assert_allclose(log.set_index("row_id").loc[expected["measurement_id"], "probability"].to_numpy(),
                               expected["probability"].to_numpy(), atol=1e-9)

    status = subprocess.run([str(TABPIPE_BIN), "stream", "--config", str(trained.config), "--status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert (doc["lag"], doc["pending"], doc["stream_lengths"]) == (0, 0, {"input": 107, "output": 105,
                                                                           "dead_letter": 4})
    assert env["TABPIPE_REDIS_URL"] in doc["redis"]

    # a second pass over the same rows (redelivered as new messages) logs nothing twice
    for record in records[:20]:
        client.xadd("tabpipe:rows", flat_fields(record))
    again = run_stream(trained.config, env, "--until-idle")
    assert again.returncode == 0, again.stderr
    assert "20 rows scored" in again.stdout and "0 rows logged (20 already logged)" in again.stdout
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        assert store.count_predictions() == 299



def test_sigterm_finishes_the_current_batch_acknowledges_it_and_exits_0(trained, env):
    client = redis.Redis.from_url(env["TABPIPE_REDIS_URL"])
    records = generate(4000, seed=6).drop(columns=["fault_flag"]).to_dict("records")
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.xadd("tabpipe:rows", flat_fields(record))
    pipe.execute()
    proc = subprocess.Popen([str(TABPIPE_BIN), "stream", "--config", str(trained.config), *FAST, "--batch-size", "20"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while client.xlen("tabpipe:scores") < 100 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    scored = client.xlen("tabpipe:scores")
    assert 100 <= scored < len(records), "the signal must arrive mid-stream"
    group = client.xinfo_groups("tabpipe:rows")[0]
    assert group["pending"] == 0                           # what was read was finished and acknowledged
    assert group["entries-read"] == scored                 # ...and nothing read was left without its result
    assert f"{scored} messages, {scored} rows scored" in stdout
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        assert store.count_predictions() == scored

    rest = run_stream(trained.config, env, "--until-idle")   # another run takes up the rest, none twice
    assert rest.returncode == 0, rest.stderr
    got = outputs(client)
    assert len(got) == len(records) and all(len(results) == 1 for results in got.values())
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        log = store.predictions(with_inputs=False)
    assert sorted(log["row_id"]) == sorted(r["measurement_id"] for r in records)


def test_the_redis_url_comes_from_the_environment_and_its_password_is_never_printed(trained, env):
    unset = {k: v for k, v in env.items() if k != "TABPIPE_REDIS_URL"}
    proc = run_stream(trained.config, unset, "--until-idle", timeout=60)
    assert proc.returncode == 2
    assert "stream.redis_url_env" in proc.stderr and "TABPIPE_REDIS_URL is not set" in proc.stderr
    with socket.socket() as s:                   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wrong = {**env, "TABPIPE_REDIS_URL": f"redis://:s3cret-pass@127.0.0.1:{port}/0"}
    for args in (["--until-idle"], ["--status"]):
        proc = run_stream(trained.config, wrong, *args, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert f"redis://:***@127.0.0.1:{port}/0" in proc.stderr and "PING failed" in proc.stderr
        assert "s3cret" not in proc.stdout + proc.stderr


class _DiesBeforeExec:
    """A Redis client whose MULTI/EXEC never reaches the server: a consumer dying between its log write and XACK."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def pipeline(self, transaction=True):
        pipe = self._client.pipeline(transaction=transaction)

        def execute(*_args, **_kwargs):
            pipe.reset()
            raise redis.ConnectionError("the consumer died before EXEC")

        pipe.execute = execute
        return pipe


def test_a_batch_logged_but_not_acknowledged_is_claimed_by_another_consumer_and_not_logged_again(trained, env):
    from dataclasses import replace

    from helpers import registry_of
    from tabpipe.config import load_settings
    from tabpipe.history.open import row_format
    from tabpipe.scoring.redis_stream import StreamConsumer, StreamError, Streams

    client = redis.Redis.from_url(env["TABPIPE_REDIS_URL"])
    records = generate(30, seed=9).drop(columns=["fault_flag"]).to_dict("records")
    for record in records:
        client.xadd("tabpipe:rows", flat_fields(record))
    model, meta = registry_of(trained.config).load_model()
    fmt = row_format(load_settings(trained.config, check_candidates=False), env)
    streams = Streams(input="tabpipe:rows", output="tabpipe:scores", dead_letter="tabpipe:dead", group="tabpipe",
                      consumer="dies", batch_size=100, block_ms=100, claim_idle_ms=50)
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        first = StreamConsumer(_DiesBeforeExec(client), streams, model, meta["version"], store, fmt)
        with pytest.raises(StreamError, match="died before EXEC"):
            first.run(lambda: False, until_idle=True)
        assert store.count_predictions() == 30                     # logged...
        assert client.xlen("tabpipe:scores") == 0                  # ...no result written, nothing acknowledged
        assert client.xpending("tabpipe:rows", "tabpipe")["pending"] == 30
        time.sleep(0.1)                                             # idle longer than claim_idle_ms
        heir = StreamConsumer(client, replace(streams, consumer="heir"), model, meta["version"], store, fmt)
        counters = heir.run(lambda: False, until_idle=True)
        assert (counters.claimed, counters.rows_scored, counters.rows_logged, counters.rows_already_logged) == \
            (30, 30, 0, 30)
        assert store.count_predictions() == 30
        assert sorted(store.predictions()["row_id"]) == sorted(r["measurement_id"] for r in records)
    assert sum(len(results) for results in outputs(client).values()) == 30
    assert client.xpending("tabpipe:rows", "tabpipe")["pending"] == 0


def test_a_message_every_consumer_dies_on_is_dead_lettered_after_max_deliveries(trained, env):
    from helpers import registry_of
    from tabpipe.config import load_settings
    from tabpipe.history.open import row_format
    from tabpipe.scoring.redis_stream import StreamConsumer, StreamError, Streams

    client = redis.Redis.from_url(env["TABPIPE_REDIS_URL"])
    record = generate(1, seed=10).drop(columns=["fault_flag"]).to_dict("records")[0]
    mid = client.xadd("tabpipe:rows", flat_fields(record)).decode()
    model, meta = registry_of(trained.config).load_model()
    fmt = row_format(load_settings(trained.config, check_candidates=False), env)
    with HistoryStore.open(env["TABPIPE_HISTORY_URL"]) as store:
        for attempt in range(3):                     # delivered three times; each consumer dies before EXEC
            streams = Streams(input="tabpipe:rows", output="tabpipe:scores", dead_letter="tabpipe:dead",
                              group="tabpipe", consumer=f"dies-{attempt}", batch_size=10, block_ms=100,
                              claim_idle_ms=50, max_deliveries=3)
            with pytest.raises(StreamError):
                StreamConsumer(_DiesBeforeExec(client), streams, model, meta["version"], store, fmt).run(
                    lambda: False, until_idle=True)
            time.sleep(0.1)
        streams = Streams(input="tabpipe:rows", output="tabpipe:scores", dead_letter="tabpipe:dead", group="tabpipe",
                          consumer="last", batch_size=10, block_ms=100, claim_idle_ms=50, max_deliveries=3)
        counters = StreamConsumer(client, streams, model, meta["version"], store, fmt).run(lambda: False,
                                                                                          until_idle=True)
    assert (counters.given_up, counters.rows_scored) == (1, 0)
    ((_, dead),) = client.xrange("tabpipe:dead")
    assert dead[b"message"].decode() == mid and dead[b"reason"].startswith(b"delivered 3 times")
    assert json.loads(dead[b"payload"])["measurement_id"] == record["measurement_id"]
    assert client.xpending("tabpipe:rows", "tabpipe")["pending"] == 0 and client.xlen("tabpipe:scores") == 0

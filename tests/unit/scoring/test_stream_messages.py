"""Redis Stream entries as rows: the three message shapes, and a reason naming message, row and field for each
message or row that cannot be scored (never its neighbours)."""
from __future__ import annotations

import json

import numpy as np

from tabpipe.scoring.redis_stream import redacted_url, status_line
from tabpipe.scoring.stream_messages import decode_batch, refused_rows, result_entries

FEATURES = ["latency_ms", "region"]


def test_the_three_shapes_give_rows_in_order_with_their_origin():
    decoded = decode_batch([
        (b"1-0", {b"latency_ms": b"12.5", b"region": b"east", b"note": b""}),
        (b"2-0", {b"row": json.dumps({"latency_ms": 3, "region": None}).encode()}),
        (b"3-0", {b"rows": json.dumps([{"latency_ms": 1, "region": "west"}, {"latency_ms": 2, "region": "north"}])}),
    ], FEATURES)
    assert decoded.records == [{"latency_ms": "12.5", "region": "east", "note": None},
                               {"latency_ms": 3, "region": None},
                               {"latency_ms": 1, "region": "west"}, {"latency_ms": 2, "region": "north"}]
    assert decoded.origins == [("1-0", 0), ("2-0", 0), ("3-0", 0), ("3-0", 1)]
    assert decoded.message_ids == ["1-0", "2-0", "3-0"] and decoded.refusals == []


def test_each_unreadable_message_is_refused_alone_with_its_reason():
    decoded = decode_batch([
        (b"1-0", {b"rows": b'[{"latency_ms": 1'}),
        (b"2-0", {b"row": b"\xff{}"}),
        (b"3-0", {b"latency_ms": b"\xfe", b"region": b"east"}),
        (b"4-0", {b"rows": b"{}"}),
        (b"5-0", {b"rows": b"[]"}),
        (b"6-0", {b"latency_ms": b"7", b"region": b"east"}),
        (b"7-0", None),                                   # deleted while pending: acknowledged, nothing else
    ], FEATURES)
    reasons = {r.message_id: (r.row, r.reason) for r in decoded.refusals}
    assert reasons["1-0"][0] is None and "field 'rows' is not JSON" in reasons["1-0"][1]
    assert "field 'row' is not UTF-8" in reasons["2-0"][1]
    assert "field 'latency_ms' is not UTF-8" in reasons["3-0"][1]
    assert "JSON array" in reasons["4-0"][1] and "empty" in reasons["5-0"][1]
    assert set(reasons) == {"1-0", "2-0", "3-0", "4-0", "5-0"}
    assert decoded.origins == [("6-0", 0)]
    assert decoded.message_ids == [f"{i}-0" for i in range(1, 8)]
    assert json.loads(decoded.refusals[0].payload) == {"rows": '[{"latency_ms": 1'}   # kept for a replay


def test_a_row_lacking_a_feature_or_not_an_object_is_refused_and_its_neighbours_kept():
    decoded = decode_batch([(b"9-1", {b"rows": json.dumps([{"latency_ms": 1, "region": "east"}, {"latency_ms": 2},
                                                           [1, 2], {"latency_ms": 4, "region": "west"}])})], FEATURES)
    assert decoded.origins == [("9-1", 0), ("9-1", 3)]
    (missing, not_object) = decoded.refusals
    assert (missing.row, not_object.row) == (1, 2)
    assert missing.reason.startswith("row 1: field region missing") and "not a JSON object" in not_object.reason
    assert missing.fields() == {"message": "9-1", "row": "1", "reason": missing.reason,
                                "payload": json.dumps({"latency_ms": 2})}


def test_rows_the_schema_check_refuses_become_refusals_and_the_rest_results():
    decoded = decode_batch([(b"1-0", {b"rows": json.dumps([{"latency_ms": 1, "region": "e"},
                                                           {"latency_ms": "slow", "region": "e"}])}),
                            (b"2-0", {b"latency_ms": b"3", b"region": b"e"})], FEATURES)
    errors = [None, "latency_ms (type): 'slow' is not a number", None]
    (refusal,) = refused_rows(decoded, errors)
    assert (refusal.message_id, refusal.row, refusal.reason) == ("1-0", 1, "row 1: latency_ms (type): 'slow' is not a number")
    entries = result_entries(decoded, "v7", np.array([0.25, np.nan, 0.75]), np.array([0, 0, 1]),
                             [None, None, "region (category): unlisted"])
    assert [(e["message"], e["model_version"], json.loads(e["results"])) for e in entries] == [
        ("1-0", "v7", [{"index": 0, "prediction": 0, "probability": 0.25, "warnings": None}]),
        ("2-0", "v7", [{"index": 0, "prediction": 1, "probability": 0.75, "warnings": "region (category): unlisted"}])]


def test_the_redis_url_is_shown_without_its_password():
    assert redacted_url("redis://:s3cret@cache:6380/2") == "redis://:***@cache:6380/2"
    assert redacted_url("rediss://app:s3cret@cache/0") == "rediss://app:***@cache/0"
    assert redacted_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_the_status_line_names_counts_lag_and_pending():
    line = status_line({"messages": 3, "rows_scored": 5, "dead_letters": 1, "rows_logged": 4,
                        "rows_already_logged": 1, "claimed": 2, "group": "g", "lag": 7, "pending": 0})
    assert line == ("stream: 3 messages, 5 rows scored, 1 dead letters, 4 rows logged (1 already logged), "
                    "2 claimed; group g: lag 7, pending 0")


def test_a_batch_of_flat_messages_read_in_one_pass_is_what_reading_each_gives():
    import pandas as pd

    from tabpipe.scoring.stream_messages import _flat_batch

    messages = [(f"{i}-0".encode(), {b"latency_ms": str(i / 7).encode(), b"region": "éast"[: i % 4].encode(),
                                     b"note": b""}) for i in range(1, 50)]
    fast = decode_batch(messages, FEATURES)
    assert fast.frame is not None
    slow = decode_batch(messages[:1], FEATURES)                      # one message: the same, one at a time
    assert slow.records == fast.records[:1]
    one_by_one = [decode_batch([m], FEATURES) for m in messages]
    assert fast.records == [d.records[0] for d in one_by_one] and fast.refusals == []
    assert fast.origins == [d.origins[0] for d in one_by_one] and fast.message_ids == [f"{i}-0" for i in range(1, 50)]
    pd.testing.assert_frame_equal(fast.frame, pd.DataFrame.from_records(fast.records))
    for odd in ({b"latency_ms": b"\xfe", b"region": b"east", b"note": b""},      # not UTF-8
                {b"latency_ms": b"1\x002", b"region": b"east", b"note": b""},    # a NUL inside a value
                {b"region": b"east", b"latency_ms": b"1", b"note": b""},         # other field order
                {b"latency_ms": b"1", b"note": b""},                             # a feature missing
                {b"rows": b"[]"}, None):
        assert _flat_batch(messages[:3] + [(b"99-0", odd)], FEATURES) is None    # read message by message
    assert decode_batch(messages[:3] + [(b"99-0", {b"latency_ms": b"1\x002", b"region": b"e"})],
                        FEATURES).records[3] == {"latency_ms": "1\x002", "region": "e"}


def test_result_text_is_json_dumps_of_the_results():
    rng = np.random.default_rng(3)
    for labels in (np.array([0, 1]), np.array(["no", "yes"]), np.array([False, True])):
        decoded = decode_batch([(f"{i}-0".encode(), {b"rows": json.dumps([{"latency_ms": j, "region": "e"}
                                                                          for j in range(1 + i % 3)]).encode()})
                                for i in range(40)], FEATURES)
        n = len(decoded.origins)
        proba = rng.random(n)
        proba[::7] = np.nan
        proba[1] = 1e-300
        predicted = np.where(proba >= 0.5, labels[1], labels[0])
        warnings = [None if i % 3 else f'x "{i}" é\n' for i in range(n)]
        entries = result_entries(decoded, "v1", proba, predicted, warnings)
        expected: dict[str, list] = {}
        for i, (message_id, index) in enumerate(decoded.origins):
            if not np.isnan(proba[i]):
                expected.setdefault(message_id, []).append(
                    {"index": index, "prediction": predicted[i].item(), "probability": float(proba[i]),
                     "warnings": warnings[i]})
        assert [(e["message"], e["results"]) for e in entries] == [(m, json.dumps(r)) for m, r in expected.items()]

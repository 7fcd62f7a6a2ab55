"""``tabpipe stream``: score a Redis Stream through a consumer group, a micro-batch at a time, at least once.

One batch: read up to ``batch_size`` messages (XREADGROUP), turn them into rows (``stream_messages``), score
the rows with the model's batch scorer (``batch.score_rows``, what ``tabpipe predict`` and the service use),
write the scored rows to the prediction log (``predlog.log_columns_once``: a row id already logged is skipped), then
in one Lua script (``WRITE_BATCH``, run atomically by Redis: EVALSHA) add the results to the output stream, the
refusals to the dead-letter stream and acknowledge (XACK) every message of the batch; a write that fails stops
the script before its XACK. A consumer that dies before the script runs leaves its
messages pending; they are read again by it (its own pending entries, at start) or claimed (XAUTOCLAIM)
by any consumer of the group once idle for ``claim_idle_ms``, so no message is lost and the log counts a
row once. Redis or the history store failing stops the consumer (nothing unwritten is acknowledged).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from tabpipe.errors import TabpipeError
from tabpipe.history.logged_ids import LoggedIds
from tabpipe.history.predlog import RowFormat, log_columns_once, log_once
from tabpipe.history.store import HistoryStore
from tabpipe.model import TabularModel
from tabpipe.scoring.batch import score_rows
from tabpipe.scoring.stream_messages import Decoded, decode_batch, given_up, refused_rows, result_entries

# How far the consumer's clock (the log's logged_at) may lag Redis's (the message ids' times) without a
# redelivered row being logged twice: the log is searched for a batch's row ids from its oldest message's time
# minus this (HistoryStore.logged_row_ids ``since``), so the search reads only the newest log files.
CLOCK_SKEW = timedelta(minutes=10)

# One batch's writes, atomic (a script runs alone on the server) and one command for the whole batch, not one
# XADD per message in MULTI/EXEC (which costs the consumer more than scoring). KEYS: output, dead letters, input.
# ARGV: group, model version, the output entries' message ids and their results (two texts, one line each:
# JSON text holds no raw line break), the message ids to acknowledge (one text, a line each; XACK in slices,
# Lua's unpack is limited to a few thousand values), then (message, row, reason, payload) per dead letter.
# Field order as ``result_entries`` / ``Refusal.fields`` give them.
WRITE_BATCH = """
local function lines(text)
  local out = {}
  for line in string.gmatch(text, '[^\\n]+') do out[#out + 1] = line end
  return out
end
local ids, results, acked = lines(ARGV[3]), lines(ARGV[4]), lines(ARGV[5])
if #ids ~= #results then return redis.error_reply('WRITE_BATCH: ' .. #ids .. ' ids, ' .. #results .. ' results') end
for i = 1, #ids do
  redis.call('XADD', KEYS[1], '*', 'message', ids[i], 'model_version', ARGV[2], 'results', results[i])
end
for at = 6, #ARGV, 4 do
  redis.call('XADD', KEYS[2], '*', 'message', ARGV[at], 'row', ARGV[at + 1], 'reason', ARGV[at + 2],
             'payload', ARGV[at + 3])
end
local count = 0
for at = 1, #acked, 1000 do
  count = count + redis.call('XACK', KEYS[3], ARGV[1], unpack(acked, at, math.min(at + 999, #acked)))
end
return count
"""


class StreamError(TabpipeError):
    """Redis cannot be reached or refused a command (the message names the redacted URL)."""


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what may be printed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class Counters:
    """What one consumer process did: messages acknowledged, rows scored / dead-lettered / logged, ..."""
    batches: int = 0
    messages: int = 0             # acknowledged
    rows_scored: int = 0
    dead_letters: int = 0         # refused messages and rows
    rows_logged: int = 0
    rows_already_logged: int = 0  # redelivered rows the log had: skipped
    claimed: int = 0              # messages taken over from idle consumers (XAUTOCLAIM)
    given_up: int = 0             # messages dead-lettered after max_deliveries deliveries


@dataclass(frozen=True)
class Streams:
    """The streams and group one consumer works on (``stream:`` of pipeline.yaml, flags applied)."""
    input: str
    output: str
    dead_letter: str
    group: str
    consumer: str
    batch_size: int
    block_ms: int
    claim_idle_ms: int
    max_deliveries: int = 10


class StreamConsumer:
    """One consumer of the group: ``run`` until ``stopping()`` (SIGTERM) or, with ``until_idle``, nothing is left."""

    def __init__(self, client, streams: Streams, model: TabularModel, version: str,
                 store: HistoryStore | None, fmt: RowFormat | None, *, url: str = ""):
        self.client, self.streams, self.model, self.version = client, streams, model, version
        self.store, self.fmt, self.url = store, fmt, redacted_url(url)
        self.counters = Counters()
        self._last_claim = 0.0
        self._write_batch = None
        self.logged_ids = LoggedIds(store) if store is not None else None   # the log's row ids, read once

    def _redis(self, what: str, call: Callable, *args, **kwargs):
        import redis

        try:
            return call(*args, **kwargs)
        except redis.RedisError as exc:
            raise StreamError(f"redis {self.url}: {what} failed: {exc}") from exc

    def ping(self) -> None:
        """StreamError unless Redis answers."""
        self._redis("PING", self.client.ping)

    def ensure_group(self) -> None:
        """Create the consumer group (and the input stream) when missing; the group starts at the stream's start."""
        import redis

        try:
            self.client.xgroup_create(self.streams.input, self.streams.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StreamError(f"redis {self.url}: creating group {self.streams.group!r} failed: {exc}") from exc
        except redis.RedisError as exc:
            raise StreamError(f"redis {self.url}: creating group {self.streams.group!r} failed: {exc}") from exc

    # ---- reading

    def _read(self, start: str, block: int | None) -> list:
        s = self.streams
        answer = self._redis("XREADGROUP", self.client.xreadgroup, s.group, s.consumer, {s.input: start},
                             count=s.batch_size, block=block)
        return answer[0][1] if answer else []

    def _claim(self) -> list:
        """Messages pending longer than ``claim_idle_ms`` on any consumer, now ours (one batch at most); those
        delivered ``max_deliveries`` times already are dead-lettered (and acknowledged) instead."""
        s = self.streams
        self._last_claim = time.monotonic()
        stale = self._redis("XPENDING", self.client.xpending_range, s.input, s.group, "-", "+", s.batch_size,
                            idle=s.claim_idle_ms)
        worn = {_plain(e["message_id"]): e["times_delivered"] for e in stale if e["times_delivered"] >= s.max_deliveries}
        if worn:
            taken = self._redis("XCLAIM", self.client.xclaim, s.input, s.group, s.consumer, s.claim_idle_ms,
                                list(worn))
            self._give_up([given_up(mid, fields, worn[_plain(mid)]) for mid, fields in taken])
        answer = self._redis("XAUTOCLAIM", self.client.xautoclaim, s.input, s.group, s.consumer,
                             min_idle_time=s.claim_idle_ms, start_id="0-0", count=s.batch_size)
        messages = answer[1] if answer else []
        self.counters.claimed += len(messages)
        return messages

    def _give_up(self, refusals: list) -> None:
        """Dead-letter and acknowledge whole messages, atomically."""
        if not refusals:
            return
        self._write("dead-lettering worn-out messages", [], "", refusals, [r.message_id for r in refusals])
        self.counters.given_up += len(refusals)
        self.counters.dead_letters += len(refusals)

    # ---- one batch

    def process(self, messages: list) -> None:
        """Score, log, write out and acknowledge one batch of ``(id, fields)`` messages."""
        if not messages:
            return
        decoded = decode_batch(messages, self.model.schema.features)
        refusals = list(decoded.refusals)
        entries: list[dict] = []
        if decoded.records:
            frame = decoded.frame if decoded.frame is not None else pd.DataFrame.from_records(decoded.records)
            scored = score_rows(self.model, frame)
            refusals += refused_rows(decoded, scored.errors)
            self._log(decoded, frame, scored)
            entries = result_entries(decoded, self.version, scored.proba, scored.labels, scored.warnings)
            self.counters.rows_scored += scored.scored
        self._write("writing the results and XACK", entries, self.version, refusals, decoded.message_ids)
        self.counters.batches += 1
        self.counters.messages += len(decoded.message_ids)
        self.counters.dead_letters += len(refusals)

    def _write(self, what: str, entries: list[dict], version: str, refusals: list, acknowledged: list[str]) -> None:
        """The output ``entries`` (``result_entries``), the dead letters and the XACK of ``acknowledged``, in one
        ``WRITE_BATCH`` script (EVALSHA; loaded when the server lacks it)."""
        s = self.streams
        if self._write_batch is None:
            self._write_batch = self.client.register_script(WRITE_BATCH)
        args: list[str] = [s.group, version, "\n".join(e["message"] for e in entries),
                           "\n".join(e["results"] for e in entries), "\n".join(acknowledged)]
        for refusal in refusals:
            fields = refusal.fields()
            args += (fields["message"], fields["row"], fields["reason"], fields["payload"])
        pipe = self.client.pipeline(transaction=False)   # one round trip with the script check (SCRIPT EXISTS)
        self._write_batch(keys=[s.output, s.dead_letter, s.input], args=args, client=pipe)
        self._redis(what, pipe.execute)

    def _log(self, decoded: Decoded, frame: pd.DataFrame, scored) -> None:
        """The scored rows into the prediction log, each under its row id: the schema's id column, else
        ``<message id>:<row index>``; a row id the log already has is skipped. The Parquet log is written
        column by column (``RowFormat.column_batch``), the SQL log row by row."""
        if self.store is None or self.fmt is None or self.fmt.sample_rate == 0:
            return
        first = decoded.first_added()   # no earlier write of these rows can predate their messages
        since = first - CLOCK_SKEW if first else None
        if self.store.log_format == "parquet":
            message_ids, indexes = zip(*decoded.origins)
            batch = self.fmt.column_batch(self.version, frame, decoded.records, scored.proba, scored.labels,
                                          scored.warnings, message_ids, indexes)
            written, skipped = log_columns_once(self.store, batch, since=since, known=self.logged_ids)
        else:
            rows = self.fmt.rows("stream", self.version, decoded.records, scored.proba, scored.labels,
                                 [[w] if w else [] for w in scored.warnings])
            for row in rows:
                message_id, index = decoded.origins[row["row_index"]]
                row["request_id"], row["row_index"] = message_id, index
                row["row_id"] = row["row_id"] or f"{message_id}:{index}"
            written, skipped = log_once(self.store, rows, since=since, known=self.logged_ids)
        self.counters.rows_logged += written
        self.counters.rows_already_logged += skipped

    # ---- the loop

    def run(self, stopping: Callable[[], bool], *, until_idle: bool = False,
            on_status: Callable[[dict], None] | None = None, status_interval_s: float = 30.0) -> Counters:
        """Consume until ``stopping()`` is true (checked between batches: the current batch is finished and
        acknowledged first) or, with ``until_idle``, until nothing is new, pending or claimable."""
        self.ensure_group()
        next_status = time.monotonic() + status_interval_s
        while not stopping():   # first this consumer's own pending messages (a restart under the same name)
            own = self._read("0", None)
            if not own:
                break
            self.process(own)
        claim_every = self.streams.claim_idle_ms / 2000
        while not stopping():
            messages = []
            if time.monotonic() - self._last_claim >= claim_every:
                messages = self._claim()
            if not messages:
                messages = self._read(">", self.streams.block_ms)
            self.process(messages)
            if on_status is not None and time.monotonic() >= next_status:
                on_status(self.status())
                next_status = time.monotonic() + status_interval_s
            if until_idle and not messages:   # nothing new (the read waited block_ms): done once none is pending
                if not self.group_info().get("pending"):
                    break
                time.sleep(min(0.2, self.streams.block_ms / 1000))   # others' stale messages: claim them when idle
                claim_every = 0.0
        return self.counters

    # ---- status

    def group_info(self) -> dict:
        """The group's entry of XINFO GROUPS: ``lag`` (entries not yet delivered), ``pending``, ``consumers``..."""
        groups = self._redis("XINFO GROUPS", self.client.xinfo_groups, self.streams.input)
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.streams.group:
                return {_key(k): _plain(v) for k, v in group.items()}
        return {}

    def status(self) -> dict:
        """Counters of this process and the group's lag and pending count, the streams' lengths."""
        s = self.streams
        lengths = {name: self._redis("XLEN", self.client.xlen, stream)
                   for name, stream in (("input", s.input), ("output", s.output), ("dead_letter", s.dead_letter))}
        group = self.group_info()
        return {"redis": self.url, "group": s.group, "consumer": s.consumer, "model_version": self.version,
                "lag": group.get("lag"), "pending": group.get("pending"), "consumers": group.get("consumers"),
                "stream_lengths": lengths, **asdict(self.counters)}


def _key(key) -> str:
    return (key.decode() if isinstance(key, bytes) else str(key)).replace("-", "_")


def _plain(value):
    return value.decode() if isinstance(value, bytes) else value


def status_line(status: Mapping) -> str:
    """One line of ``status``: what ``tabpipe stream`` prints every ``status_interval_s`` and at exit."""
    return (f"stream: {status['messages']} messages, {status['rows_scored']} rows scored, "
            f"{status['dead_letters']} dead letters, {status['rows_logged']} rows logged "
            f"({status['rows_already_logged']} already logged), {status['claimed']} claimed; "
            f"group {status['group']}: lag {status['lag']}, pending {status['pending']}")

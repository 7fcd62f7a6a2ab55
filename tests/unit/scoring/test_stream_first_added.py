"""A batch's oldest message time (``Decoded.first_added``): what bounds the prediction log's search for rows a
redelivered batch already logged (``predlog.log_once(since=...)``)."""
from __future__ import annotations

from datetime import datetime, timezone

from tabpipe.scoring.stream_messages import Decoded


def test_first_added_is_the_oldest_message_ids_milliseconds():
    decoded = Decoded(message_ids=["1765090000123-7", "1765089999001-0", "1765090001000-2"])
    assert decoded.first_added() == datetime.fromtimestamp(1765089999.001, tz=timezone.utc)


def test_an_empty_batch_has_no_first_time():
    assert Decoded().first_added() is None

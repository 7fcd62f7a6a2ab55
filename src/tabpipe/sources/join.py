"""Joined sources: a base table plus tables joined onto it by key, point in time where declared.

A ``type: join`` source (:class:`~tabpipe.sources.base.JoinSource`) reads its base (one row per
training row: the target and, for point-in-time joins, the label time) and then each joined table, in
order. A join is one of three kinds:

- plain (no ``as_of``, no ``aggregate``): the joined table is unique on the keys; each row gets the
  record with its keys (``pandas.merge``, ``validate="many_to_one"``);
- as of (``as_of``): each row gets the latest record of its keys stamped strictly before its label time
  (at or before with ``as_of.exact_matches``), and no older than ``as_of.tolerance``
  (``pandas.merge_asof``, ``direction="backward"``);
- aggregated (``aggregate``): all records of the row's keys -- with ``as_of``, those in the same window
  before the label time -- summarised into ``<name>_count`` and ``<name>_<column>_<fn>`` columns.

Invariant, checked on every read (:func:`check_point_in_time`), not only in tests: no record a row
receives is stamped at or after that row's label time (after, with ``exact_matches``) or older than the
tolerance. A violation raises :class:`PointInTimeError` and nothing is returned.

Columns of a joined table that are already in the table built so far are prefixed ``<name>_``; the
keys are not repeated. Times are compared in UTC (times without a zone are taken as UTC).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tabpipe.errors import DataError
from tabpipe.sources.base import JoinSource, JoinSpec

log = logging.getLogger(__name__)

_ROW, _LABEL_T, _RECORD_T, _HIT = "__tabpipe_row", "__tabpipe_label_time", "__tabpipe_record_time", "__tabpipe_hit"


class PointInTimeError(DataError):
    """A joined record is later than (or as late as) the label time of the row it was joined to."""


@dataclass(frozen=True)
class SourcePart:
    """One table of a joined source as read: ``name`` is ``base`` or the join's name."""

    name: str
    config: Any                 # the leaf source config (file, sql or mongodb)
    frame: pd.DataFrame         # the rows as read, before joining or aggregating
    matched: int | None = None  # base rows that received at least one of its records (None for the base)


@dataclass(frozen=True)
class JoinedTable:
    """The joined training table and the parts it was built from."""

    frame: pd.DataFrame
    parts: tuple[SourcePart, ...]


def join_sources(cfg: JoinSource, read: Callable[[Any], pd.DataFrame]) -> JoinedTable:
    """Read ``cfg.base`` and every table of ``cfg.joins`` with ``read`` and join them in order.

    The result keeps the base's rows in the base's order (``how: inner`` joins drop the rows without a
    record). Data problems -- a key or time column missing from a table, keys of different kinds, a
    plain join on a table with repeated keys -- are DataErrors naming the config key.
    """
    base = read(cfg.base)
    base.columns = [str(c) for c in base.columns]
    frame = base.reset_index(drop=True)
    parts = [SourcePart("base", cfg.base, base)]
    for index, join in enumerate(cfg.joins):
        table = read(join.source)
        table.columns = [str(c) for c in table.columns]
        frame, matched = _join_one(frame, table, join, cfg.label_time_of(join), key=f"source.joins[{index}]",
                                   label_key="source.label_time" if join.as_of and not join.as_of.label_time
                                   else f"source.joins[{index}].as_of.label_time")
        parts.append(SourcePart(join.name, join.source, table, matched))
        log.info("join %s: %d records read; %d of %d rows got one", join.name, len(table), matched, len(frame))
    if frame.empty:
        raise DataError("the joined source has no rows left (every base row lacked a record of an 'inner' join)")
    return JoinedTable(frame.reset_index(drop=True), tuple(parts))


# --------------------------------------------------------------------------- one join


def _join_one(frame: pd.DataFrame, table: pd.DataFrame, join: JoinSpec, label: str | None, *, key: str,
              label_key: str) -> tuple[pd.DataFrame, int]:
    """``frame`` with ``join``'s columns attached, and how many of its rows got a record."""
    where = f"{key} ({join.name})"
    _require(frame, join.on, f"{key}.on", "the table built so far (base and earlier joins)")
    _require(table, join.on, f"{key}.on", f"joined table {join.name!r}")
    if join.as_of is not None:
        _require(frame, [label], label_key, "the table built so far (base and earlier joins)")
        _require(table, [join.as_of.column], f"{key}.as_of.column", f"joined table {join.name!r}")
    if join.aggregate is not None:
        _require(table, list(join.aggregate), f"{key}.aggregate", f"joined table {join.name!r}")
    left_keys, right_keys = _aligned_keys(frame[join.on], table[join.on], where)
    left = left_keys.assign(**{_ROW: frame.index.to_numpy()})     # base row numbers, increasing
    keyless = right_keys.isna().any(axis=1)
    if keyless.any():    # pandas would match a missing key with a missing key
        log.warning("%s: %d record(s) with a missing key %s are left out", where, int(keyless.sum()), join.on)
        right_keys, table = right_keys[~keyless], table[~keyless]
    right = right_keys
    if join.as_of is not None:
        left[_LABEL_T] = _times(frame[label], label_key, "the base", rows_must_have_time=True)
        right = right.assign(**{_RECORD_T: _times(table[join.as_of.column], f"{key}.as_of.column",
                                                  f"joined table {join.name!r}")})
        undated = int(right[_RECORD_T].isna().sum())
        if undated:
            log.warning("%s: %d record(s) without a time in column %r are left out (they cannot be placed "
                        "before or after a label time)", where, undated, join.as_of.column)
    if join.aggregate is not None:
        attached = _aggregated(left, right, table, join, where)
    else:
        attached = _single(left, right, table, join, frame.columns, where)
    hit = attached.pop(_HIT).fillna(False).astype(bool).to_numpy()
    out = pd.concat([frame, attached.set_axis(frame.index)], axis=1)
    if join.how == "inner":
        out = out[hit]
    return out, int(hit.sum())


def _single(left: pd.DataFrame, right: pd.DataFrame, table: pd.DataFrame, join: JoinSpec,
            existing: Sequence[str], where: str) -> pd.DataFrame:
    """The one record per row (plain or as-of), as columns in ``left``'s row order (index 0..n-1)."""
    features = [c for c in table.columns if c not in join.on]
    renamed = _renames(features, existing, join.name, where)
    right = pd.concat([right, table[features].rename(columns=renamed)], axis=1).assign(**{_HIT: True})
    if join.as_of is None:
        repeated = int(right.duplicated(join.on).sum())
        if repeated:
            raise DataError(f"{where}: {repeated} record(s) of joined table {join.name!r} repeat the keys "
                            f"{join.on} of another; add as_of (the latest record before each row's label time) or "
                            "aggregate (a summary of all of them)")
        merged = left.merge(right, on=join.on, how="left", validate="many_to_one")
    else:
        right = right[right[_RECORD_T].notna()]
        merged = pd.merge_asof(
            left.sort_values(_LABEL_T, kind="stable"), right.sort_values(_RECORD_T, kind="stable"),
            left_on=_LABEL_T, right_on=_RECORD_T, by=join.on, direction="backward",
            tolerance=None if join.as_of.window is None else pd.Timedelta(join.as_of.window),
            allow_exact_matches=join.as_of.exact_matches)
        check_point_in_time(merged[_ROW], merged[_LABEL_T], merged[_RECORD_T],
                            exact_matches=join.as_of.exact_matches, window=join.as_of.window, where=where)
    merged = merged.sort_values(_ROW, kind="stable").reset_index(drop=True)
    return merged[list(renamed.values()) + [_HIT]]


def _aggregated(left: pd.DataFrame, right: pd.DataFrame, table: pd.DataFrame, join: JoinSpec,
                where: str) -> pd.DataFrame:
    """``<name>_count`` and ``<name>_<column>_<fn>`` per row over its records (in the as-of window), in
    ``left``'s row order (index 0..n-1)."""
    columns = list(join.aggregate)
    pairs = left.merge(pd.concat([right, table[columns]], axis=1), on=join.on, how="inner")
    if join.as_of is not None:
        pairs = pairs[in_window(pairs[_LABEL_T], pairs[_RECORD_T], exact_matches=join.as_of.exact_matches,
                                window=join.as_of.window)]
        check_point_in_time(pairs[_ROW], pairs[_LABEL_T], pairs[_RECORD_T],
                            exact_matches=join.as_of.exact_matches, window=join.as_of.window, where=where)
        pairs = pairs.sort_values([_ROW, _RECORD_T], kind="stable")
    rows = pd.Index(left[_ROW])
    grouped = pairs.groupby(_ROW, sort=True)
    count = grouped.size().reindex(rows, fill_value=0)
    out = {f"{join.name}_count": count.astype("int64")}
    for column, functions in join.aggregate.items():
        values = grouped[column]
        for fn in functions:
            name = f"{join.name}_{column}_{fn}"
            if fn == "last":     # the latest record's value, even when missing (not the latest non-missing)
                result = pairs.drop_duplicates(_ROW, keep="last").set_index(_ROW)[column]
            else:
                result = values.agg(fn)
            result = result.reindex(rows)
            if fn in ("count", "sum"):
                result = result.fillna(0)   # no record: zero of them, summing to zero
            out[name] = result
    attached = pd.DataFrame(out, index=rows)
    attached[_HIT] = (count > 0).to_numpy()
    return attached.reset_index(drop=True)


# --------------------------------------------------------------------------- the point-in-time rule


def in_window(label_times: pd.Series, record_times: pd.Series, *, exact_matches: bool, window) -> pd.Series:
    """Whether each record may be seen by its row: before the label time (or at it, with
    ``exact_matches``) and, with a ``window`` (timedelta), no older than label time - window."""
    ok = record_times.le(label_times) if exact_matches else record_times.lt(label_times)
    if window is not None:
        ok &= record_times.ge(label_times - pd.Timedelta(window))
    return ok


def check_point_in_time(rows: pd.Series, label_times: pd.Series, record_times: pd.Series, *,
                        exact_matches: bool, window, where: str) -> None:
    """Raise PointInTimeError if any joined record (``record_times`` not missing) lies outside its row's
    window (see :func:`in_window`); ``rows`` are the base row numbers, named in the message."""
    matched = record_times.notna()
    bad = matched & ~in_window(label_times, record_times, exact_matches=exact_matches, window=window)
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        rule = "at or before" if exact_matches else "strictly before"
        raise PointInTimeError(
            f"{where}: {int(bad.sum())} joined record(s) break the point-in-time rule (records must be stamped "
            f"{rule} their row's label time{'' if window is None else ', within the tolerance'}); first: base row "
            f"{int(rows.iloc[first])}, label time {label_times.iloc[first]}, record time {record_times.iloc[first]}")


# --------------------------------------------------------------------------- columns and types


def _require(frame: pd.DataFrame, columns: Sequence[str | None], key: str, what: str) -> None:
    """DataError naming the config ``key`` when a column it names is not in ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(repr, frame.columns[:30])) + (" ..." if frame.shape[1] > 30 else "")
        raise DataError(f"{key}: {', '.join(map(repr, missing))} {'is' if len(missing) == 1 else 'are'} not a "
                        f"column of {what} (its columns: {shown})")


def _aligned_keys(left: pd.DataFrame, right: pd.DataFrame, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of both sides' key columns with one dtype per key: numbers as float64, anything else as
    text; a key holding numbers on one side and text on the other is a DataError."""
    left, right = left.copy(), right.copy()
    for column in left.columns:
        a, b = left[column], right[column]
        if a.dtype == b.dtype:
            continue
        numeric = pd.api.types.is_numeric_dtype(a), pd.api.types.is_numeric_dtype(b)
        if numeric == (True, True):
            left[column], right[column] = a.astype("float64"), b.astype("float64")
        elif numeric == (False, False):
            left[column], right[column] = a.astype("string"), b.astype("string")
        else:
            raise DataError(f"{where}.on: key {column!r} holds {a.dtype} values in the table built so far but "
                            f"{b.dtype} in the joined table; store it with one type in both sources")
    return left, right


def _times(column: pd.Series, key: str, what: str, *, rows_must_have_time: bool = False) -> pd.Series:
    """``column`` as UTC timestamps (ns); DataError if it holds numbers or text that is not a time, or
    (``rows_must_have_time``) if a row has none."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_datetime64_any_dtype(column):
        raise DataError(f"{key}: column {column.name!r} of {what} holds numbers ({column.dtype}), not dates/times")
    try:
        times = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError):
        try:   # text of ISO 8601 times written with and without a time of day, or with varying precision
            times = pd.to_datetime(column, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{key}: column {column.name!r} of {what} is not a date/time column: "
                            f"{str(exc).splitlines()[0]}") from None
    times = times.dt.as_unit("ns")
    if rows_must_have_time and times.isna().any():
        rows = times.index[times.isna()]
        raise DataError(f"{key}: {len(rows)} row(s) of {what} have no time in column {column.name!r} (first rows: "
                        f"{', '.join(map(str, rows[:5]))}); a point-in-time join needs every row's label time")
    return times


def _renames(features: Sequence[str], existing: Sequence[str], name: str, where: str) -> dict[str, str]:
    """Joined column -> its name in the result: ``<name>_<column>`` when ``column`` is already taken."""
    taken = set(existing)
    renamed = {c: (f"{name}_{c}" if c in taken else c) for c in features}
    clash = [new for new in renamed.values() if new in taken]
    if clash:
        raise DataError(f"{where}: joined column(s) {clash} clash with columns already in the table even after "
                        f"prefixing with the join's name; rename them in the source")
    return renamed

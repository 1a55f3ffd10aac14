"""Which event timestamps an events file may hold: the traffic contract's bounds on `ts`.

A timestamp is written by whoever logged the event, and in a gateway's log a client can often set
it. One absurd value would otherwise decide where a file's scoring window ends (`features.window`)
and how long its spans are, so a `ts` before `not_before` (default 2000-01-01 UTC, before any LLM
API) or more than `max_ahead` after the check (default one day: clocks drift, time zones get
mislabelled, but nothing is logged tomorrow) is a bad row naming the field and the row, like any
other broken value: rejected in fail mode, sent to the rejects side file in skip mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import BadRow
from .parsing import ParsedBatch, records_as_strings

DEFAULT_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_MAX_AHEAD = timedelta(days=1)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TimestampBounds:
    """Accepted `ts`: from `not_before` to `max_ahead` after `now` (None: the time of the check)."""

    not_before: datetime = DEFAULT_NOT_BEFORE
    max_ahead: timedelta = DEFAULT_MAX_AHEAD
    now: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.max_ahead < timedelta(0):
            raise ValueError(f"max_ahead must not be negative, not {self.max_ahead}")
        if _utc(self.not_before) >= self.latest():
            raise ValueError(f"not_before {_iso(self.not_before)} is not before the latest accepted "
                             f"timestamp {_iso(self.latest())}")

    def latest(self) -> datetime:
        now = _utc(self.now if self.now is not None else datetime.now(UTC))
        return now + min(self.max_ahead, datetime.max.replace(tzinfo=UTC) - now)

    def limits_us(self) -> tuple[int, int]:
        """(earliest, latest) accepted timestamp in microseconds since the epoch."""
        def us(t: datetime) -> int:
            return int(_utc(t).timestamp() * 1_000_000)
        return us(self.not_before), us(self.latest())


def reject_out_of_range(batch: ParsedBatch, bounds: TimestampBounds) -> ParsedBatch:
    """Move the rows of a clean events batch whose `ts` lies outside `bounds` to its bad rows."""
    if batch.table.num_rows == 0:
        return batch
    lo, hi = bounds.limits_us()
    ts = batch.table.column("ts").cast(pa.int64()).to_numpy()
    outside = (ts < lo) | (ts > hi)
    if not outside.any():
        return batch
    at = np.flatnonzero(outside)
    records = records_as_strings(batch.table.take(pa.array(at, pa.int64())))
    bad = [BadRow(int(batch.rows[i]), "ts", _reason(int(ts[i]), lo, bounds), rec) for i, rec in zip(at.tolist(), records)]
    return ParsedBatch(pc.filter(batch.table, pa.array(~outside)), batch.rows[~outside], batch.bad + bad)


def _reason(ts_us: int, lo_us: int, bounds: TimestampBounds) -> str:
    shown = np.datetime64(ts_us, "us").astype(str)[:19] + "Z"
    side = (f"before {_iso(bounds.not_before)}" if ts_us < lo_us
            else f"after {_iso(bounds.latest())} (now + {_duration(bounds.max_ahead)})")
    return f"timestamp {shown} is {side}: outside the accepted range"


def _duration(d: timedelta) -> str:
    hours = d.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        return f"{hours / 24:g} day" + ("s" if hours != 24 else "")
    return f"{hours:g} h"


DEFAULT_TS_BOUNDS = TimestampBounds()

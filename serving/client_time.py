"""A client's `ts` judged against the server's own clock.

Whoever calls the gateway can write any `ts`. Taken as given, one event dated 9999-12-31 made an
account's newest event lie far ahead of all its others, so its window (the events no older than the
window's span before its newest one) held that event alone and none of the prompts that had it
blocked; events dated decades back made spans absurd. So the server trusts a client's clock only as
far as clocks plausibly disagree: a `ts` more than `max_clock_skew_s` after the event's arrival, or
more than `max_backdate_days` before it, is stored *clamped* to that bound (and counted in
`distillguard_events_ts_clamped_total`). It is clamped rather than refused because a refused check
gives the gateway no verdict (a fail-open gateway would let the request through), while a clamped
event is recorded and judged like any other. The arrival time itself (`received_at`) bounds which
events are in a window (`EventLog.windows`), so no timestamp can take an event out of its
account's window or push others out of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Clamp = Literal["ahead", "behind"]


@dataclass(frozen=True)
class ClientClockPolicy:
    """How far a client's `ts` may lie from the event's arrival: ahead (clock skew) and behind (backfill)."""

    max_ahead_us: int
    max_behind_us: int

    @classmethod
    def of(cls, max_clock_skew_s: float, max_backdate_days: float) -> ClientClockPolicy:
        return cls(int(max_clock_skew_s * 1e6), int(max_backdate_days * 86_400e6))

    def judge(self, ts_us: int | None, arrival_us: int) -> tuple[int, Clamp | None]:
        """The timestamp to store for an event that arrived at `arrival_us` (µs since the epoch), and
        which bound clamped it (None: stored as sent; no `ts`: the arrival time)."""
        if ts_us is None:
            return arrival_us, None
        if ts_us > arrival_us + self.max_ahead_us:
            return arrival_us + self.max_ahead_us, "ahead"
        if ts_us < arrival_us - self.max_behind_us:
            return arrival_us - self.max_behind_us, "behind"
        return ts_us, None

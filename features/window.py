"""The scoring window: which events of which accounts a score is computed from, in a batch job. The
serving worker reads the same newest `max_events` per account, bounded by the server's arrival clock
instead of `ts` (`serving.state_store.EventLog.windows`); on traffic whose spans fit the window both
read the same events, so both score the same population the same way.

An account's window is its newest `max_events` events no older than `max_days` before its anchor:
its newest event, or the population's window end when its newest event lies beyond it; the
population is every account whose newest event is within `max_days` of that end. Events are
ordered by time, then by their order in the input (their arrival).

The window end is where the bulk of the accounts' activity ends (`window_end_us`), not the single
newest timestamp: whoever writes `ts` (in a gateway's log, often the client) could otherwise date one
event far ahead and so push every other account out of the population, or date one of its own
events ahead so that its window holds that event alone and none of the prompts that flagged it. A
few accounts dated ahead of the rest keep their events (nothing is hidden by dating it ahead) but
move neither the end nor their own window's start. What a file cannot defend against: events
dated far *back* fall out of their account's window (a file has no arrival clock to judge them by;
`data.time_bounds` refuses the absurd ones, and the server judges every `ts` against arrival).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: The window ends at the newest account's last event whose window holds the last events of at least
#: this share of the accounts the busiest window holds: moving the end takes that many accounts.
END_SUPPORT_SHARE = 0.5


def window_end_us(account_newest_us: np.ndarray, span_us: int, *, support_share: float = END_SUPPORT_SHARE) -> int:
    """The population's window end (µs since the epoch) from each account's newest event: the latest
    of them whose `span_us` window holds the newest events of at least `support_share` of the
    accounts that the busiest such window holds. On honest traffic that is the newest event; an end
    pushed ahead by a few accounts dated beyond the rest falls back to where the others are.
    O(accounts log accounts); allocates nothing that grows with the time span."""
    t = np.sort(np.asarray(account_newest_us, dtype=np.int64))
    if len(t) == 0:
        raise ValueError("no accounts: a window end needs at least one event")
    support = np.searchsorted(t, t, side="right") - np.searchsorted(t, t - span_us, side="left")
    enough = support >= math.ceil(support_share * int(support.max()))
    return int(t[np.flatnonzero(enough)[-1]])


def account_windows(events: pd.DataFrame, max_events: int, max_days: float, *,
                    newest_overall_us: int | None = None) -> pd.DataFrame:
    """The rows of `events` inside the scoring window (original order and index kept).
    `newest_overall_us` (µs since the epoch) is the population's window end when `events` holds only
    some of its accounts (a partition of a distributed job: `window_end_us` of every account's newest
    event); default: the window end of these accounts."""
    if events.empty:
        return events
    t = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    acc = events["account_id"].to_numpy(dtype=object)
    frame = pd.DataFrame({"a": acc, "t": t, "i": np.arange(len(events))})
    frame = frame.sort_values(["a", "t", "i"], kind="stable")
    newest = frame.groupby("a", sort=False)["t"].transform("max")
    rank_from_newest = frame.groupby("a", sort=False).cumcount(ascending=False)
    span_us = int(max_days * 86_400e6)
    end = newest_overall_us
    if end is None:
        end = window_end_us(frame.groupby("a", sort=False)["t"].max().to_numpy(), span_us)
    anchor = np.minimum(newest, end)  # an account dated beyond the end keeps the window it has up to it
    keep = (rank_from_newest < max_events) & (frame["t"] >= anchor - span_us) & (newest >= end - span_us)
    rows = np.sort(frame.loc[keep, "i"].to_numpy())
    return events.iloc[rows] if len(rows) < len(events) else events

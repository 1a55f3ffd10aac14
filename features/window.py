"""The scoring window: which events of which accounts a score is computed from. One rule for the
batch jobs and the serving worker, so that both score the same population the same way.

An account's window is its newest `max_events` events no older than `max_days` before its newest
event; the population is every account whose newest event is within `max_days` of the newest event
seen at all. Events are ordered by time, then by their order in the input (their arrival).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def account_windows(events: pd.DataFrame, max_events: int, max_days: float) -> pd.DataFrame:
    """The rows of `events` inside the scoring window (original order and index kept)."""
    if events.empty:
        return events
    t = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    acc = events["account_id"].to_numpy(dtype=object)
    frame = pd.DataFrame({"a": acc, "t": t, "i": np.arange(len(events))})
    frame = frame.sort_values(["a", "t", "i"], kind="stable")
    newest = frame.groupby("a", sort=False)["t"].transform("max")
    rank_from_newest = frame.groupby("a", sort=False).cumcount(ascending=False)
    span_us = int(max_days * 86_400e6)
    keep = (rank_from_newest < max_events) & (frame["t"] >= newest - span_us) & (newest >= t.max() - span_us)
    rows = np.sort(frame.loc[keep, "i"].to_numpy())
    return events.iloc[rows] if len(rows) < len(events) else events

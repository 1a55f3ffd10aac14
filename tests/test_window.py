"""The scoring window against hostile timestamps: a few events dated far from the rest neither empty
the population nor an account's own window, and nothing allocates by the time span."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
from distillguard.features import temporal as TM
from distillguard.features.window import account_windows, window_end_us

DAY_US = 86_400_000_000
MARCH = pd.Timestamp("2026-03-01", tz="UTC")


def _campaign(accounts: int = 40, per_account: int = 25, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"acct_{a}", MARCH + pd.Timedelta(days=float(d)), f"prompt {a} {k}")
            for a in range(accounts) for k, d in enumerate(np.sort(rng.uniform(0, 40, per_account)))]
    return pd.DataFrame(rows, columns=["account_id", "ts", "prompt"])


def _with(events: pd.DataFrame, *rows: tuple[str, str]) -> pd.DataFrame:
    extra = pd.DataFrame([(a, pd.Timestamp(t, tz="UTC"), "what time is it?") for a, t in rows],
                         columns=["account_id", "ts", "prompt"])
    return pd.concat([events, extra], ignore_index=True)


def test_a_few_accounts_dated_ahead_do_not_empty_the_population():
    plain = _campaign()
    hostile = _with(plain, ("late_1", "2026-12-02"), ("late_2", "2026-12-01"), ("early", "2000-01-02"))
    kept = account_windows(hostile, 400, 42.0)
    assert set(plain["account_id"]) <= set(kept["account_id"])  # before: only the two late accounts were left
    assert {"late_1", "late_2"} <= set(kept["account_id"])  # dated ahead, still scored
    assert "early" not in set(kept["account_id"])  # its newest event is long before the window


def test_an_event_dated_ahead_keeps_the_rest_of_its_accounts_window():
    plain = _campaign()
    hostile = _with(plain, ("acct_3", "2026-12-02"))
    kept = account_windows(hostile, 400, 42.0)
    own = kept[kept["account_id"] == "acct_3"]
    assert len(own) == 26  # its 25 March events and the one dated ahead (before: that one alone)
    assert len(kept) == len(hostile)


def test_honest_traffic_ends_its_window_at_its_newest_event():
    events = _campaign()
    t = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    newest = events.assign(t=t).groupby("account_id")["t"].max().to_numpy()
    assert window_end_us(newest, 42 * DAY_US) == t.max()
    # moving the end takes half the accounts the busiest window holds
    ahead = np.concatenate([newest, np.full(len(newest) // 2 - 1, t.max() + 200 * DAY_US)])
    assert window_end_us(ahead, 42 * DAY_US) == t.max()
    ahead = np.concatenate([newest, np.full(len(newest), t.max() + 200 * DAY_US)])
    assert window_end_us(ahead, 42 * DAY_US) == t.max() + 200 * DAY_US


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_window_and_temporal_features_allocate_nothing_by_the_time_span():
    narrow = _campaign(accounts=200, per_account=50)
    wide = _with(narrow.iloc[:-2], ("acct_0", "2000-01-02"), ("acct_0", "2026-12-02"))

    def work(events: pd.DataFrame):
        def run():
            kept = account_windows(events, 400, 42.0)
            t = np.sort(events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6)
            TM.activity_span(t), TM.hour_profile(t), TM.interarrival_stats(t)
            return kept
        return run

    work(narrow)()  # warm pandas' caches
    assert _peak_bytes(work(wide)) <= 1.2 * _peak_bytes(work(narrow))

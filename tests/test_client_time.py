"""Client timestamps against the server's clock: the clamp, and windows bounded by arrival in a real
SQLite event log."""

from __future__ import annotations

import time

from distillguard.serving.client_time import ClientClockPolicy
from distillguard.serving.state_store import EventLog

DAY_US = 86_400_000_000
YEAR_9999_US = 253_402_300_799_000_000


def test_a_ts_beyond_the_skew_is_clamped_to_the_bound():
    policy = ClientClockPolicy.of(max_clock_skew_s=300, max_backdate_days=42)
    now = 1_800_000_000_000_000
    assert policy.judge(None, now) == (now, None)
    assert policy.judge(now - 3_600_000_000, now) == (now - 3_600_000_000, None)  # an hour late: as sent
    assert policy.judge(now + 299_000_000, now) == (now + 299_000_000, None)
    assert policy.judge(YEAR_9999_US, now) == (now + 300_000_000, "ahead")
    assert policy.judge(0, now) == (now - 42 * DAY_US, "behind")


def _row(account: str, ts_us: int, prompt: str) -> tuple:
    return (account, ts_us, prompt, None, None, None, None, None, None)


def test_windows_are_bounded_by_arrival_not_by_the_clients_ts(tmp_path):
    log = EventLog(tmp_path)
    t0 = int(time.time() * 1e6) - 10 * DAY_US
    log.append([_row("harvester", t0 + i * 60_000_000, f"harvest prompt {i}") for i in range(50)])
    log.append([_row("harvester", YEAR_9999_US, "dated ahead")])
    frame, through = log.windows(["harvester"], 400, 42 * DAY_US)
    assert len(frame) == 51  # before: the event dated ahead alone (the window ran back 42 days from it)
    log.append([_row("harvester", 0, f"backfilled {i}") for i in range(400)])
    frame, through = log.windows(["harvester"], 400, 42 * DAY_US)
    assert len(frame) == 400 and frame["prompt"].str.startswith("harvest prompt").sum() == 50  # none pushed out
    assert through["harvester"] == log.max_id()  # read up to its newest event, though that one is not in the window
    later = time.time() + 43 * 86_400  # received more than the window ago: out, whatever their ts
    frame, through = log.windows(["harvester"], 400, 42 * DAY_US, now=later)
    assert frame.empty and through["harvester"] == log.max_id()

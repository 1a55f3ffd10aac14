"""When simulated accounts send prompts. Pure functions returning seconds since the window start.

Organic people follow the sun in their own time zone and come in bursty sessions; scripts (eval
runners, bots, harvesting campaigns) do not, but each kind of script has its own rhythm.
"""

from __future__ import annotations

import numpy as np

DAY = 86_400.0
HOUR = 3_600.0

#: Relative activity of a person by local hour of day (night low, late morning and evening high).
DIURNAL = np.array([0.20, 0.10, 0.05, 0.04, 0.04, 0.08, 0.25, 0.55, 0.90, 1.10, 1.20, 1.20,
                    1.10, 1.10, 1.10, 1.00, 1.00, 1.00, 1.10, 1.25, 1.30, 1.15, 0.85, 0.45])
DIURNAL_P = DIURNAL / DIURNAL.sum()
#: Office hours: activity of teams and of developers' tools.
WORK_HOURS = np.array([0.02] * 7 + [0.3, 1.0, 1.0, 1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 0.6, 0.2] + [0.05] * 5)
WORK_HOURS_P = WORK_HOURS / WORK_HOURS.sum()


def fold_into_days(starts: np.ndarray, first_day: float, last_day: float) -> np.ndarray:
    """Move starts that a time-zone shift pushed outside [first_day, last_day) back in (by one day)."""
    lo, hi = first_day * DAY, last_day * DAY
    starts = np.where(starts < lo, starts + DAY, starts)
    starts = np.where(starts >= hi, starts - DAY, starts)
    # a span shorter than a day (a light account trying the service once) can still miss it: wrap
    outside = (starts < lo) | (starts >= hi)
    return np.where(outside, lo + np.mod(starts - lo, max(hi - lo, 1.0)), starts)


def _split_sizes(rng: np.random.Generator, n: int, mean_size: float) -> np.ndarray:
    """Split n prompts into sessions of at least one prompt, sizes roughly geometric."""
    n_sessions = int(max(1, min(n, round(n / max(mean_size, 1.0)))))
    extra = rng.multinomial(n - n_sessions, rng.dirichlet(np.ones(n_sessions))) if n > n_sessions else 0
    return np.ones(n_sessions, dtype=np.int64) + extra


def session_times(rng: np.random.Generator, n: int, *, tz_hours: float, first_day: float, last_day: float,
                  hour_p: np.ndarray, mean_session: float, gap_mean_s: float, gap_cv: float = 1.0) -> np.ndarray:
    """Prompts in sessions that start at local hours drawn from `hour_p`, on random days.

    Inside a session, gaps are gamma distributed with mean `gap_mean_s` and coefficient of
    variation `gap_cv` (1.0 is exponential: people; small values are scripts at a steady pace).
    """
    sizes = _split_sizes(rng, n, mean_session)
    k = len(sizes)
    days = np.floor(rng.uniform(first_day, max(first_day + 1e-6, last_day), k))
    hours = rng.choice(24, p=hour_p, size=k) + rng.random(k)
    starts = fold_into_days(days * DAY + hours * HOUR - tz_hours * HOUR, first_day, last_day)
    shape = 1.0 / (gap_cv ** 2)
    gaps = rng.gamma(shape, gap_mean_s / shape, size=n)
    session_of = np.repeat(np.arange(k), sizes)
    first_index = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    gaps[first_index] = 0.0
    csum = np.cumsum(gaps)
    offsets = csum - csum[first_index][session_of]
    return np.sort(starts[session_of] + offsets)


def spread_times(rng: np.random.Generator, n: int, *, tz_hours: float, first_day: float, last_day: float,
                 hour_p: np.ndarray) -> np.ndarray:
    """Independent prompts spread over days with a diurnal profile (a support bot's customers)."""
    days = np.floor(rng.uniform(first_day, last_day, n))
    hours = rng.choice(24, p=hour_p, size=n) + rng.random(n)
    return np.sort(fold_into_days(days * DAY + hours * HOUR - tz_hours * HOUR, first_day, last_day))


def constant_rate_times(rng: np.random.Generator, n: int, *, start_s: float, interval_s: float,
                        jitter_cv: float) -> np.ndarray:
    """A steady stream: one prompt every `interval_s`, jittered, around the clock."""
    shape = 1.0 / (jitter_cv ** 2)
    gaps = rng.gamma(shape, interval_s / shape, size=n)
    return start_s + np.cumsum(gaps)


def round_robin_times(rng: np.random.Generator, n: int, *, rank: int, group_size: int, campaign_start_s: float,
                      span_s: float, jitter_cv: float) -> np.ndarray:
    """A dispatcher cycling through `group_size` accounts across the campaign's whole span.

    Each account sends its n prompts at an even stride of span/n, offset by its position `rank`
    in the cycle, so the campaign's accounts interleave in lock step (the synchronisation a
    coordination feature should see) whatever each account's volume.
    """
    stride = span_s / n
    slots = np.arange(n) + rank / group_size
    return campaign_start_s + slots * stride + rng.normal(0.0, jitter_cv * stride, size=n)


def hour_profile_flattened(power: float) -> np.ndarray:
    """The diurnal profile raised to `power` (<1 flattens it), normalised."""
    p = DIURNAL ** power
    return p / p.sum()

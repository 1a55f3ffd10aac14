"""How an account moves in time: volume, pace, regularity, daily rhythm, model adoption.

Pure functions of one account's timestamps (seconds since the epoch, sorted) and model column.
"""

from __future__ import annotations

import numpy as np

DAY = 86_400.0
HOUR = 3_600.0


def interarrival_stats(t: np.ndarray) -> tuple[float, float]:
    """(coefficient of variation, burstiness (σ-μ)/(σ+μ)) of the gaps between prompts.

    A script at a steady pace has CV near 0 and burstiness near -1; a person's sessions give
    CV > 1 and burstiness > 0.
    """
    if len(t) < 3:
        return float("nan"), float("nan")
    gaps = np.diff(t)
    mu, sigma = gaps.mean(), gaps.std()
    if mu <= 0:
        return float("nan"), float("nan")
    return float(sigma / mu), float((sigma - mu) / (sigma + mu))


def hour_profile(t: np.ndarray) -> np.ndarray:
    """Share of prompts per UTC hour of day (24,)."""
    hours = ((t % DAY) // HOUR).astype(np.int64)
    counts = np.bincount(hours, minlength=24).astype(float)
    return counts / counts.sum()


def hour_entropy(profile: np.ndarray) -> float:
    """Entropy of the hour-of-day profile over log(24): 1.0 is round the clock, low is a fixed rhythm."""
    p = profile[profile > 0]
    return float(-(p * np.log(p)).sum() / np.log(24))


def quietest_window_share(profile: np.ndarray, width: int = 8) -> float:
    """Share of prompts in the quietest `width`-hour window of the day: people sleep (near 0),
    round-the-clock scripts do not (near width/24)."""
    ring = np.concatenate([profile, profile[: width - 1]])
    windows = np.convolve(ring, np.ones(width), mode="valid")[:24]
    return float(windows.min())


def activity_span(t: np.ndarray) -> tuple[float, float, float]:
    """(active days, span in days, prompts per active day)."""
    days = np.unique((t // DAY).astype(np.int64))
    span = (t[-1] - t[0]) / DAY if len(t) > 1 else 0.0
    return float(len(days)), float(span), float(len(t) / len(days))


def new_model_adoption(t: np.ndarray, models: np.ndarray | None, model_first_seen: dict[str, float],
                       newest_model: str | None) -> tuple[float, float]:
    """How soon the account moved to the newest model seen in the traffic.

    Returns (hours from the model's first appearance anywhere to this account's first use of it,
    share of this account's prompts after that first appearance that use it). NaN when the model
    column is absent or no new model appeared while the account was active.
    """
    if models is None or newest_model is None:
        return float("nan"), float("nan")
    released = model_first_seen[newest_model]
    after = t >= released
    if not after.any():
        return float("nan"), float("nan")
    used = models[after] == newest_model
    delay = (t[after][used][0] - released) / HOUR if used.any() else float("nan")
    return float(delay), float(used.mean())

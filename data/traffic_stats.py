"""Statistics of a traffic frame (events in the contract) that say how realistic it is: how texts
are shared across accounts, how much of a later period is new, which optional fields whole client
populations leave out, and how accounts move in time. Pure functions, read by the simulator's
realism tests (tests/test_simulator_realism.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillguard.features import temporal as TM
from distillguard.features.text_normalization import normalize_prompt

OPTIONAL_FIELDS: tuple[str, ...] = ("conversation_id", "model", "ip", "asn", "payment_fingerprint", "user_agent")
#: Buckets of "how many distinct accounts sent this exact text".
MULTIPLICITY_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1), ("2-10", 2, 10), ("11-99", 11, 99), ("100-999", 100, 999), ("1000+", 1000, 2 ** 62))


def _normalized(prompts: pd.Series) -> pd.Series:
    codes, uniques = pd.factorize(prompts)
    return pd.Series(pd.Index([normalize_prompt(t) for t in uniques]).take(codes), index=prompts.index)


def text_multiplicity(events: pd.DataFrame, *, period_days: float = 7.0) -> pd.Series:
    """For each (period, normalised text): the number of distinct accounts that sent it in that period
    (periods of `period_days` from the first event). Index: (period, text)."""
    t0 = events["ts"].min()
    period = ((events["ts"] - t0) / pd.Timedelta(days=period_days)).astype(int)
    frame = pd.DataFrame({"period": period.to_numpy(), "text": _normalized(events["prompt"]).to_numpy(),
                          "account": events["account_id"].to_numpy()})
    return frame.drop_duplicates().groupby(["period", "text"]).size()


def multiplicity_histogram(multiplicity: pd.Series) -> dict[str, int]:
    """How many texts fall in each `MULTIPLICITY_BUCKETS` bucket of sending accounts."""
    m = multiplicity.to_numpy()
    return {name: int(((m >= lo) & (m <= hi)).sum()) for name, lo, hi in MULTIPLICITY_BUCKETS}


def later_period_overlap(events: pd.DataFrame, cutoff: pd.Timestamp, accounts: pd.Index | None = None) -> dict[str, float]:
    """How much of the traffic at or after `cutoff` (of `accounts`, default all) an earlier period
    already contains: the share of its events, and of its distinct texts, whose normalised text was
    sent by anyone before `cutoff`."""
    earlier = events[events["ts"] < cutoff]
    later = events[events["ts"] >= cutoff]
    if accounts is not None:
        later = later[later["account_id"].isin(accounts)]
    seen = set(_normalized(earlier["prompt"]))
    later_texts = _normalized(later["prompt"])
    in_earlier = later_texts.isin(seen)
    distinct = later_texts.drop_duplicates()
    return {"events": int(len(later)), "event_share_seen_before": float(in_earlier.mean()) if len(later) else np.nan,
            "distinct_texts": int(len(distinct)),
            "text_share_seen_before": float(distinct.isin(seen).mean()) if len(distinct) else np.nan}


def missing_field_shares(events: pd.DataFrame) -> dict[str, float]:
    """Per optional field: the share of accounts that never send it (absent column: 1.0)."""
    n = events["account_id"].nunique()
    out = {}
    for field in OPTIONAL_FIELDS:
        if field not in events:
            out[field] = 1.0
            continue
        sends = events.loc[events[field].notna(), "account_id"].nunique()
        out[field] = 1.0 - sends / n
    return out


def account_timing(events: pd.DataFrame) -> pd.DataFrame:
    """Per account: volume, gap coefficient of variation, share of prompts in the quietest 8 hours of
    the day, hour-of-day entropy, active days, prompts per active day, and the share of prompts in
    conversations of 2+ turns (NaN without conversation ids)."""
    t_all = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6
    frame = pd.DataFrame({"a": events["account_id"].to_numpy(), "t": t_all,
                          "c": events["conversation_id"].to_numpy() if "conversation_id" in events else None})
    rows = {}
    for acc, g in frame.sort_values(["a", "t"], kind="stable").groupby("a", sort=True):
        t = g["t"].to_numpy()
        cv, _ = TM.interarrival_stats(t)
        prof = TM.hour_profile(t)
        active, _, per_day = TM.activity_span(t)
        conv = g["c"].dropna()
        multi = conv.map(conv.value_counts()).gt(1).mean() if len(conv) else np.nan
        rows[acc] = {"volume": len(t), "interarrival_cv": cv, "quiet_8h_share": TM.quietest_window_share(prof),
                     "hour_entropy": TM.hour_entropy(prof), "active_days": active, "prompts_per_active_day": per_day,
                     "multi_turn_share": multi}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("account_id")

"""Hold-outs that see what live traffic will do to a detector.

- **Out of time** (`out_of_time_split`): the hold-out is a later period scored as a whole
  population: every account active in it, of every class, none of them in training (accounts
  first active at or after the cutoff are evaluated; returning accounts stay in the population as
  the world around them). Everything fitted (organic baseline, thresholds, model) sees only the
  earlier period.
- **Adaptive copy** (`adaptive_copy`): the same accounts, where each harvester keeps its prompts and
  takes an organic account's timestamps, conversation grouping, model choice and client metadata.
- **Cold start** (`cold_start_cut`): the same accounts cut to their first 1-3 prompts.

Pure functions of events and labels frames in the contract (see `data.contract`).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from distillguard.training.dataset import TrainingDataError, stratified_split

OUT_OF_TIME = "out_of_time"
SINGLE_PERIOD = "single_period"


@dataclass(frozen=True)
class HoldoutRules:
    """How the out-of-time hold-out is cut, and what it takes to call the data multi-period."""

    holdout_days: float = 14.0  # length of the later period
    min_earlier_days: float = 7.0  # the earlier period must be at least this long
    min_new_organic: int = 20  # evaluated accounts needed in the later period
    min_new_harvest: int = 2
    random_holdout_share: float = 0.2  # the single-period fallback's share of accounts


@dataclass
class Holdout:
    """The population a candidate and the champion are judged on."""

    kind: str  # OUT_OF_TIME or SINGLE_PERIOD
    population: pd.DataFrame  # every event scored together (the whole later period, or the random accounts)
    labels: pd.DataFrame  # labels of the population's labelled accounts, with a bool column `evaluated`
    cutoff: pd.Timestamp | None  # start of the later period (None for a single period)
    note: str  # what this hold-out is, said plainly (and loudly when it is the fallback)
    info: dict = field(default_factory=dict)

    @property
    def evaluated(self) -> pd.DataFrame:
        """Labels of the accounts the figures are computed on."""
        return self.labels[self.labels["evaluated"]].drop(columns="evaluated").reset_index(drop=True)


def _day_floor(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.floor("D")


def choose_cutoff(ts: pd.Series, rules: HoldoutRules) -> pd.Timestamp | None:
    """The start of the later period: the day boundary `holdout_days` before the last event, if the
    earlier period is then at least `min_earlier_days` long; else None (single period)."""
    first, last = ts.min(), ts.max()
    cutoff = _day_floor(last) - pd.Timedelta(days=rules.holdout_days - 1)
    if cutoff - first < pd.Timedelta(days=rules.min_earlier_days):
        return None
    return cutoff


def out_of_time_holdout(events: pd.DataFrame, labels: pd.DataFrame, rules: HoldoutRules = HoldoutRules(), *,
                        seed: int = 0, cutoff: pd.Timestamp | None = None) -> Holdout:
    """The later period as a whole population, evaluated on accounts first active in it; or, when the
    data has a single period (too short, or too few new accounts after the cutoff), a random share of
    accounts with a note that says so loudly."""
    first_seen = events.groupby("account_id", sort=False)["ts"].min()
    span_days = (events["ts"].max() - events["ts"].min()) / pd.Timedelta(days=1)
    cutoff = cutoff if cutoff is not None else choose_cutoff(events["ts"], rules)
    reason = None
    if cutoff is None:
        reason = (f"the data spans {span_days:.1f} days; an out-of-time hold-out needs {rules.holdout_days:g} days "
                  f"after at least {rules.min_earlier_days:g} days of earlier data")
    else:
        lab = labels.set_index("account_id")["label"]
        newcomers = first_seen[first_seen >= cutoff].index
        new_labels = lab.reindex(newcomers).dropna()
        n_org, n_harv = int((new_labels == 0).sum()), int((new_labels == 1).sum())
        if n_org < rules.min_new_organic or n_harv < rules.min_new_harvest:
            reason = (f"only {n_org} organic and {n_harv} harvesting labelled accounts are new after "
                      f"{cutoff.date()} (needed {rules.min_new_organic} and {rules.min_new_harvest})")
    if reason is not None:
        return _single_period_holdout(events, labels, rules, seed, reason)

    later = events[events["ts"] >= cutoff].reset_index(drop=True)
    in_population = labels[labels["account_id"].isin(set(later["account_id"]))].copy()
    in_population["evaluated"] = in_population["account_id"].map(first_seen >= cutoff).astype(bool)
    n_eval = int(in_population["evaluated"].sum())
    note = (f"out of time: the {rules.holdout_days:g} days from {cutoff.date()} scored as one population of "
            f"{later['account_id'].nunique():,} accounts; {n_eval:,} labelled accounts first active in it are "
            f"evaluated, {len(in_population) - n_eval:,} returning ones are context only")
    return Holdout(OUT_OF_TIME, later, in_population.reset_index(drop=True), cutoff, note,
                   {"holdout_days": rules.holdout_days})


def _single_period_holdout(events: pd.DataFrame, labels: pd.DataFrame, rules: HoldoutRules, seed: int,
                           reason: str) -> Holdout:
    split = stratified_split(labels, seed=seed, holdout=rules.random_holdout_share)
    chosen = set(split.holdout)
    held = labels[labels["account_id"].isin(chosen)].copy()
    held["evaluated"] = True
    note = (f"SINGLE PERIOD: {reason}. The hold-out is a random {rules.random_holdout_share:.0%} of accounts from "
            "the same period, scored on their own: it cannot see drift, population size or accounts that "
            "are new to the baseline, and its figures will flatter. Give traffic spanning more weeks.")
    return Holdout(SINGLE_PERIOD, events[events["account_id"].isin(chosen)].reset_index(drop=True),
                   held.reset_index(drop=True), None, note, {})


def training_events(events: pd.DataFrame, holdout: Holdout) -> pd.DataFrame:
    """What may be trained on beside `holdout`: the earlier period (out of time) or the other accounts."""
    if holdout.kind == OUT_OF_TIME:
        earlier = events[events["ts"] < holdout.cutoff]
        evaluated = set(holdout.evaluated["account_id"])
        return earlier[~earlier["account_id"].isin(evaluated)].reset_index(drop=True)
    held = set(holdout.labels["account_id"])
    return events[~events["account_id"].isin(held)].reset_index(drop=True)


def arrived_later(events: pd.DataFrame, holdout: Holdout, labelled: set[str]) -> set[str]:
    """Labelled accounts outside the out-of-time hold-out that are active at or after its cutoff: they came
    after it was frozen (a newly labelled campaign's training share, later verdicts), so all their events
    may train. Empty for a single-period hold-out, where every account outside it trains whole."""
    if holdout.kind != OUT_OF_TIME:
        return set()
    outside = labelled - set(holdout.population["account_id"]) - set(holdout.labels["account_id"])
    late = events.loc[(events["ts"] >= holdout.cutoff) & events["account_id"].isin(outside), "account_id"]
    return set(late)


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _pseudo_ip(*parts: object) -> str:
    h = _stable_int("ip", *parts)
    return f"{11 + h % 212}.{(h >> 8) % 256}.{(h >> 16) % 256}.{1 + (h >> 24) % 254}"


def adaptive_copy(events: pd.DataFrame, labels: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The same traffic where every harvesting account (label 1) keeps its prompts, in order, and takes
    an organic account's (label 0) timestamps, conversation grouping, model choice and client
    metadata (user agent, ASN; its IPs and payment fingerprints are renamed so that they stay its
    own). Missing fields stay missing. Other accounts are unchanged.

    The donor is an organic account of the same population with at least as many events, preferably
    at most three times as many; the harvester takes a contiguous run of the donor's events, so
    sessions, gaps and daily rhythm come whole. A harvester larger than every organic account
    repeats its donor's stream in cycles shifted by one minute.
    """
    lab = labels.set_index("account_id")["label"]
    label_of = events["account_id"].map(lab)
    organic = events[label_of == 0]
    if organic.empty:
        raise TrainingDataError("an adaptive copy needs organic accounts (label 0) to copy behaviour from")
    harvest = events[label_of == 1]
    if harvest.empty:
        return events.copy()
    organic = organic.sort_values(["account_id", "ts"], kind="stable")
    donor_sizes = organic.groupby("account_id", sort=True).size()
    donor_start = np.concatenate([[0], np.cumsum(donor_sizes.to_numpy())[:-1]])
    donor_ids, sizes = donor_sizes.index.to_numpy(), donor_sizes.to_numpy()
    by_size = np.argsort(sizes, kind="stable")
    sorted_sizes = sizes[by_size]
    rng = np.random.default_rng([seed, 77])
    copy_cols = ["ts", "conversation_id", "model", "ip", "asn", "payment_fingerprint", "user_agent"]
    copy_cols = [c for c in copy_cols if c in events]
    donor_frame = organic[copy_cols].reset_index(drop=True)

    harvest = harvest.sort_values(["account_id", "ts"], kind="stable")
    parts = []
    for acc, own in harvest.groupby("account_id", sort=True):
        n = len(own)
        lo = np.searchsorted(sorted_sizes, n, side="left")
        hi = np.searchsorted(sorted_sizes, 3 * n, side="right")
        pool = by_size[lo:hi] if hi > lo else by_size[lo:]
        if len(pool):
            d = int(rng.choice(pool))
            offset = int(rng.integers(0, sizes[d] - n + 1))
            rows = donor_start[d] + offset + np.arange(n)
            shift = np.zeros(n, dtype="int64")
        else:  # larger than every organic account: cycle the largest one's stream
            d = int(by_size[-1])
            k = np.arange(n)
            rows = donor_start[d] + k % sizes[d]
            shift = (k // sizes[d]) * 60_000_000  # one minute per cycle, in microseconds
        taken = donor_frame.iloc[rows].reset_index(drop=True)
        new = own.reset_index(drop=True)[["account_id", "prompt"]].copy()
        new["ts"] = taken["ts"] + pd.to_timedelta(shift, unit="us")
        donor = donor_ids[d]
        if "conversation_id" in taken:
            new["conversation_id"] = taken["conversation_id"].map(
                lambda c: None if pd.isna(c) else f"ad_{_stable_int(acc, donor, c) % 16 ** 12:012x}")
        for col in ("model", "asn", "user_agent"):
            if col in taken:
                new[col] = taken[col]
        if "ip" in taken:
            new["ip"] = taken["ip"].map(lambda v: None if pd.isna(v) else _pseudo_ip(acc, v))
        if "payment_fingerprint" in taken:
            new["payment_fingerprint"] = taken["payment_fingerprint"].map(
                lambda v: None if pd.isna(v) else f"pf_{_stable_int('pf', acc, v) % 16 ** 16:016x}")
        parts.append(new[[c for c in events.columns if c in new]])
    copied = pd.concat(parts, ignore_index=True)
    for col in events.columns:
        if col not in copied:
            copied[col] = None
    rest = events[label_of != 1]
    out = pd.concat([rest, copied[events.columns].astype(events.dtypes.to_dict(), errors="ignore")],
                    ignore_index=True)
    return out.sort_values("ts", kind="stable", ignore_index=True)


def cold_start_prompts(account_id: str, seed: int, max_prompts: int = 3) -> int:
    """How many first prompts an account keeps in the cold-start hold-out: 1 to `max_prompts`."""
    return 1 + zlib.crc32(f"{seed}:{account_id}".encode()) % max_prompts


def cold_start_cut(events: pd.DataFrame, *, seed: int = 0, max_prompts: int = 3) -> pd.DataFrame:
    """Every account cut to its first 1-`max_prompts` prompts (how many: a hash of the account and seed)."""
    ev = events.sort_values(["account_id", "ts"], kind="stable")
    position = ev.groupby("account_id", sort=False).cumcount()
    keep = ev["account_id"].map(lambda a: cold_start_prompts(a, seed, max_prompts))
    return ev[position < keep].sort_values("ts", kind="stable", ignore_index=True)

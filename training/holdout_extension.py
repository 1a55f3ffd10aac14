"""A newly labelled campaign joins the frozen hold-out.

The hold-out frozen at the first run keeps its core (the later period of the first data, scored as
one population); a campaign that the data it was frozen from did not name (a *new* campaign, e.g.
one analysts confirmed at the gateway) adds a share of its accounts to it, chosen by a hash of the
account id, so that every later candidate and the champion are judged on it too. The other accounts
of the campaign train. Pure functions of frames; `holdout_store` keeps the result on disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from distillguard.training.holdouts import Holdout

#: The share of a new campaign's accounts that joins the hold-out.
NEW_CAMPAIGN_SHARE = 0.3
WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class CampaignExtension:
    """One campaign added to the hold-out."""

    campaign: str
    held_out: int  # its accounts added to the hold-out
    trained: int  # its accounts left to training (when it was added)
    shift_weeks: int  # whole weeks its events were moved back to share the hold-out's window

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def account_rank(account_id: str) -> int:
    """A stable pseudo-random rank of an account (the same in every run and process)."""
    return int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=8).digest(), "big")


def held_out_accounts(account_ids: list[str], share: float = NEW_CAMPAIGN_SHARE) -> list[str]:
    """The `share` of a campaign's accounts that joins the hold-out: the lowest ranks by `account_rank`,
    at least one when the campaign has two accounts or more (one account cannot both train and test)."""
    ids = sorted(set(account_ids), key=account_rank)
    if len(ids) < 2:
        return []
    return ids[:max(1, round(share * len(ids)))]


def new_campaigns(labels: pd.DataFrame, known: set[str]) -> list[str]:
    """Campaigns of harvesting accounts (label 1) that `known` does not name."""
    harvest = labels.loc[labels["label"].astype(int) == 1, "campaign"].astype(str)
    return sorted(set(harvest) - known)


def week_shift(events_end: pd.Timestamp, latest_end: pd.Timestamp) -> int:
    """Whole weeks to move events ending at `events_end` back so that they end no later than `latest_end`
    (moving by whole weeks keeps the hour of day and the day of week)."""
    if events_end <= latest_end:
        return 0
    return int(np.ceil((events_end - latest_end) / WEEK))


def latest_joint_end(population: pd.DataFrame, window_days: float) -> pd.Timestamp:
    """The latest time added events may reach while every account of `population` stays in the scoring
    window of the whole (`features.window`: accounts whose newest event is within `window_days` of the
    newest event seen)."""
    return population.groupby("account_id", sort=False)["ts"].max().min() + pd.Timedelta(days=window_days)


def extend_holdout(holdout: Holdout, events: pd.DataFrame, labels: pd.DataFrame, known: set[str],
                   share: float = NEW_CAMPAIGN_SHARE, window_days: float = 42.0,
                   ) -> tuple[Holdout, list[CampaignExtension], pd.DataFrame, pd.DataFrame]:
    """`holdout` with a `share` of each new campaign's accounts (campaigns of `labels` outside `known`)
    added: their events join the population and their labels are evaluated; a campaign that ends too late
    for the population's scoring window (`window_days`) is moved back by whole weeks. Returns (extended
    hold-out, what was added, the added events, the added labels)."""
    added, ext_events, ext_labels = [], [], []
    in_holdout = set(holdout.labels["account_id"])
    latest = latest_joint_end(holdout.population, window_days)
    for campaign in new_campaigns(labels, known):
        members = labels.loc[(labels["campaign"].astype(str) == campaign) & (labels["label"].astype(int) == 1),
                             "account_id"].astype(str).tolist()
        chosen = [a for a in held_out_accounts(members, share) if a not in in_holdout]
        own = events[events["account_id"].isin(set(chosen))]
        shift = week_shift(own["ts"].max(), latest) if len(own) else 0
        if shift:
            own = own.assign(ts=own["ts"] - shift * WEEK)
        ext_events.append(own)
        lab = labels[labels["account_id"].isin(set(chosen))].copy()
        lab["evaluated"] = True
        ext_labels.append(lab)
        added.append(CampaignExtension(campaign, len(chosen), len(members) - len(chosen), shift))
    if not added:
        return holdout, [], events.iloc[:0], labels.iloc[:0].assign(evaluated=pd.Series(dtype=bool))
    new_events = pd.concat(ext_events, ignore_index=True)
    new_labels = pd.concat(ext_labels, ignore_index=True)
    return with_extension(holdout, new_events, new_labels, added), added, new_events, new_labels


def with_extension(holdout: Holdout, events: pd.DataFrame, labels: pd.DataFrame,
                   added: list[CampaignExtension]) -> Holdout:
    """The hold-out whose population and labels also hold `events` and `labels` (new campaigns' accounts)."""
    population = pd.concat([holdout.population, events], ignore_index=True).sort_values("ts", kind="stable",
                                                                                         ignore_index=True)
    held = pd.concat([holdout.labels, labels[holdout.labels.columns]], ignore_index=True)
    # an account that was context in the core population keeps its events there once
    population = population.drop_duplicates(["account_id", "ts", "prompt"], ignore_index=True)
    info = dict(holdout.info)
    info.setdefault("core_note", holdout.note)
    info["extensions"] = list(info.get("extensions", [])) + [a.to_dict() for a in added]
    info["known_campaigns"] = sorted(set(info.get("known_campaigns", [])) | {a.campaign for a in added})
    names = ", ".join(f"{e['campaign']} ({e['held_out']} accounts)" for e in info["extensions"])
    return Holdout(holdout.kind, population, held.reset_index(drop=True), holdout.cutoff,
                   f"{info['core_note']}; newly labelled campaigns added to it since: {names}", info)


def known_campaigns(holdout: Holdout, events: pd.DataFrame, labels: pd.DataFrame) -> set[str]:
    """The campaigns of the data the hold-out was frozen from (recorded when it was frozen). A hold-out
    frozen by an older version did not record them: its own labels' campaigns and those of accounts
    active in its training period (before the cutoff) stand in for them."""
    if "known_campaigns" in holdout.info:
        return set(holdout.info["known_campaigns"])
    known = set(holdout.labels["campaign"].astype(str))
    if holdout.cutoff is not None:
        early = set(events.loc[events["ts"] < holdout.cutoff, "account_id"])
        known |= set(labels.loc[labels["account_id"].isin(early), "campaign"].astype(str))
    else:
        known |= set(labels["campaign"].astype(str))
    return known


def new_campaign_figures(extensions: list[dict], added_now: set[str], candidate_oot: dict,
                         champion_oot: dict | None, champion_version: str | None) -> dict[str, dict]:
    """Per campaign added to the hold-out: how many accounts are held out, and the recall at 1% FPR and
    the share flagged, of the candidate (after) and of the champion on the same hold-out (before; None
    without a champion). Figures from the out-of-time sections' `by_campaign` breakdowns."""
    out = {}
    for e in extensions:
        name = e["campaign"]
        after = candidate_oot.get("by_campaign", {}).get(name, {})
        before = (champion_oot or {}).get("by_campaign", {}).get(name, {})
        out[name] = {"held_out": int(e["held_out"]), "trained_when_added": int(e["trained"]),
                     "added_this_run": name in added_now, "champion_version": champion_version,
                     "recall_at_1pct_fpr": after.get("recall_at_1pct_fpr", float("nan")),
                     "flagged": after.get("flagged", float("nan")),
                     "champion_recall_at_1pct_fpr": before.get("recall_at_1pct_fpr", float("nan")),
                     "champion_flagged": before.get("flagged", float("nan"))}
    return out

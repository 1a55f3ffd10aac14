"""The simulator's organic side is as messy as live traffic: texts shared by unrelated users with a
heavy-tailed multiplicity, weeks that drift, whole client populations without optional fields,
many brand-new light accounts; and adaptive harvesters whose timing is an organic person's.
Each claim is checked with the statistics in `data.traffic_stats`, not with row counts."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import ks_2samp

from distillguard.data import traffic_stats as TS
from distillguard.data.simulator import plan_accounts, simulate
from distillguard.data.simulator_config import ORGANIC_ARCHETYPES, SimulatorConfig
from distillguard.features.templating import skeleton_keys

CONFIG = SimulatorConfig(accounts=1500, seed=7)
CUTOFF = pd.Timestamp(CONFIG.start) + pd.Timedelta(days=CONFIG.days - 14)


@pytest.fixture(scope="module")
def world():
    sim = simulate(CONFIG)
    events = sim.events.merge(sim.labels, on="account_id")
    return sim, events


@pytest.fixture(scope="module")
def organic(world) -> pd.DataFrame:
    _, events = world
    return events[events["campaign"].isin(ORGANIC_ARCHETYPES)]


def test_shared_organic_texts_have_a_heavy_tailed_multiplicity(organic):
    multiplicity = TS.text_multiplicity(organic)
    for week in multiplicity.index.get_level_values(0).unique():
        hist = TS.multiplicity_histogram(multiplicity.loc[week])
        total = sum(hist.values())
        assert hist["1"] / total > 0.8, hist  # most texts are sent by one account
        assert hist["2-10"] / total > 0.03, hist  # many by a handful
        assert hist["11-99"] + hist["100-999"] >= 12, hist  # and a tail that reaches far
        assert multiplicity.loc[week].max() >= 60, hist


def test_texts_are_shared_within_cohorts_and_across_the_whole_user_base(organic):
    plans, _ = plan_accounts(CONFIG)
    cohort = pd.Series({p.account_id: p.cohort for p in plans})
    senders = organic[["prompt", "account_id"]].drop_duplicates()
    senders = senders.assign(cohort=senders["account_id"].map(cohort))
    per_text = senders.groupby("prompt").agg(n=("account_id", "size"),
                                             top=("cohort", lambda c: c.value_counts(dropna=True).max() if
                                                  c.notna().any() else 0),
                                             groups=("cohort", lambda c: c.nunique(dropna=True)))
    shared = per_text[per_text["n"] >= 3]
    # a class's homework or a bootcamp's questions: sent by several accounts, nearly all of one cohort
    assert ((shared["top"] / shared["n"]) >= 0.8).sum() >= 20
    # a viral prompt or a greeting: sent by members of many different cohorts and by non-members
    assert (shared["groups"] >= 10).sum() >= 10


def test_tutorial_templates_share_a_wrapper_across_unrelated_accounts_with_their_own_payloads(organic):
    texts = organic.drop_duplicates(["prompt", "account_id"])
    tails = texts.assign(tail=[skeleton_keys(p)[1] for p in texts["prompt"]]).dropna(subset=["tail"])
    per_tail = tails.groupby("tail").agg(accounts=("account_id", "nunique"), texts=("prompt", "nunique"))
    # "... Let's think step by step." and its kind: one closing run, many accounts, many different payloads
    assert ((per_tail["accounts"] >= 20) & (per_tail["texts"] >= 20)).sum() >= 2


def _words(prompts: pd.Series) -> set[str]:
    return {w for p in prompts for w in re.findall(r"[a-z]+", p.lower())}


def test_a_later_period_brings_new_texts_and_new_words():
    later_new_word_share = {}
    for drift in (0.0, 0.6):
        cfg = SimulatorConfig(accounts=800, seed=9, weekly_drift=drift)
        sim = simulate(cfg)
        ev = sim.events.merge(sim.labels, on="account_id")
        org = ev[ev["campaign"].isin(ORGANIC_ARCHETYPES)]
        first = org.groupby("account_id")["ts"].min()
        newcomers = first[first >= CUTOFF].index
        overlap = TS.later_period_overlap(org, CUTOFF, newcomers)
        # the later period's new organic users send mostly texts no earlier week contains
        assert overlap["event_share_seen_before"] < 0.5, overlap
        assert overlap["text_share_seen_before"] < 0.3, overlap
        seen = _words(org.loc[org["ts"] < CUTOFF, "prompt"])
        later = org.loc[org["ts"] >= CUTOFF, "prompt"]
        later_new_word_share[drift] = later.map(lambda p: bool(set(re.findall(r"[a-z]+", p.lower())) - seen)).mean()
    # with drift, a good share of later prompts talk about things that did not exist before
    assert later_new_word_share[0.6] > 0.1 > later_new_word_share[0.0] + 0.05, later_new_word_share


def test_optional_fields_are_missing_for_whole_client_populations(world, organic):
    _, events = world
    shares = TS.missing_field_shares(organic)
    assert 1 / 3 <= shares["conversation_id"] <= 1 / 2, shares  # API/SDK users send no conversation id
    assert shares["ip"] >= 0.1 and shares["payment_fingerprint"] >= 0.1, shares
    optional = ["conversation_id", "ip", "asn", "payment_fingerprint", "user_agent"]
    only_key = events.groupby("account_id")[optional].agg(lambda c: c.isna().all()).all(axis=1)
    labels = events.groupby("account_id")["label"].first()
    # a gateway that knows only the key's hash: every optional field but the model is absent
    for label in (0, 1):
        assert only_key[labels == label].mean() >= 0.04, label


def test_many_accounts_are_new_and_light(world):
    _, events = world
    per = events.groupby("account_id").agg(n=("prompt", "size"), first=("ts", "min"), label=("label", "first"),
                                           campaign=("campaign", "first"))
    org = per[per["campaign"].isin(ORGANIC_ARCHETYPES)]
    assert (org["n"] <= 5).mean() >= 0.25
    assert (per["first"] >= CUTOFF).mean() >= 0.15  # signed up in the last two weeks


@pytest.fixture(scope="module")
def adaptive_world():
    cfg = SimulatorConfig(accounts=1200, seed=5, all_campaigns_adaptive=True, hard_benign_fraction=0.0,
                          harvest_fraction=0.2)
    sim = simulate(cfg)
    return cfg, sim


TIMING = ["volume", "interarrival_cv", "quiet_8h_share", "hour_entropy", "active_days", "prompts_per_active_day",
          "multi_turn_share"]


def _timing_by_class(sim) -> tuple[pd.DataFrame, pd.DataFrame]:
    timing = TS.account_timing(sim.events).join(sim.labels.set_index("account_id"))
    return timing[timing["label"] == 0], timing[timing["label"] == 1]


def test_adaptive_harvesters_time_their_prompts_like_organic_people(adaptive_world):
    _, sim = adaptive_world
    organic, harvest = _timing_by_class(sim)
    assert len(harvest) >= 150
    for stat in TIMING:
        res = ks_2samp(organic[stat].dropna(), harvest[stat].dropna())
        assert res.pvalue > 0.01, (stat, res)
    # the same statistics tell scripted campaigns apart at once
    scripted = simulate(SimulatorConfig(accounts=1200, seed=5, adaptive_campaign_share=0.0, hard_benign_fraction=0.0,
                                        harvest_fraction=0.2))
    organic_s, harvest_s = _timing_by_class(scripted)
    assert ks_2samp(organic_s["quiet_8h_share"], harvest_s["quiet_8h_share"]).pvalue < 1e-6


def test_adaptive_harvesters_keep_what_they_ask_and_their_clean_metadata(adaptive_world):
    cfg, sim = adaptive_world
    plans, campaigns = plan_accounts(cfg)
    assert all(c.adaptive for c in campaigns)
    ev = sim.events.assign(intent=sim.intent.to_numpy()).merge(sim.labels, on="account_id")
    harvest = ev[ev["label"] == 1]
    hydra_mix = {c.name: c.hydra_mix for c in campaigns}
    fresh = harvest[harvest["intent"] != "follow_up"]
    capability = fresh.groupby("campaign")["intent"].apply(lambda s: (s == "capability").mean())
    expected = 1 - capability.index.map(hydra_mix)
    assert np.abs(capability.to_numpy() - np.asarray(expected)).max() < 0.12
    # clean metadata: no IP or payment card shared with any other account
    for col in ("ip", "payment_fingerprint"):
        owners = ev.dropna(subset=[col]).groupby(col)["account_id"].nunique()
        used = harvest[col].dropna().unique()
        assert (owners.loc[used] == 1).all(), col


def test_realism_knobs_are_validated_with_the_field_named():
    with pytest.raises(ValidationError, match="popular_text_rate"):
        SimulatorConfig(popular_text_rate=(0.5, 0.1))
    with pytest.raises(ValidationError, match="weekly_drift"):
        SimulatorConfig(weekly_drift=2.0)
    with pytest.raises(ValidationError, match="at most 0.95"):
        SimulatorConfig(popular_text_rate=(0.1, 0.5), cohort_rate=(0.1, 0.5))

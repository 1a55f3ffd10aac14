"""The simulator's claims about each archetype, checked on generated traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from distillguard.data.simulator import HARVEST, plan_accounts, simulate
from distillguard.data.simulator_config import SimulatorConfig

RELEASE_DAY = 16.0
ORGANIC = ["casual", "student", "writer", "developer", "researcher", "professional"]


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulatorConfig(accounts=600, seed=3, release_day=RELEASE_DAY))


@pytest.fixture(scope="module")
def merged(sim) -> pd.DataFrame:
    return sim.events.assign(intent=sim.intent).merge(sim.labels, on="account_id")


def _quietest_window_share(hours: pd.Series, width: int = 8) -> float:
    """Share of an account's prompts in its quietest `width`-hour window of the day (uniform: width/24)."""
    counts = np.bincount(hours.to_numpy(), minlength=24).astype(float)
    counts /= counts.sum()
    return min(counts[np.arange(i, i + width) % 24].sum() for i in range(24))


def test_same_seed_same_traffic_and_other_seed_other_traffic():
    cfg = SimulatorConfig(accounts=120, seed=11)
    a, b = simulate(cfg), simulate(cfg)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    c = simulate(SimulatorConfig(accounts=120, seed=12))
    assert set(c.events["prompt"]) != set(a.events["prompt"])


def test_events_follow_the_contract(sim):
    e = sim.events
    assert str(e["ts"].dt.tz) == "UTC"
    assert e["account_id"].str.len().gt(0).all()
    assert e["prompt"].str.strip().str.len().gt(0).all()
    assert set(sim.labels["label"]) == {0, 1}
    assert set(e["account_id"]) == set(sim.labels["account_id"])
    # account ids carry no hint of the class: one format for everybody
    assert sim.labels["account_id"].str.fullmatch(r"acct_[0-9a-f]{10}").all()


def test_every_archetype_and_campaign_style_is_present(sim):
    campaigns = set(sim.labels["campaign"])
    for arch in ("casual", "student", "writer", "developer", "researcher", "professional",
                 "eval_runner", "coding_agent", "support_bot", "data_labelling"):
        assert arch in campaigns
    styles = {c.rsplit("-", 1)[0] for c in sim.labels.loc[sim.labels["label"] == 1, "campaign"]}
    assert styles == {"reasoning", "agentic_coding", "rubric_grading", "safe_rewrite", "capability_sweep"}


def test_campaign_accounts_share_wrapper_templates_across_accounts():
    cfg = SimulatorConfig(accounts=600, seed=3)
    plans, campaigns = plan_accounts(cfg)
    sim = simulate(cfg)
    prompts = sim.events.merge(sim.labels, on="account_id")
    checked = 0
    for camp in campaigns:
        members = prompts[prompts["campaign"] == camp.name]
        if members["account_id"].nunique() < 3:
            continue
        fragments = {w.prefix for w in camp.wrappers if len(w.prefix) > 15} | \
                    {w.suffix for w in camp.wrappers if len(w.suffix) > 15}
        best = max(members.loc[members["prompt"].str.contains(f, regex=False), "account_id"].nunique()
                   for f in fragments)
        assert best >= 2, f"{camp.name}: no wrapper is used by two of its accounts"
        checked += 1
    assert checked >= 3


def _scripted_campaigns() -> set[str]:
    """Campaigns whose accounts keep a script's timing (neither diurnal mimicry nor adaptive)."""
    _, campaigns = plan_accounts(SimulatorConfig(accounts=600, seed=3, release_day=RELEASE_DAY))
    return {c.name for c in campaigns if c.schedule == "diurnal_mimicry" or c.adaptive}


def test_campaign_timing_has_no_day_night_cycle_while_organic_timing_does(merged):
    mimics = _scripted_campaigns()
    m = merged[~merged["campaign"].isin(mimics)].assign(hour=merged["ts"].dt.hour)
    active = m.groupby("account_id").filter(lambda d: len(d) >= 30)
    share = active.groupby("account_id").agg(q=("hour", _quietest_window_share), label=("label", "first"),
                                              campaign=("campaign", "first"))
    organic = share[share["campaign"].isin(["casual", "student", "writer", "developer", "researcher",
                                            "professional"])]
    harvest = share[share["label"] == 1]
    assert len(organic) >= 10 and len(harvest) >= 5
    # uniform activity puts 8/24 = 0.33 of prompts in any 8-hour window; people sleep
    assert harvest["q"].median() > 0.22
    assert organic["q"].median() < 0.10


def test_campaign_interarrival_is_steadier_than_organic(merged):
    def cv(ts: pd.Series) -> float:
        gaps = np.diff(np.sort(ts.astype("int64").to_numpy())) / 1e6
        return float(gaps.std() / gaps.mean()) if len(gaps) > 5 and gaps.mean() > 0 else np.nan

    mimics = _scripted_campaigns()
    per = merged[~merged["campaign"].isin(mimics)].groupby("account_id").agg(cv=("ts", cv), label=("label", "first"))
    assert per.loc[per["label"] == 1, "cv"].median() < 1.0 < per.loc[per["label"] == 0, "cv"].median()


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6])
def test_hydra_mixing_ratio_holds_within_tolerance(ratio):
    sim = simulate(SimulatorConfig(accounts=400, seed=5, hydra_mix=(ratio, ratio)))
    m = sim.events.assign(intent=sim.intent).merge(sim.labels, on="account_id")
    fresh = m[(m["label"] == 1) & (m["intent"] != "follow_up")]
    observed = (fresh["intent"] == "hydra").mean()
    assert abs(observed - ratio) < 0.03, observed
    # the mixed-in prompts look organic: they come from the same grammars (no wrapper fragments)
    if ratio:
        hydra = fresh.loc[fresh["intent"] == "hydra", "prompt"]
        assert not hydra.str.contains("Final answer:|<answer>|act as an impartial judge", regex=True).any()


def test_organic_volume_is_heavy_tailed_and_campaigns_include_low_and_slow(merged):
    volume = merged.groupby("account_id").agg(n=("prompt", "size"), label=("label", "first"))
    organic, harvest = volume[volume["label"] == 0]["n"], volume[volume["label"] == 1]["n"]
    assert organic.max() > 15 * organic.median()
    assert (harvest < 60).mean() > 0.15  # low-and-slow accounts exist


def test_organic_conversations_have_follow_ups_that_refer_back(merged):
    org = merged[merged["campaign"].isin(["casual", "student", "writer", "developer"])]
    turns = org.dropna(subset=["conversation_id"]).groupby("conversation_id").size()
    assert (turns > 1).mean() > 0.2
    follow = org[org["intent"] == "follow_up"].sort_values("ts")
    assert len(follow) > 50
    # a follow-up belongs to a conversation that already had a turn before it
    first_ts = org.groupby("conversation_id")["ts"].min()
    f = follow.dropna(subset=["conversation_id"])
    assert (f["ts"].to_numpy() > first_ts.loc[f["conversation_id"]].to_numpy()).all()


def test_campaigns_pivot_to_a_new_model_within_a_day_of_release(merged):
    cfg = SimulatorConfig()
    release = pd.Timestamp(cfg.start) + pd.Timedelta(days=RELEASE_DAY)
    assert merged.loc[merged["model"] == cfg.new_model, "ts"].min() >= release
    later = merged[merged["ts"] > release + pd.Timedelta(days=1)]
    per = later.groupby("account_id").agg(new_share=("model", lambda s: (s == cfg.new_model).mean()),
                                          n=("model", "size"), label=("label", "first"),
                                          campaign=("campaign", "first"))
    per = per[per["n"] >= 3]
    _, campaigns = plan_accounts(SimulatorConfig(accounts=600, seed=3, release_day=RELEASE_DAY))
    adaptive = {c.name for c in campaigns if c.adaptive}  # they copy a person's model choice
    harvest = per[(per["label"] == 1) & ~per["campaign"].isin(adaptive)]
    people = per[per["campaign"].isin(["casual", "student", "writer", "developer", "researcher", "professional"])]
    assert len(harvest) >= 10
    # a pivoting campaign moves everything to the new model within a day; people drift over weeks
    assert (harvest["new_share"] == 1.0).mean() > 0.6
    assert (people["new_share"] == 1.0).mean() < 0.2


def test_shared_infrastructure_for_some_campaigns_and_none_for_clean_ones():
    cfg = SimulatorConfig(accounts=800, seed=4)
    _, campaigns = plan_accounts(cfg)
    sim = simulate(cfg)
    m = sim.events.merge(sim.labels, on="account_id")
    ip_accounts = m.groupby("ip")["account_id"].nunique()
    infra = {c.name: c.infra for c in campaigns if not c.adaptive}  # adaptive ones copy a person's metadata
    saw_shared = saw_clean = False
    for name, mode in infra.items():
        members = m[m["campaign"] == name]
        if members["ip"].notna().groupby(members["account_id"]).any().sum() < 3:
            continue
        shared_ips = (ip_accounts.loc[members["ip"].dropna().unique()] > 1).mean()
        if mode == "shared_proxy":
            assert shared_ips > 0.5
            assert members["payment_fingerprint"].nunique() < members["account_id"].nunique()
            saw_shared = True
        elif mode == "clean":
            assert shared_ips == 0
            saw_clean = True
    assert saw_shared and saw_clean


def test_hard_benign_archetypes_look_like_scripts_too(merged):
    eval_runs = merged[merged["campaign"] == "eval_runner"]
    assert eval_runs["prompt"].str.contains("Answer:|Let's think step by step|def solution", regex=True).mean() > 0.5
    bots = merged[merged["campaign"] == "support_bot"]
    # a support bot repeats its fixed template: its prompts share a long common prefix
    first_words = bots.groupby("account_id")["prompt"].agg(lambda s: s.str[:30].nunique() / len(s))
    assert first_words.median() < 0.2


def test_invalid_config_names_the_field():
    with pytest.raises(ValidationError, match="campaign_styles"):
        SimulatorConfig(campaign_styles=("reasoning", "mind_control"))
    with pytest.raises(ValidationError, match="hydra_mix"):
        SimulatorConfig(hydra_mix=(0.5, 0.2))
    with pytest.raises(ValidationError, match="accounts"):
        SimulatorConfig(accounts=3)


def test_planned_campaign_members_are_labelled_as_harvest():
    plans, _ = plan_accounts(SimulatorConfig(accounts=300, seed=1))
    for p in plans:
        assert (p.label == 1) == (p.archetype == HARVEST) == (p.campaign is not None)

"""The hold-outs that see what live traffic will do: out of time as a whole population, the
adaptive copy and the cold-start cut, checked on a simulated world."""

from __future__ import annotations

import pandas as pd
import pytest

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.training.holdouts import (
    OUT_OF_TIME, SINGLE_PERIOD, HoldoutRules, adaptive_copy, cold_start_cut, cold_start_prompts,
    out_of_time_holdout, training_events,
)


@pytest.fixture(scope="module")
def world():
    sim = simulate(SimulatorConfig(accounts=700, seed=13, adaptive_campaign_share=0.0))
    return sim.events, sim.labels


@pytest.fixture(scope="module")
def holdout(world):
    events, labels = world
    return out_of_time_holdout(events, labels)


def test_the_out_of_time_hold_out_is_the_whole_later_period_and_evaluates_only_newcomers(world, holdout):
    events, labels = world
    assert holdout.kind == OUT_OF_TIME
    later = events[events["ts"] >= holdout.cutoff]
    # the whole population of the later period is scored, every account active in it
    assert len(holdout.population) == len(later)
    assert set(holdout.population["account_id"]) == set(later["account_id"])
    first_seen = events.groupby("account_id")["ts"].min()
    evaluated = holdout.evaluated
    assert (first_seen.loc[evaluated["account_id"]] >= holdout.cutoff).all()
    returning = holdout.labels.loc[~holdout.labels["evaluated"], "account_id"]
    assert len(returning) > 0 and (first_seen.loc[returning] < holdout.cutoff).all()
    assert set(evaluated["label"]) == {0, 1}
    # nothing fitted may see the later period or an evaluated account
    train = training_events(events, holdout)
    assert train["ts"].max() < holdout.cutoff
    assert not set(train["account_id"]) & set(evaluated["account_id"])
    assert holdout.cutoff == holdout.cutoff.floor("D")
    assert "out of time" in holdout.note


def test_single_period_data_falls_back_loudly():
    sim = simulate(SimulatorConfig(accounts=200, seed=2, days=9, release_day=4))
    h = out_of_time_holdout(sim.events, sim.labels)
    assert h.kind == SINGLE_PERIOD and h.cutoff is None
    assert h.note.startswith("SINGLE PERIOD") and "9.0 days" in h.note
    assert set(h.population["account_id"]) == set(h.evaluated["account_id"])
    train = training_events(sim.events, h)
    assert not set(train["account_id"]) & set(h.evaluated["account_id"])
    # too few newcomers is a single period too
    h2 = out_of_time_holdout(sim.events, sim.labels, HoldoutRules(holdout_days=3, min_earlier_days=3,
                                                                  min_new_organic=10_000))
    assert h2.kind == SINGLE_PERIOD and "needed 10000" in h2.note


def test_adaptive_copy_keeps_what_harvesters_ask_and_takes_an_organic_persons_behaviour(holdout):
    pop, labels = holdout.population, holdout.labels
    copied = adaptive_copy(pop, labels, seed=1)
    lab = labels.set_index("account_id")["label"]
    is_h = copied["account_id"].map(lab).eq(1)
    assert len(copied) == len(pop)
    before = pop.assign(label=pop["account_id"].map(lab))
    # organic and unlabelled accounts are untouched
    keep_cols = ["account_id", "ts", "prompt", "conversation_id", "model", "ip"]
    untouched = copied.loc[~is_h, keep_cols].sort_values(["account_id", "ts"]).reset_index(drop=True)
    orig = before.loc[before["label"] != 1, keep_cols].sort_values(["account_id", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(untouched.astype(str), orig.astype(str))
    organic = pop[pop["account_id"].map(lab).eq(0)]
    organic_ts = set(organic["ts"])
    for acc, own in copied[is_h].groupby("account_id"):
        src = pop[pop["account_id"] == acc].sort_values("ts", kind="stable")
        mine = own.sort_values("ts", kind="stable")
        # the same prompts in the same order
        assert mine["prompt"].tolist() == src["prompt"].tolist()
        # timestamps are an organic account's (a contiguous run of one donor's stream)
        assert set(mine["ts"]) <= organic_ts
        donors = organic[organic["ts"].isin(set(mine["ts"]))]["account_id"].value_counts()
        assert donors.iloc[0] == len(mine)
        donor = organic[organic["account_id"] == donors.index[0]].sort_values("ts")
        # the donor's missing fields stay missing, present ones are renamed to the harvester's own
        run = donor[donor["ts"].isin(set(mine["ts"]))]
        for col in ("conversation_id", "ip", "payment_fingerprint"):
            assert mine[col].isna().sum() == run[col].isna().sum(), col
            assert not set(mine[col].dropna()) & set(donor[col].dropna()), col
        assert mine["model"].tolist() == run["model"].tolist()


def test_cold_start_keeps_each_accounts_first_one_to_three_prompts(holdout):
    cut = cold_start_cut(holdout.population, seed=3)
    sizes = cut.groupby("account_id").size()
    assert set(sizes.unique()) <= {1, 2, 3} and len(set(sizes.unique())) == 3
    full = holdout.population.sort_values(["account_id", "ts"], kind="stable")
    for acc in sizes.index[:50]:
        k = cold_start_prompts(acc, 3)
        expected = full[full["account_id"] == acc].head(k)["prompt"].tolist()
        assert cut[cut["account_id"] == acc].sort_values("ts", kind="stable")["prompt"].tolist() == expected

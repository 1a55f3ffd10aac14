"""A newly labelled campaign joins the frozen hold-out: which accounts, how they are stored beside the
frozen core, what training may still see. Small frames, real files."""

from __future__ import annotations

import pandas as pd

from distillguard.data.input_sets import combine_events, combine_labels
from distillguard.training.holdout_extension import (
    extend_holdout, held_out_accounts, known_campaigns, new_campaigns, week_shift,
)
from distillguard.training.holdout_store import load_or_freeze, save_extension
from distillguard.training.holdouts import HoldoutRules, arrived_later, training_events

T0 = pd.Timestamp("2026-03-02", tz="UTC")


def _events(accounts: list[str], start_day: float, days: int) -> pd.DataFrame:
    rows = [{"account_id": a, "ts": T0 + pd.Timedelta(days=start_day + d, hours=i % 20), "prompt": f"{a} asks {d}"}
            for i, a in enumerate(accounts) for d in range(days)]
    return pd.DataFrame(rows)


def _world():
    """Four weeks of a first world (organic o*, campaign old-1 h*), then a new campaign n* two weeks later."""
    early = _events([f"o{i}" for i in range(30)] + [f"h{i}" for i in range(6)], 0, 14)
    late_org = _events([f"p{i}" for i in range(30)], 16, 10)  # first active in the hold-out's period
    late_h = _events([f"g{i}" for i in range(4)], 16, 10)
    first = pd.concat([early, late_org, late_h], ignore_index=True)
    labels = pd.DataFrame({"account_id": [f"o{i}" for i in range(30)] + [f"p{i}" for i in range(30)]
                           + [f"h{i}" for i in range(6)] + [f"g{i}" for i in range(4)],
                           "label": [0] * 60 + [1] * 10, "campaign": ["casual"] * 60 + ["old-1"] * 10})
    new = _events([f"n{i}" for i in range(20)], 30, 7)
    new_labels = pd.DataFrame({"account_id": [f"n{i}" for i in range(20)], "label": 1, "campaign": "spring-wave"})
    return first, labels, new, new_labels


def test_the_held_out_share_is_fixed_by_the_account_ids_alone():
    ids = [f"acct_{i}" for i in range(36)]
    chosen = held_out_accounts(ids)
    assert len(chosen) == 11 and set(chosen) <= set(ids)
    assert held_out_accounts(list(reversed(ids))) == chosen  # order of the input does not matter
    assert held_out_accounts(["a"]) == [] and len(held_out_accounts(["a", "b"])) == 1


def test_only_harvesting_campaigns_the_hold_out_did_not_know_are_new():
    labels = pd.DataFrame({"account_id": list("abcd"), "label": [1, 1, 0, 1],
                           "campaign": ["old-1", "spring", "student", "old-1"]})
    assert new_campaigns(labels, {"old-1", "casual"}) == ["spring"]


def test_events_are_moved_back_by_whole_weeks_only_when_they_would_leave_the_window():
    end = pd.Timestamp("2026-04-12", tz="UTC")
    assert week_shift(end, end) == 0
    assert week_shift(end + pd.Timedelta(days=1), end) == 1
    assert week_shift(end + pd.Timedelta(days=15), end) == 3


def test_a_new_campaign_joins_the_frozen_hold_out_and_stays_there(tmp_path):
    first, labels, new, new_labels = _world()
    rules = HoldoutRules(holdout_days=14, min_earlier_days=7, min_new_organic=5, min_new_harvest=2)
    core, created = load_or_freeze(tmp_path, first, labels, rules, seed=0, log=lambda m: None)
    assert created and core.info["known_campaigns"] == ["casual", "old-1"]
    events = pd.concat([first, new], ignore_index=True)
    all_labels = pd.concat([labels, new_labels], ignore_index=True)
    known = known_campaigns(core, events, all_labels)
    ext, added, ext_events, ext_labels = extend_holdout(core, events, all_labels, known, window_days=42)
    assert [(a.campaign, a.held_out, a.trained, a.shift_weeks) for a in added] == [("spring-wave", 6, 14, 0)]
    held = set(ext_labels["account_id"])
    assert held == set(held_out_accounts(new_labels["account_id"].tolist()))
    assert set(ext.evaluated["account_id"]) == set(core.evaluated["account_id"]) | held
    assert set(ext.population["account_id"]) == set(core.population["account_id"]) | held
    # training sees the campaign's other accounts whole, never a held-out one
    later = arrived_later(events, ext, set(all_labels["account_id"]))
    assert later == set(new_labels["account_id"]) - held
    assert not set(training_events(events, ext)["account_id"]) & held

    save_extension(tmp_path, ext_events, ext_labels, added)
    again, created = load_or_freeze(tmp_path, events, all_labels, rules, seed=0, log=lambda m: None)
    assert not created
    assert set(again.evaluated["account_id"]) == set(ext.evaluated["account_id"])
    assert "spring-wave (6 accounts)" in again.note
    # the core files are the ones frozen first
    assert set(pd.read_csv(tmp_path / "holdout/labels.csv")["account_id"]) == set(core.labels["account_id"])
    # a later run finds nothing new: the campaign is known now
    assert extend_holdout(again, events, all_labels, known_campaigns(again, events, all_labels))[1] == []


def test_a_campaign_labelled_months_later_is_scored_inside_the_hold_outs_window(tmp_path):
    first, labels, new, new_labels = _world()
    rules = HoldoutRules(holdout_days=14, min_earlier_days=7, min_new_organic=5, min_new_harvest=2)
    core, _ = load_or_freeze(tmp_path, first, labels, rules, seed=0, log=lambda m: None)
    months = new.assign(ts=new["ts"] + pd.Timedelta(days=120))
    ext, added, _, _ = extend_holdout(core, pd.concat([first, months]), pd.concat([labels, new_labels]),
                                      {"casual", "old-1"}, window_days=42)
    shift = added[0].shift_weeks
    assert shift > 0
    newest = ext.population.groupby("account_id")["ts"].max()
    assert newest.min() >= ext.population["ts"].max() - pd.Timedelta(days=42)


def test_several_files_combine_with_the_later_label_winning():
    a = pd.DataFrame({"account_id": ["x", "y"], "label": [0, 0], "campaign": ["casual", "casual"]})
    b = pd.DataFrame({"account_id": ["y"], "label": [1], "campaign": ["spring"]})
    combined = combine_labels([a, b])
    assert combined.repeated == 1
    assert combined.frame.set_index("account_id").loc["y", "campaign"] == "spring"
    ev = _events(["x"], 0, 3)
    both = combine_events([ev, ev.iloc[:1]])
    assert both.repeated == 1 and len(both.frame) == 3

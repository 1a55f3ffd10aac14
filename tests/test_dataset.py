"""Splits and campaign styles used by training."""

import pandas as pd
import pytest

from distillguard.training.dataset import TrainingDataError, campaign_style, check_labels, stratified_split


def test_campaign_style_groups_numbered_campaigns():
    assert campaign_style("reasoning-2") == "reasoning"
    assert campaign_style("acme proxy farm") == "acme proxy farm"
    assert campaign_style("casual") == "casual"


def test_stratified_split_is_disjoint_deterministic_and_covers_every_group():
    labels = pd.DataFrame({"account_id": [f"a{i}" for i in range(100)],
                           "label": [1] * 20 + [0] * 80,
                           "campaign": ["c-1"] * 10 + ["c-2"] * 10 + ["casual"] * 50 + ["eval_runner"] * 30})
    s1 = stratified_split(labels, seed=3)
    s2 = stratified_split(labels, seed=3)
    assert s1 == s2
    parts = [set(s1.train), set(s1.validation), set(s1.holdout)]
    assert sum(map(len, parts)) == 100 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for part in parts:
        assert set(labels.set_index("account_id").loc[sorted(part), "campaign"]) == {"c-1", "c-2", "casual", "eval_runner"}
    frozen = stratified_split(labels, seed=3, frozen_holdout={"a0", "a50"})
    assert frozen.holdout == ["a0", "a50"]


def test_check_labels_refuses_unknown_accounts_and_a_single_class():
    events = pd.DataFrame({"account_id": ["a", "b"]})
    with pytest.raises(TrainingDataError, match="no events"):
        check_labels(events, pd.DataFrame({"account_id": ["a", "zz"], "label": [0, 1], "campaign": ["x", "y"]}))
    with pytest.raises(TrainingDataError, match="both classes"):
        check_labels(events, pd.DataFrame({"account_id": ["a", "b"], "label": [0, 0], "campaign": ["x", "x"]}))

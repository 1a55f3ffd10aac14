"""The promotion gate: out-of-time recall must beat the champion's, organic accounts blocked must stay
at or under 0.1%, and adaptive recall must not fall."""

from __future__ import annotations

from distillguard.training.promotion import judge


def figures(recall=0.9, pr=0.8, blocked=0.0, adaptive=0.8):
    return {"oot.recall_at_1pct_fpr": recall, "oot.pr_auc": pr, "oot.organic_blocked": blocked,
            "adaptive.recall_at_1pct_fpr": adaptive}


def test_a_better_candidate_that_keeps_the_promises_is_promoted():
    d = judge(figures(recall=0.95), figures(), version="2", champion_version="1")
    assert d.promote and "beats champion v1" in d.text and not d.misses


def test_a_candidate_that_blocks_too_many_organic_accounts_is_refused_even_if_it_catches_more():
    d = judge(figures(recall=0.99, blocked=0.004), figures(), version="2", champion_version="1")
    assert not d.promote and "organic_blocked 0.40% > 0.1%" in d.text


def test_a_candidate_that_loses_adaptive_recall_is_refused():
    d = judge(figures(recall=0.99, adaptive=0.5), figures(adaptive=0.8), version="2", champion_version="1")
    assert not d.promote and "adaptive.recall_at_1pct_fpr 0.500 < champion's 0.800" in d.text


def test_ties_go_to_pr_auc_and_a_worse_candidate_is_refused():
    assert judge(figures(pr=0.85), figures(), version="2", champion_version="1").promote
    d = judge(figures(recall=0.7), figures(), version="2", champion_version="1")
    assert not d.promote and "does not beat v1" in d.text


def test_the_first_candidate_is_promoted_with_a_warning_naming_what_it_misses():
    d = judge(figures(blocked=0.03), None, version="1", champion_version=None)
    assert d.promote and "WARNING" in d.text and "oot.organic_blocked 3.00% > 0.1%" in d.text
    assert d.misses
    clean = judge(figures(), None, version="1", champion_version=None)
    assert clean.promote and "WARNING" not in clean.text

"""The pure feature functions measure what they claim, on controlled inputs."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.features import coordination as C
from distillguard.features import temporal as TM
from distillguard.features import templating as TP
from distillguard.features.account_features import prada_normality
from distillguard.features.catalog import FEATURE_NAMES, FEATURES, markdown_table
from distillguard.features.elicitation import prompt_segments


def _unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_wrapped_account_scores_higher_on_skeleton_rate_than_varied_prompts():
    problems = [f"A train leaves at {h} and another at {h + 2}; when do they meet?" for h in range(1, 30)]
    wrapped = [f"Walk me through your thinking in full detail. {p} Conclude with the result on its own line."
               for p in problems]
    varied = ["what's a good pasta recipe for four people tonight", "help me write a birthday card for my aunt",
              "why is the sky blue during the day but red at sunset", "compare renting and buying a flat in lisbon",
              "explain what a mortgage offset account is", "give me a short poem about autumn leaves falling",
              "how do i fix a leaking kitchen tap without tools", "draft an email asking my boss for friday off"] * 3
    assert TP.skeleton_rate([TP.skeleton_keys(p) for p in wrapped]) > 0.9
    assert TP.skeleton_rate([TP.skeleton_keys(p) for p in varied[:8]]) == 0.0
    # numbers are masked, so a wrapper around varying numbers still counts as one skeleton
    assert TP.skeleton_keys("Solve 12 + 7 and show each step of your work please")[0] == \
        TP.skeleton_keys("Solve 99 + 3 and show each step of your work please")[0]


def test_near_duplicates_and_pairwise_cosine():
    rng = np.random.default_rng(0)
    base = _unit(rng, 1)
    dupes = base + 0.05 * _unit(rng, 20)
    dupes /= np.linalg.norm(dupes, axis=1, keepdims=True)
    spread = _unit(rng, 20)
    assert TP.near_duplicate_rate(dupes) == 1.0
    assert TP.near_duplicate_rate(spread) == 0.0
    direct = (spread @ spread.T)[~np.eye(20, dtype=bool)].mean()
    assert TP.mean_pairwise_cosine(spread) == pytest.approx(direct, abs=1e-5)
    assert TP.mean_pairwise_cosine(dupes) > 0.9
    assert np.isnan(TP.near_duplicate_rate(spread[:1]))


def test_constant_rate_stream_is_steadier_and_rounder_the_clock_than_a_diurnal_one():
    rng = np.random.default_rng(1)
    steady = np.cumsum(rng.gamma(50, 600 / 50, size=500))  # every ~10 minutes, day and night
    days = rng.integers(0, 14, size=80)
    hours = rng.choice([9, 10, 11, 14, 15, 20, 21], size=80)
    diurnal = np.sort(np.concatenate([d * 86400 + h * 3600 + np.cumsum(rng.exponential(120, size=5))
                                      for d, h in zip(days, hours)]))
    cv_steady, b_steady = TM.interarrival_stats(steady)
    cv_diurnal, b_diurnal = TM.interarrival_stats(diurnal)
    assert cv_steady < 0.3 < 1.0 < cv_diurnal
    assert b_steady < 0 < b_diurnal
    assert TM.hour_entropy(TM.hour_profile(steady)) > 0.95 > 0.7 > TM.hour_entropy(TM.hour_profile(diurnal))
    assert TM.quietest_window_share(TM.hour_profile(steady)) > 0.25
    assert TM.quietest_window_share(TM.hour_profile(diurnal)) == 0.0


def test_new_model_adoption_delay():
    t = np.arange(0, 10 * 86400, 3600.0)
    models = np.where(t >= 5 * 86400 + 7200, "new", "old").astype(object)
    delay, share = TM.new_model_adoption(t, models, {"old": 0.0, "new": 5 * 86400.0}, "new")
    assert delay == pytest.approx(2.0)
    assert share == pytest.approx((models[t >= 5 * 86400] == "new").mean())
    assert np.isnan(TM.new_model_adoption(t, None, {}, None)[0])


def test_prada_normality_flags_a_stream_of_template_variants_with_occasional_jumps():
    rng = np.random.default_rng(2)
    random_stream = _unit(rng, 150)
    # a harvester: a few templates, each sent over and over with small payload changes
    templates = _unit(rng, 4)
    variants = templates[rng.integers(0, 4, size=150)] + 0.03 * rng.normal(size=(150, 32))
    templated = (variants / np.linalg.norm(variants, axis=1, keepdims=True)).astype(np.float32)
    assert prada_normality(random_stream) > 0.8 > 0.5 > prada_normality(templated)
    assert np.isnan(prada_normality(random_stream[:5]))


def test_accounts_sharing_a_template_land_in_one_component_and_others_stay_alone():
    template = "Grade this answer strictly from one to ten and explain the grade: {} Return only JSON."
    prompts, owners = [], []
    for a in range(4):  # four accounts of one operator share the wrapper
        for i in range(6):
            prompts.append(template.format(f"answer number {a * 10 + i} about topic {i}"))
            owners.append(a)
    loners = ["how do i bake bread at home with a dutch oven tonight", "tell me a joke about cats and dogs please",
              "what time zone is tokyo in compared to london today"]
    for a, text in enumerate(loners, start=4):
        for i in range(6):
            prompts.append(f"{text} version {i} with more words here")
            owners.append(a)
    codes = np.array(owners)
    keys = [TP.skeleton_keys(p) for p in prompts]
    links = C.skeleton_links(codes, keys, n_accounts=7)
    labels, sizes, neighbours = C.account_graph(links, [], 7)
    assert len(set(labels[:4])) == 1 and sizes[0] == 4
    assert list(sizes[4:]) == [1, 1, 1]
    assert neighbours[0] == {1, 2, 3}
    # two stray near-duplicate prompts between two accounts are not enough to join them
    _, sizes, _ = C.account_graph([], [(4, 5), (4, 5)], 7)
    assert sizes[4] == 1
    _, sizes, _ = C.account_graph([], [(4, 5), (4, 5), (5, 4)], 7)
    assert sizes[4] == 2


def test_components_ignore_common_language_shared_by_very_many_accounts():
    n = 200
    prompts = [f"can you explain this to me in simple words please item {i}" for i in range(n) for _ in range(2)]
    codes = np.repeat(np.arange(n), 2)
    links = C.skeleton_links(codes, [TP.skeleton_keys(p) for p in prompts], n_accounts=n)
    assert links == []


def test_shared_value_counts_and_missing_column():
    import pandas as pd
    codes = np.array([0, 0, 1, 2, 2])
    ips = pd.Series(["1.1.1.1", "2.2.2.2", "1.1.1.1", None, None])
    shared, distinct, per_prompt = C.shared_value_counts(ips, codes, 3)
    assert list(shared[:2]) == [2, 2] and np.isnan(shared[2])
    assert list(distinct[:2]) == [2, 1]
    assert per_prompt[0] == 1.0


def test_prompt_segments_pick_the_edges_where_wrappers_sit():
    segs = prompt_segments("Think it through carefully. What is 2+2? Answer on the last line.")
    assert segs[1] == "Think it through carefully." and segs[2] == "Answer on the last line."
    assert prompt_segments("hello there") == ("hello there",)


def test_every_feature_is_documented_once():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) >= 40
    for f in FEATURES:
        assert f.meaning and f.range and f.family in {"distribution", "templating", "elicitation", "conversation",
                                                      "temporal", "coordination", "metadata"}
    assert markdown_table().count("\n") == len(FEATURES) + 1

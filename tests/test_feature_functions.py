"""The pure feature functions measure what they claim, on controlled inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillguard.features import family_content, family_coordination, family_metadata
from distillguard.features import temporal as TM
from distillguard.features import templating as TP
from distillguard.features.catalog import FAMILIES, FEATURE_NAMES, FEATURES, markdown_table
from distillguard.features.family_distribution import prada_normality
from distillguard.features.population import PopulationState, from_rows
from distillguard.features.rows import AccountRows, PromptTable
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


def _rows(prompts: list[str], owners: list[str], p: float | list[float] = 0.9, **columns) -> AccountRows:
    """A hand-made population: one row per prompt, one minute apart, with a given harvest probability."""
    n = len(prompts)
    events = pd.DataFrame({"account_id": owners, "ts": pd.Timestamp("2026-01-05", tz="UTC")
                           + pd.to_timedelta(np.arange(n), unit="min"), "prompt": prompts, **columns})
    text_ids = pd.factorize(pd.Series(prompts))[0].astype(np.int64)
    vectors = _unit(np.random.default_rng(0), int(text_ids.max()) + 1)
    harvest_p = np.full(n, p, dtype=float) if np.isscalar(p) else np.asarray(p, dtype=float)
    return AccountRows(events, PromptTable(text_ids, vectors, np.zeros((n, 5), np.float32), harvest_p))


def _population(rows: AccountRows) -> PopulationState:
    population = PopulationState()
    population.update(from_rows(rows))
    return population


def _campaign_and_bystanders() -> tuple[list[str], list[str]]:
    openers = ["Grade this answer strictly from one to ten and explain the grade:",
               "You are a strict evaluator of model answers; read carefully:"]
    closers = ["Return only JSON with the score and rationale.", "Output only the integer score."]
    topics = ["rivers", "volcanoes", "poetry", "banking", "chess", "gardens", "trains", "music", "glaciers", "bees"]
    prompts, owners = [], []
    for a in range(4):  # four accounts of one operator share two wrappers around their own payloads
        for i in range(6):
            prompts.append(f"{openers[i % 2]} an answer about the history of {topics[(a + i) % 10]} and "
                           f"{topics[(a * 3 + i) % 10]} in several words {closers[i % 2]}")
            owners.append(f"h{a}")
    loners = ["how do i bake bread at home with a dutch oven tonight", "tell me a joke about cats and dogs please",
              "what time zone is tokyo in compared to london today"]
    for a, text in enumerate(loners):
        for i in range(6):
            prompts.append(f"{text} and also about {topics[i]} {a}")
            owners.append(f"o{a}")
    return prompts, owners


def test_accounts_sharing_wrappers_form_a_community_and_inherit_its_evidence():
    prompts, owners = _campaign_and_bystanders()
    rows = _rows(prompts, owners)
    top5 = np.where(np.char.startswith(rows.account_ids.astype(str), "h"), 0.8, 0.05)
    out, graph = family_coordination.compute(rows, top5, _population(rows), frozenset(), wrapper_min_texts=3)
    idx = {a: i for i, a in enumerate(rows.account_ids)}
    campaign = [idx[f"h{a}"] for a in range(4)]
    assert len({graph.labels[i] for i in campaign}) == 1
    assert out["community_size"][campaign].tolist() == [4, 4, 4, 4]
    assert out["wrapper_share"][campaign].min() == 1.0
    assert out["wrapper_peers"][campaign[0]] == pytest.approx(np.log2(4))
    # members inherit the others' content evidence; accounts alone inherit nothing
    assert out["community_intent"][campaign[0]] == pytest.approx(0.8)
    for a in range(3):
        i = idx[f"o{a}"]
        assert out["community_size"][i] == 1 and out["community_intent"][i] == 0 and out["wrapper_share"][i] == 0


@pytest.mark.parametrize("people", [5, 50])
def test_an_ordinary_template_shared_by_more_users_adds_no_peer_evidence(people):
    # a course's template around each student's own questions: the more students, the more accounts share
    # it; how many do must not count against any of them (the false-positive rate would grow with users)
    topics = ["rivers", "volcanoes", "poetry", "banking", "chess", "gardens", "trains", "music", "glaciers", "bees"]
    prompts, owners = [], []
    for a in range(people):
        for i in range(4):
            prompts.append(f"Course assistant, please help me with my homework: {topics[(a + i) % 10]} question "
                           f"{a} {i} about {topics[(a * 7 + i) % 10]} Thanks for the help with the course today.")
            owners.append(f"s{a}")
    rows = _rows(prompts, owners, p=0.02)
    out, _ = family_coordination.compute(rows, np.full(rows.n_accounts, 0.02), _population(rows), frozenset(),
                                         wrapper_min_texts=3)
    assert out["wrapper_share"].min() == 1.0  # it is a wrapper: shared around different payloads
    assert (out["wrapper_peers"] == 0).all() and (out["community_size"] == 1).all()


def test_common_language_and_one_shared_text_are_not_wrappers():
    prompts, owners = _campaign_and_bystanders()
    rows = _rows(prompts, owners)
    keys = {int(k) for k in rows.skeleton_keys[:24].reshape(-1)}
    # the organic reference shares these wrappers widely: common language, not a campaign
    out, graph = family_coordination.compute(rows, np.zeros(rows.n_accounts), _population(rows), frozenset(keys),
                                             wrapper_min_texts=3)
    assert out["wrapper_share"].max() == 0 and out["community_size"].max() == 1
    # many accounts sending the same question (with a closing remark of their own) share one payload only
    viral = [f"Reverse a singly linked list in place please. {tail}" for tail in ("Thanks!", "Explain.", "Go.")]
    rows = _rows([viral[i % 3] for i in range(30)], [f"a{i % 10}" for i in range(30)])
    out, _ = family_coordination.compute(rows, np.zeros(rows.n_accounts), _population(rows), frozenset(),
                                         wrapper_min_texts=3)
    assert out["wrapper_share"].max() == 0


def test_wrappers_around_ordinary_questions_link_nobody():
    prompts, owners = _campaign_and_bystanders()
    rows = _rows(prompts, owners, p=0.05)  # a team's template around its members' own questions
    out, graph = family_coordination.compute(rows, np.zeros(rows.n_accounts), _population(rows), frozenset(),
                                             wrapper_min_texts=3)
    assert out["wrapper_share"].max() == 1.0  # still a shared wrapper, for the model to weigh
    assert out["community_size"].max() == 1 and len(set(graph.labels)) == rows.n_accounts
    assert len(graph.edges) == 6  # analysts still see the four accounts' links


def test_metadata_evidence_is_one_sided_and_absent_fields_are_neutral():
    owners = ["a", "a", "b", "c", "c", "c", "c", "c"]
    prompts = [f"prompt {i} with enough words to matter here" for i in range(8)]
    ips = ["1.1.1.1", "1.1.1.1", "1.1.1.1", "9.0.0.1", "9.0.0.2", "9.0.0.3", "9.0.0.4", "9.0.0.5"]
    rows = _rows(prompts, owners, ip=ips, payment_fingerprint=[None] * 8)
    out = family_metadata.compute(rows, _population(rows))
    assert out["ip_shared_accounts"].tolist() == [1.0, 1.0, 0.0]  # log2 of 2 accounts on one IP
    assert out["ip_rotation"].tolist() == [0.0, 0.0, 1.0]  # a new IP on every request (3+ prompts)
    assert out["payment_shared_accounts"].tolist() == [0.0, 0.0, 0.0]
    rows = _rows(prompts, owners)  # no IP or payment column at all
    bare = family_metadata.compute(rows, _population(rows))
    assert all(v.tolist() == [0.0, 0.0, 0.0] for v in bare.values())


def test_content_shares_need_volume_and_ignore_common_language():
    prompts = ["hi there, can you walk me through this step by step please now"] * 3 + \
        [f"solve problem {i} and show every intermediate step of the derivation" for i in range(40)]
    owners = ["o1", "o2", "o3"] + ["h"] * 40
    rows = _rows(prompts, owners, p=0.9)
    out = family_content.compute(rows, _population(rows), np.full(5, 2.0, np.float32), common_text_accounts=3)
    h, o = list(rows.account_ids).index("h"), list(rows.account_ids).index("o1")
    # one harvest-shaped prompt is weak evidence, forty are strong; a text three accounts send is none
    assert out["harvest_share"][h] == pytest.approx(40 / 60)
    assert out["harvest_share"][o] == 0.0 and out["harvest_top5"][o] == 0.0
    assert out["harvest_top5"][h] == pytest.approx(0.9)
    assert family_content.shrunk_share(np.array([1]), np.array([1]))[0] < 0.05


def test_prompt_segments_pick_the_edges_where_wrappers_sit():
    segs = prompt_segments("Think it through carefully. What is 2+2? Answer on the last line.")
    assert segs[1] == "Think it through carefully." and segs[2] == "Answer on the last line."
    assert prompt_segments("hello there") == ("hello there",)


def test_every_feature_is_declared_once_by_the_family_that_computes_it():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) >= 35
    families = {f.__name__.rsplit("family_", 1)[1]: f for f in FAMILIES}
    for f in FEATURES:
        assert f.meaning and f.range and f.family in families
        assert f in families[f.family].COLUMNS
        # a feature reading an optional field is one-sided evidence, so its absence cannot raise a score
        if f.needs is not None:
            assert f.monotone == 1 and f.needs in ("conversation_id", "model", "ip", "asn", "payment_fingerprint",
                                                   "user_agent")
    assert markdown_table().count("\n") == len(FEATURES) + 1

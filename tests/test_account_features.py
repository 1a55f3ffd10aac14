"""The account feature table end to end: real embedder, real FAISS, a real prompt intent model fitted
on the world's labels, simulated accounts scored as one population."""

from __future__ import annotations


import pandas as pd
import pytest

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.features.account_features import FeatureConfig
from distillguard.features.baseline import BaselineIdentityError
from distillguard.features.catalog import FEATURE_NAMES
from distillguard.features.elicitation import INTENTS, IntentScorer, all_segments
from distillguard.features.embedding import DEFAULT_PROFILE
from distillguard.features.pipeline import (
    EmbeddingContext, FeatureState, build_features, embed_exemplars, fit_feature_state, prepare_prompts,
)
from distillguard.features.prompt_intent import PromptIntentModel
from distillguard.training.prompt_model_fit import text_labels

PEOPLE = ["casual", "student", "writer", "developer", "researcher", "professional"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> EmbeddingContext:
    return EmbeddingContext.open(DEFAULT_PROFILE, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def sim():
    # scripted campaigns only: these tests check what behaviour and templating features see
    return simulate(SimulatorConfig(accounts=150, seed=21, adaptive_campaign_share=0.0))


@pytest.fixture(scope="module")
def state(sim, ctx, tmp_path_factory) -> FeatureState:
    organic = sim.labels.loc[sim.labels["label"] == 0, "account_id"]
    fitted = fit_feature_state(sim.events[sim.events["account_id"].isin(organic)], ctx)
    prepared = prepare_prompts(sim.events["prompt"], ctx, fitted.scorer, keep_inputs=True)
    y = text_labels(prepared.table.text_ids, sim.events["account_id"].to_numpy(),
                    sim.labels.set_index("account_id")["label"], set(sim.labels["account_id"]), 3, seed=0)
    fitted.prompt_model = PromptIntentModel().fit(prepared.inputs.take(y.index.to_numpy()), y.to_numpy())
    path = tmp_path_factory.mktemp("state") / "state"
    fitted.save(path)
    return FeatureState.load(path, expected_identity=ctx.embedder.identity)


@pytest.fixture(scope="module")
def table(sim, state, ctx) -> pd.DataFrame:
    return build_features(sim.events, state, ctx).join(sim.labels.set_index("account_id"))


def test_one_row_per_account_with_every_documented_feature(table, sim):
    assert set(table.index) == set(sim.labels["account_id"])
    assert list(table.columns[: len(FEATURE_NAMES)]) == list(FEATURE_NAMES)
    # each account is read through its scoring window: its newest `window_events` prompts
    cap = FeatureConfig().window_events
    expected = sim.events.groupby("account_id").size().clip(upper=cap)
    assert (table["volume"] == expected.reindex(table.index)).all()


def test_features_are_deterministic(sim, state, ctx, table):
    again = build_features(sim.events, state, ctx)
    pd.testing.assert_frame_equal(again, table[list(FEATURE_NAMES)])


def test_paraphrased_reasoning_extraction_scores_as_elicitation(ctx):
    scorer = IntentScorer(exemplar_vectors=embed_exemplars(ctx))
    paraphrases = [  # none of these share a sentence with the exemplars
        "Before you reply, spell out each little deduction that gets you to the result.",
        "I need the whole thought process, every intermediate inference, then the number.",
    ]
    neutral = ["what's a nice pasta recipe for a rainy evening", "recommend a podcast about history",
               "translate good morning into italian", "how tall is the eiffel tower"]
    texts, owners = all_segments(paraphrases + neutral)
    scores = scorer.score(ctx.embed(texts), owners, len(paraphrases) + len(neutral))
    reasoning = scores[:, INTENTS.index("reasoning")]
    assert reasoning[: len(paraphrases)].min() > reasoning[len(paraphrases):].max()


def test_wrapped_templated_harvesters_score_higher_on_templating_and_intent_than_people(table):
    # a wrapper shows as a repeated opening or closing only once an account has sent enough prompts
    harvest = table[(table["label"] == 1) & (table["volume"] >= 30)]
    people = table[table["campaign"].isin(PEOPLE) & (table["volume"] >= 30)]
    assert len(harvest) >= 5 and len(people) >= 10
    assert harvest["skeleton_rate"].median() > people["skeleton_rate"].median() + 0.2
    assert harvest["harvest_top5"].median() > people["harvest_top5"].quantile(0.9)
    assert harvest["quiet_8h_share"].median() > 0.2 > people["quiet_8h_share"].median()


def test_campaign_accounts_share_wrappers_and_communities_people_stay_alone(table):
    harvest = table[(table["label"] == 1) & (table["volume"] >= 10)]
    people = table[table["campaign"].isin(PEOPLE)]
    assert (harvest["wrapper_share"] > 0.2).mean() > 0.6
    assert (harvest["community_size"] >= 2).mean() > 0.5
    assert (people["community_size"] == 1).mean() > 0.98


def test_small_accounts_show_no_pattern_they_cannot_have(table):
    small = table[table["volume"] < 5]
    assert len(small) > 10
    for col in ("interarrival_cv", "skeleton_rate", "knn_organic_mean", "prompt_chars_median"):
        assert small[col].isna().all(), col
    assert (small["single_turn_share"] == 0).all()


def test_absent_optional_columns_give_the_neutral_value_not_evidence(sim, state, ctx, table):
    bare = sim.events[["account_id", "ts", "prompt"]]
    t = build_features(bare, state, ctx)
    for col in ("ip_shared_accounts", "payment_shared_accounts", "ip_rotation", "single_turn_share",
                "new_model_share", "new_model_early"):
        assert (t[col] == 0).all(), col
        assert (table[col] >= 0).all()  # the neutral value is the least suspicious one
    # what the accounts ask is untouched by the missing metadata
    pd.testing.assert_series_equal(t["harvest_top5"], table["harvest_top5"])


def test_unseen_accounts_are_scored_against_the_baseline(state, ctx):
    fresh = simulate(SimulatorConfig(accounts=40, seed=99))
    t = build_features(fresh.events, state, ctx)
    assert len(t) == 40 and t["knn_organic_mean"].dropna().between(0, 2).all()
    assert t["knn_organic_mean"].notna().sum() >= 20


def test_feature_state_from_another_embedder_is_refused(state, tmp_path):
    path = tmp_path / "state"
    state.save(path)
    other = state.identity.__class__(profile="other", base_model=state.identity.base_model,
                                     dim=state.identity.dim, fingerprint="0" * 32)
    with pytest.raises(BaselineIdentityError, match="other"):
        FeatureState.load(path, expected_identity=other)


def test_bad_inputs_give_clear_errors(sim, state, ctx, tmp_path):
    with pytest.raises(ValueError, match="no organic events"):
        fit_feature_state(sim.events.iloc[:0], ctx)
    with pytest.raises(ValueError, match="not a readable feature state"):
        FeatureState.load(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="no events"):
        build_features(sim.events.iloc[:0], state, ctx)

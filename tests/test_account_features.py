"""The account feature table end to end: real embedder, real FAISS, simulated accounts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.features.baseline import BaselineIdentityError
from distillguard.features.catalog import FEATURE_NAMES
from distillguard.features.elicitation import INTENTS, IntentScorer, all_segments
from distillguard.features.embedding import DEFAULT_PROFILE
from distillguard.features.pipeline import (
    EmbeddingContext, FeatureState, build_features, embed_exemplars, fit_feature_state,
)

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
    path = tmp_path_factory.mktemp("state") / "state"
    fitted.save(path)
    return FeatureState.load(path, expected_identity=ctx.embedder.identity)


@pytest.fixture(scope="module")
def table(sim, state, ctx) -> pd.DataFrame:
    return build_features(sim.events, state, ctx).join(sim.labels.set_index("account_id"))


def test_one_row_per_account_with_every_documented_feature(table, sim):
    assert set(table.index) == set(sim.labels["account_id"])
    assert list(table.columns[: len(FEATURE_NAMES)]) == list(FEATURE_NAMES)
    assert table["volume"].sum() == len(sim.events)


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
    assert harvest["any_intent_rate"].median() > people["any_intent_rate"].median()
    assert harvest["quiet_8h_share"].median() > 0.2 > people["quiet_8h_share"].median()


def test_campaign_accounts_share_coordination_components_people_stay_alone(table):
    harvest = table[table["label"] == 1]
    people = table[table["campaign"].isin(PEOPLE)]
    assert (harvest["component_size"] >= 2).mean() > 0.7
    assert (people["component_size"] == 1).mean() > 0.9


def test_missing_optional_columns_degrade_to_nan(sim, state, ctx):
    some = sim.labels["account_id"].iloc[:30]
    bare = sim.events[sim.events["account_id"].isin(some)][["account_id", "ts", "prompt"]]
    t = build_features(bare, state, ctx)
    for col in ("ip_distinct", "payment_shared_accounts_max", "multi_turn_share", "new_model_delay_hours"):
        assert t[col].isna().all(), col
    assert t["skeleton_rate"].notna().all() and t["knn_organic_mean"].notna().all()


def test_unseen_accounts_are_scored_against_the_baseline(state, ctx):
    fresh = simulate(SimulatorConfig(accounts=40, seed=99))
    t = build_features(fresh.events, state, ctx)
    assert len(t) == 40 and t["knn_organic_mean"].between(0, 2).all()


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

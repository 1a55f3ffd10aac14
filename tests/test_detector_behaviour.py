"""What an operator relies on from a trained detector, checked on a real model trained on a simulated
world: absent optional fields never raise a score, a newcomer's harmless first prompts pass, and
reasons read as sentences about the evidence."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.training.inference import Inference
from distillguard.training.registry import Registry
from distillguard.training.train_job import TrainConfig, load_bundle, run_training

OPTIONAL = ["conversation_id", "ip", "asn", "payment_fingerprint", "user_agent"]
RANK = {"allow": 0, "review": 1, "block": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    sim = simulate(SimulatorConfig(accounts=500, seed=8))
    store = root / "store"
    registry = Registry(root / "mlruns")
    run_training(sim.events, sim.labels, registry, TrainConfig(seed=0, store_dir=store, time_to_detection=False),
                 log=lambda m: None)
    bundle = load_bundle(registry, "models:/distillguard@champion")
    return sim, bundle, bundle.open_embeddings(store)


def _score(bundle, ctx, events: pd.DataFrame) -> pd.DataFrame:
    return Inference(bundle, ctx).score_events(events, with_reasons=False).table().set_index("account_id")


def test_removing_optional_fields_never_raises_an_organic_accounts_score(trained):
    sim, bundle, ctx = trained
    organic = set(sim.labels.loc[sim.labels["label"] == 0, "account_id"])
    before = _score(bundle, ctx, sim.events)
    stripped = sim.events.copy()
    is_org = stripped["account_id"].isin(organic)
    for col in OPTIONAL:
        stripped[col] = stripped[col].where(~is_org, None)
    stripped["asn"] = stripped["asn"].astype("Int64")
    after = _score(bundle, ctx, stripped)
    ids = sorted(organic)
    assert (after.loc[ids, "score"] <= before.loc[ids, "score"] + 1e-9).all()
    assert (after.loc[ids, "decision"].map(RANK) <= before.loc[ids, "decision"].map(RANK)).all()
    # a gateway that forwards only the key's hash: every optional field gone for everybody
    key_only = sim.events[["account_id", "ts", "prompt"]]
    bare = _score(bundle, ctx, key_only)
    assert (bare.loc[ids, "score"] <= before.loc[ids, "score"] + 1e-9).all()
    assert (bare.loc[ids, "decision"].map(RANK) <= before.loc[ids, "decision"].map(RANK)).all()


def test_new_accounts_with_one_harmless_prompt_are_allowed(trained):
    sim, bundle, ctx = trained
    harmless = ["banana bread recipe", "what's the weather like in lisbon in may", "help me name my new puppy",
                "how long should i boil an egg", "suggest a book for a long flight", "is it worth learning piano at 40",
                "write a birthday message for my sister", "how do i get red wine out of a carpet",
                "what are good stretches after running", "explain how a mortgage works"]
    last = sim.events["ts"].max()
    newcomers = pd.DataFrame({"account_id": [f"new_{i}" for i in range(10)], "ts": [last] * 10, "prompt": harmless})
    scored = _score(bundle, ctx, pd.concat([sim.events, newcomers], ignore_index=True))
    assert (scored.loc[newcomers["account_id"], "decision"] == "allow").all(), scored.loc[newcomers["account_id"]]


def test_reasons_are_sentences_about_the_evidence_never_nan(trained):
    from distillguard.features.pipeline import build_features

    sim, bundle, ctx = trained
    features = build_features(sim.events, bundle.state, ctx)
    det = bundle.detector
    scores = det.score(features)
    flagged = features[det.decide(features, scores) != "allow"]
    assert len(flagged) > 0
    reasons = det.reasons(flagged)
    for account, said in zip(flagged.index, reasons):
        assert said, account
        for sentence in said:
            assert "nan" not in sentence.lower() and not sentence.startswith(tuple(features.columns)), sentence
            assert sentence.endswith("]") and "[+" in sentence  # the contribution, in log-odds
            # a group size an analyst reads is the community size the score used
            for size in re.findall(r"group of (\d+) accounts|the (\d+) accounts of its group", sentence):
                n = int(next(x for x in size if x))
                assert n == flagged.loc[account, "community_size"], (sentence, flagged.loc[account, "community_size"])
    words = " ".join(s for said in reasons for s in said)
    assert any(w in words for w in ("of its prompts", "wrapper", "group")), words[:500]

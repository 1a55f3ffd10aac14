"""The per-prompt harvest-intent model: estimator contract, learning from labelled prompts, the
exemplar prior for intents without labels, calibration and persistence."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.features.prompt_intent import PromptInputs, PromptIntentModel, PromptIntentNotFittedError


def _inputs(rng: np.random.Generator, n: int, direction: np.ndarray | None, exemplar: float = 0.1) -> PromptInputs:
    x = rng.normal(size=(n, 24))
    if direction is not None:
        x += 2.5 * direction
    ex = np.clip(rng.normal(exemplar, 0.05, size=(n, 5)), -1, 1)
    return PromptInputs(x.astype(np.float32), ex.astype(np.float32))


def _concat(*parts: PromptInputs) -> PromptInputs:
    return PromptInputs(np.vstack([p.vectors for p in parts]), np.vstack([p.exemplar_scores for p in parts]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    harvest_dir = np.zeros(24)
    harvest_dir[0] = 1.0
    organic = _inputs(rng, 600, None)
    campaign = _inputs(rng, 200, harvest_dir)
    hydra = _inputs(rng, 100, None)  # organic-looking prompts that harvesting accounts also send
    X = _concat(organic, campaign, hydra)
    y = np.r_[np.zeros(600), np.ones(300)].astype(int)
    return rng, harvest_dir, X, y


def test_an_unfitted_model_refuses_to_score(data):
    _, _, X, _ = data
    m = PromptIntentModel()
    with pytest.raises(PromptIntentNotFittedError, match="not fitted"):
        m.predict_proba(X)
    assert "unfitted" in repr(m) and m.get_params()["C"] == 1.0


def test_it_learns_what_campaigns_ask_and_relabels_their_organic_looking_prompts(data):
    rng, harvest_dir, X, y = data
    m = PromptIntentModel(seed=1).fit(X, y)
    assert m.relabelled_ >= 50  # most of the hydra prompts are recognised as organic-looking
    fresh_campaign = m.predict_proba(_inputs(rng, 100, harvest_dir))
    fresh_organic = m.predict_proba(_inputs(rng, 100, None))
    assert np.median(fresh_campaign) > 0.8 > 0.2 > np.median(fresh_organic)
    with pytest.raises(ValueError, match="both classes"):
        PromptIntentModel().fit(X, np.zeros(len(y), dtype=int))


def test_the_exemplar_prior_gives_an_unlabelled_intent_a_voice(data):
    rng, _, X, y = data
    m = PromptIntentModel(seed=1, prior_weight=0.5).fit(X, y)
    # a style no labelled campaign showed: ordinary vectors, but far above organic on an exemplar intent
    unseen = _inputs(rng, 50, None, exemplar=0.6)
    assert m.prior_proba(unseen).min() == 1.0
    assert np.median(m.predict_proba(unseen)) > 0.5 > np.median(m.learnt_proba(unseen))
    assert np.median(m.prior_proba(_inputs(rng, 50, None))) == 0.0


def test_calibration_and_persistence_round_trip(data):
    rng, harvest_dir, X, y = data
    m = PromptIntentModel(seed=1).fit(X, y).calibrate(X, y)
    assert m.calibration_ != (1.0, 0.0)
    again = PromptIntentModel.from_arrays(m.to_arrays(), m.get_params())
    probe = _concat(_inputs(rng, 20, harvest_dir), _inputs(rng, 20, None))
    np.testing.assert_allclose(again.predict_proba(probe), m.predict_proba(probe))

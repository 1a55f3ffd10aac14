"""The detector's decision layer: an unfitted detector refuses to score, and small accounts are judged
against the cold-start thresholds, never against looser ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillguard.training.model import Detector, DetectorNotFittedError, Thresholds


def test_an_unfitted_detector_refuses_to_score():
    with pytest.raises(DetectorNotFittedError, match="no trained booster"):
        Detector(None, ["volume"]).score(pd.DataFrame({"volume": [3.0]}))  # type: ignore[arg-type]


def test_small_accounts_meet_the_cold_start_thresholds():
    t = Thresholds(review=0.1, block=0.5, cold_review=0.4, cold_block=0.8, cold_max_prompts=4)
    scores = np.array([0.3, 0.3, 0.6, 0.6, 0.9])
    volumes = np.array([2, 50, 2, 50, 3])
    assert t.decide(scores, volumes).tolist() == ["allow", "review", "review", "block", "block"]
    # without volumes, everyone meets the regular thresholds
    assert t.decide(scores).tolist() == ["review", "review", "block", "block", "block"]
    # cold-start thresholds below the regular ones never make a small account easier to flag
    loose = Thresholds(review=0.5, block=0.9, cold_review=0.1, cold_block=0.2)
    assert loose.decide(np.array([0.3]), np.array([1])).tolist() == ["allow"]

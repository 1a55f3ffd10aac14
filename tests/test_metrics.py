"""Operating-point metrics on hand-made scores."""

import numpy as np
import pytest

from distillguard.training.metrics import headline_metrics, rate_by_group, recall_at_fpr, threshold_at_fpr


def test_threshold_lets_through_at_most_the_target_share_of_organic_accounts():
    organic = np.arange(1000) / 1000.0
    t = threshold_at_fpr(organic, 0.01)
    assert (organic > t).mean() <= 0.01
    assert (organic > t).sum() == 10
    assert (organic > threshold_at_fpr(organic, 0.0)).sum() == 0


def test_recall_at_fpr_counts_harvesters_above_the_organic_threshold():
    y = np.array([0] * 100 + [1] * 4)
    s = np.concatenate([np.linspace(0, 0.5, 100), [0.9, 0.8, 0.4, 0.1]])
    assert recall_at_fpr(y, s, 0.01) == pytest.approx(0.5)
    m = headline_metrics(y, s)
    assert 0.5 < m["roc_auc"] < 1 and m["recall_at_1pct_fpr"] == pytest.approx(0.5)


def test_rate_by_group():
    assert rate_by_group(np.array([1, 0, 1, 1]), np.array(["a", "a", "b", "b"])) == {"a": 0.5, "b": 1.0}


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="shape"):
        recall_at_fpr(np.array([0, 1]), np.array([0.1]), 0.01)

"""Hold-out figures with the definitions of EVALUATION.md, on hand-made scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from distillguard.training.holdout_report import cold_start_figures, flatten, population_figures


def _frame(rows):
    return pd.DataFrame(rows, columns=["account_id", "label", "campaign", "score", "decision", "volume"])


def test_operator_figures_per_archetype_and_recall_by_volume():
    organic = [(f"o{i}", 0, "casual" if i < 100 else "student", i / 1000, "allow", 10) for i in range(200)]
    organic[199] = ("o199", 0, "student", 0.9, "block", 10)
    organic[198] = ("o198", 0, "student", 0.5, "review", 10)
    harvest = [("h0", 1, "reasoning-1", 0.95, "block", 3), ("h1", 1, "reasoning-2", 0.99, "block", 50),
               ("h2", 1, "safe_rewrite-1", 0.1, "allow", 20), ("h3", 1, "safe_rewrite-1", 0.6, "review", 400)]
    f = _frame(organic + harvest)
    idx = f.set_index("account_id")
    fig = population_figures(f[["account_id", "label", "campaign"]], idx["score"], idx["decision"], idx["volume"],
                             components=pd.Series(1, index=idx.index))
    assert fig["organic_blocked"] == pytest.approx(1 / 200)
    assert fig["organic_flagged"] == pytest.approx(2 / 200)
    assert fig["by_archetype"]["casual"] == {"accounts": 100, "flagged": 0.0, "blocked": 0.0}
    assert fig["by_archetype"]["student"]["blocked"] == pytest.approx(1 / 100)
    # 1% of 200 organic: rank 2 from the top (0-based) is the threshold -> 0.197; strictly above it
    assert fig["recall_at_1pct_fpr"] == pytest.approx(3 / 4)
    # 0.1% of 200: rank 0, the single highest organic score (0.9)
    assert fig["recall_at_0.1pct_fpr"] == pytest.approx(2 / 4)
    assert fig["by_style"]["reasoning"]["recall_at_1pct_fpr"] == 1.0
    assert fig["by_style"]["safe_rewrite"]["recall_at_1pct_fpr"] == 0.5
    vol = fig["by_volume"]
    assert vol["le5"]["harvest_accounts"] == 1 and vol["le5"]["recall_at_1pct_fpr"] == 1.0
    assert vol["le30"]["harvest_accounts"] == 2 and vol["le30"]["recall_at_1pct_fpr"] == 0.5
    assert vol["gt100"]["harvest_accounts"] == 1 and vol["gt100"]["recall_at_1pct_fpr"] == 1.0
    assert fig["organic_in_component_gt5"] == 0.0
    flat = flatten({"out_of_time": fig})
    assert flat["oot.style.safe_rewrite.recall_at_1pct_fpr"] == 0.5
    assert flat["oot.volume.le30.recall_at_1pct_fpr"] == 0.5
    assert all(math.isfinite(v) for v in flat.values())


def test_cold_start_counts_organic_accounts_allowed():
    f = _frame([("o1", 0, "casual", 0, "allow", 1), ("o2", 0, "casual", 0, "review", 2),
                ("h1", 1, "x-1", 0, "block", 3)])
    fig = cold_start_figures(f[["account_id", "label", "campaign"]], f.set_index("account_id")["decision"])
    assert fig["organic_allowed"] == 0.5 and fig["harvest_flagged"] == 1.0


def test_an_evaluated_account_without_a_score_is_an_error_not_a_silent_drop():
    f = _frame([("o1", 0, "casual", 0.1, "allow", 1), ("h1", 1, "x-1", 0.9, "block", 3)])
    idx = f.set_index("account_id")
    with pytest.raises(ValueError, match="no score"):
        population_figures(f[["account_id", "label", "campaign"]], idx["score"].drop("h1"), idx["decision"],
                           idx["volume"])
    assert np.isnan(population_figures(f[f.label == 0][["account_id", "label", "campaign"]], idx["score"],
                                       idx["decision"], idx["volume"])["recall_at_1pct_fpr"])

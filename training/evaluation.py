"""Evaluation beside the hold-out figures (`holdout_report`): the baselines a user would otherwise
reach for, leave-one-style-out, and time to detection. Pure functions of feature tables and scores."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from distillguard.training.dataset import campaign_style
from distillguard.training.metrics import headline_metrics, recall_at_fpr
from distillguard.training.model import train_booster

#: What a keyword filter for reasoning extraction would match (the baseline, not our detector).
REASONING_KEYWORDS = re.compile(r"step[- ]by[- ]step|reasoning|chain[- ]of[- ]thought|think|show (?:your|all) work", re.I)


def keyword_rate(events: pd.DataFrame) -> pd.Series:
    """Per account, the share of prompts a reasoning-keyword filter matches."""
    hit = events["prompt"].str.contains(REASONING_KEYWORDS, regex=True)
    return hit.groupby(events["account_id"]).mean()


def baseline_scores(train_X: pd.DataFrame, train_y: np.ndarray, test_X: pd.DataFrame,
                    test_events: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    """Scores of the detectors a user would otherwise reach for, on the same test accounts."""
    fill = train_X.median()
    iso = IsolationForest(n_estimators=200, random_state=seed).fit(train_X[train_y == 0].fillna(fill))
    kw = keyword_rate(test_events).reindex(test_X.index).fillna(0).to_numpy()
    return {
        "volume/rate threshold": test_X["prompts_per_active_day"].fillna(0).to_numpy(),
        "reasoning-keyword filter": kw,
        "PRADA distance normality": (1 - test_X["prada_normality"].fillna(1)).to_numpy(),
        "MMD vs organic baseline": test_X["mmd_organic"].fillna(0).to_numpy(),
        "IsolationForest on our features": -iso.score_samples(test_X.fillna(fill)),
    }


def comparison_table(y: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = {name: headline_metrics(y, s) for name, s in scores.items()}
    return pd.DataFrame(rows).T[["roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr"]]


def leave_one_style_out(X: pd.DataFrame, labels: pd.DataFrame, train_ids: list[str], test_organic_ids: list[str],
                        *, seed: int, params: dict | None = None) -> pd.DataFrame:
    """For each harvesting style: train without it, then measure recall on all its accounts at the
    1% and 0.1% FPR of held-out organic accounts. The number that says whether the next campaign is caught."""
    lab = labels.set_index("account_id")
    styles = sorted({campaign_style(c) for c in lab.loc[lab["label"] == 1, "campaign"]})
    rows = {}
    for style in styles:
        is_style = (lab["label"] == 1) & (lab["campaign"].map(campaign_style) == style)
        train = [a for a in train_ids if not is_style.get(a, False)]
        booster = train_booster(X.loc[train], lab.loc[train, "label"].to_numpy(), seed=seed, params=params)
        positives = is_style[is_style].index
        test = list(test_organic_ids) + list(positives)
        y = lab.loc[test, "label"].to_numpy()
        s = booster.predict(X.loc[test].to_numpy(dtype=np.float64), raw_score=True)
        rows[style] = {"accounts": int(len(positives)), "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01),
                       "recall_at_0.1pct_fpr": recall_at_fpr(y, s, 0.001)}
    return pd.DataFrame(rows).T


def time_to_detection(events: pd.DataFrame, harvest_ids: list[str], score_prefix: Callable[[pd.DataFrame], pd.Series],
                      threshold: float, lengths: tuple[int, ...] = (5, 10, 20, 50, 100, 200)) -> pd.DataFrame:
    """Prompts until each harvesting account first crosses `threshold`, scoring growing prefixes of
    its stream (other accounts stay whole, as the world around it). NaN: never crossed."""
    ev = events.sort_values(["account_id", "ts"], kind="stable")
    position = ev.groupby("account_id").cumcount()
    is_harvest = ev["account_id"].isin(harvest_ids)
    sizes = ev[is_harvest].groupby("account_id").size()
    first_cross = pd.Series(np.nan, index=sizes.index)
    for length in lengths:
        prefix = ev[~is_harvest | (position < length)]
        scores = score_prefix(prefix)
        newly = (scores.reindex(sizes.index) > threshold) & first_cross.isna()
        first_cross[newly] = np.minimum(length, sizes[newly])
    full = score_prefix(ev)
    late = (full.reindex(sizes.index) > threshold) & first_cross.isna()
    first_cross[late] = sizes[late]
    return pd.DataFrame({"prompts_to_detection": first_cross, "account_prompts": sizes})

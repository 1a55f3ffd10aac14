"""Labelled accounts for training: checks, stratified splits, and campaign styles.

A *style* groups the campaigns of one kind so that leave-one-style-out can ask whether the model
catches a kind of campaign it never saw. By convention a campaign named `NAME-<number>` belongs to
style `NAME`; any other name is a style of its own. Organic archetypes are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

_NUMBERED = re.compile(r"^(.*?)[-_ ]\d+$")


class TrainingDataError(ValueError):
    """Labelled data that cannot train a model (the message says why)."""


def campaign_style(campaign: str) -> str:
    m = _NUMBERED.match(campaign)
    return m.group(1) if m else campaign


def check_labels(events: pd.DataFrame, labels: pd.DataFrame, labels_name: str = "labels") -> pd.DataFrame:
    """Labels restricted to accounts with events; refuses unknown accounts and a single class."""
    known = set(events["account_id"].unique())
    unknown = labels.loc[~labels["account_id"].isin(known), "account_id"]
    if len(unknown):
        raise TrainingDataError(f"{labels_name}: {len(unknown)} labelled accounts have no events, "
                                f"e.g. {', '.join(map(str, unknown.iloc[:3]))}")
    classes = set(labels["label"].astype(int))
    if classes != {0, 1}:
        raise TrainingDataError(f"{labels_name}: training needs both classes (0 organic, 1 harvesting); "
                                f"found only {sorted(classes)}")
    return labels.reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    train: list[str]
    validation: list[str]
    holdout: list[str]


def stratified_split(labels: pd.DataFrame, *, seed: int, validation: float = 0.2, holdout: float = 0.2,
                     frozen_holdout: set[str] | None = None) -> Split:
    """Accounts split per campaign/archetype so every group appears in each part where it can.

    With `frozen_holdout`, those accounts form the hold-out and the rest is split into train and
    validation only.
    """
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    hold: list[str] = []
    frozen = frozen_holdout or set()
    pool = labels[~labels["account_id"].isin(frozen)]
    hold.extend(sorted(frozen & set(labels["account_id"])))
    for _, group in pool.groupby("campaign", sort=True):
        ids = group["account_id"].sort_values().to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n = len(ids)
        n_hold = 0 if frozen_holdout is not None else int(round(holdout * n))
        n_val = int(round(validation * n))
        if n >= 3 and frozen_holdout is None:
            n_hold = max(n_hold, 1)
        if n >= 3:
            n_val = max(n_val, 1)
        hold.extend(ids[:n_hold])
        val.extend(ids[n_hold:n_hold + n_val])
        train.extend(ids[n_hold + n_val:])
    _give_validation_both_classes(labels, train, val)
    return Split(sorted(train), sorted(val), sorted(hold))


def _give_validation_both_classes(labels: pd.DataFrame, train: list[str], val: list[str]) -> None:
    """Calibration needs both classes in validation: when many small campaigns put every harvesting
    account in train, move one (from the largest campaign) across, if train keeps at least two."""
    label = labels.set_index("account_id")["label"]
    for cls in (1, 0):
        if any(label[a] == cls for a in val):
            continue
        in_train = [a for a in train if label[a] == cls]
        if len(in_train) >= 3:
            camp = labels.set_index("account_id")["campaign"]
            largest = camp[in_train].value_counts().index[0]
            moved = sorted(a for a in in_train if camp[a] == largest)[0]
            train.remove(moved)
            val.append(moved)

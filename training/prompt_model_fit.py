"""Fitting the per-prompt harvest-intent model inside the training job, cross-fitted: the accounts
it learns from get probabilities from models that did not see them (the account-level model must
not learn to trust in-sample probabilities that out-of-time accounts will never have).

A distinct text's label: 1 when a harvesting account sent it and fewer than `common_text_accounts`
accounts of the population did (a text many send is common language), else 0 when an organic
account sent it; texts only unlabelled accounts sent are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distillguard.features.pipeline import PreparedPrompts
from distillguard.features.prompt_intent import PromptIntentModel

FOLDS = 3
MAX_TEXTS_PER_ACCOUNT = 200  # so that a few power users do not make the organic side


def text_labels(text_ids: np.ndarray, row_accounts: np.ndarray, label_of: pd.Series, chosen: set[str],
                common_text_accounts: int, *, seed: int) -> pd.Series:
    """Label per distinct text id (index) from the rows of the `chosen` accounts."""
    frame = pd.DataFrame({"t": text_ids, "a": row_accounts}).drop_duplicates()
    n_accounts = frame.groupby("t").size()
    mine = frame[frame["a"].isin(chosen)]
    mine = mine.assign(y=mine["a"].map(label_of)).dropna(subset=["y"])
    mine = mine.groupby("a", group_keys=False).apply(
        lambda g: g.sample(min(len(g), MAX_TEXTS_PER_ACCOUNT), random_state=seed))
    y = mine.groupby("t")["y"].max().astype(int)
    common = n_accounts.reindex(y.index) >= common_text_accounts
    return y.where(~common, 0)


@dataclass
class CrossFittedPromptModel:
    full: PromptIntentModel  # fitted on every training account: what the bundle keeps
    folds: list[PromptIntentModel]
    fold_of: dict[str, int]  # training account -> the fold that did not see it

    def row_probabilities(self, prepared: PreparedPrompts, row_accounts: np.ndarray) -> np.ndarray:
        """(n,) harvest probability of each row: from its account's fold model for training accounts,
        from the full model for everyone else."""
        if prepared.inputs is None:
            raise ValueError("prepare the prompts with keep_inputs=True to cross-fit them")
        text_ids = prepared.table.text_ids
        out = self.full.predict_proba(prepared.inputs)[text_ids]
        fold_row = np.array([self.fold_of.get(a, -1) for a in row_accounts.tolist()])
        for f, model in enumerate(self.folds):
            mask = fold_row == f
            if mask.any():
                out[mask] = model.predict_proba(prepared.inputs)[text_ids[mask]]
        return out


def fit_cross_fitted(prepared: PreparedPrompts, row_accounts: np.ndarray, labels: pd.DataFrame,
                     train_ids: list[str], validation_ids: list[str], *, common_text_accounts: int,
                     seed: int) -> CrossFittedPromptModel:
    """Fit the full model on the training accounts (calibrated on validation) and one model per fold."""
    if prepared.inputs is None:
        raise ValueError("prepare the prompts with keep_inputs=True to fit the prompt model")
    label_of = labels.set_index("account_id")["label"]
    text_ids = prepared.table.text_ids

    def fit(chosen: set[str]) -> PromptIntentModel:
        y = text_labels(text_ids, row_accounts, label_of, chosen, common_text_accounts, seed=seed)
        model = PromptIntentModel(seed=seed).fit(prepared.inputs.take(y.index.to_numpy()), y.to_numpy())
        yv = text_labels(text_ids, row_accounts, label_of, set(validation_ids), common_text_accounts, seed=seed)
        return model.calibrate(prepared.inputs.take(yv.index.to_numpy()), yv.to_numpy())

    train = sorted(train_ids)
    rng = np.random.default_rng([seed, 17])
    fold_of = dict(zip(train, rng.permutation(len(train)) % FOLDS))
    folds = [fit({a for a in train if fold_of[a] != f}) for f in range(FOLDS)]
    return CrossFittedPromptModel(fit(set(train)), folds, fold_of)

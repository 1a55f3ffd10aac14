"""Conversations: harvesters fire one-shot requests; people hold conversations. One-sided evidence
from an optional field: an account that sends no conversation id (an SDK or a gateway) gets the
neutral 0, never a raised score; so does an account with fewer than `min_prompts` prompts (one
question in its own conversation is how everybody starts)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillguard.features.feature_spec import BEHAVIOUR, Feature
from distillguard.features.rows import AccountRows

FAMILY = "conversation"
KIND = BEHAVIOUR

COLUMNS: tuple[Feature, ...] = (
    Feature("single_turn_share", FAMILY, "share of prompts (among those with a conversation id) that open a "
            "conversation nobody continues; 0 without conversation ids or under 5 prompts", "[0, 1]",
            "{value:.0%} of its conversations are one-shot requests (organic: {organic:.0%})", +1,
            "conversation_id", KIND),
)


def compute(rows: AccountRows, *, min_prompts: int) -> dict[str, np.ndarray]:
    n_acc = rows.n_accounts
    out = np.zeros(n_acc)
    if "conversation_id" in rows.events:
        conv = pd.factorize(rows.events["conversation_id"])[0]  # -1 where missing
        sent = conv >= 0
        if sent.any():
            frame = pd.DataFrame({"a": rows.codes[sent], "c": conv[sent]})
            turns = frame.groupby(["a", "c"]).size()
            single = (turns == 1).groupby(level=0).sum()
            with_ids = turns.groupby(level=0).sum()
            out[with_ids.index.to_numpy()] = (single / with_ids).to_numpy()
    out[rows.volume < min_prompts] = 0.0
    return {"single_turn_share": out}

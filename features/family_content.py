"""Content: what an account asks for. The per-prompt harvest probability (`prompt_intent`) and the
project's exemplar intents, aggregated so that hydra mixing cannot hide a campaign (the top of the
account, not its mean) and so that evidence grows with what is seen: shares are shrunk toward 0 by
`SHRINK` pseudo-prompts (one harvest-shaped prompt out of one gives 0.05, twenty out of forty 0.33)
and the top-5 mean is padded with zeros. (A noisy-OR over an account's prompts was tried and
dropped: it saturates for organic accounts with a few moderately harvest-shaped prompts, such as a
student's math problems, and blocked them out of time.)

Texts that many accounts of the population send (`common_text_accounts` or more) are common
language, whoever sends them: they never count as harvest evidence.
"""

from __future__ import annotations

import numpy as np

from distillguard.features.elicitation import INTENTS
from distillguard.features.feature_spec import CONTENT, Feature
from distillguard.features.population import PopulationState
from distillguard.features.rows import AccountRows

FAMILY = "content"
TOP_K = 5
HARVEST_P = 0.5  # a prompt counts as harvest-shaped above this probability

_INTENT_MEANING = {
    "reasoning": "ask for step-by-step or full reasoning traces",
    "grading": "ask to grade or score a response against a rubric",
    "safe_rewrite": "ask to turn a sensitive request into a safe answer",
    "strict_format": "impose a strict output format (JSON, tags, a final-answer line)",
    "tool_use": "drive an agent: tool calls, actions, tool results",
}

COLUMNS: tuple[Feature, ...] = (
    Feature("harvest_top5", FAMILY, "mean harvest probability of the account's 5 most harvest-shaped distinct "
            "prompts (texts few accounts send); fewer than 5 are padded with 0", "[0, 1]",
            "its most harvest-shaped prompts score {value:.2f} on average (organic accounts: {organic:.2f})", +1),
    Feature("harvest_share", FAMILY, "share of prompts with harvest probability above 0.5 (shrunk toward 0 by 20 "
            "pseudo-prompts)", "[0, 1)", "{value:.0%} of its prompts are harvest-shaped (shrunk; organic: "
            "{organic:.0%})", +1),
    Feature("harvest_count", FAMILY, "expected number of harvest-shaped prompts (sum of harvest probabilities)",
            "[0, inf)", "about {value:.0f} of its prompts are harvest-shaped (organic: {organic:.0f})", +1),
    *(Feature(f"{i}_rate", FAMILY, f"share of prompts that {_INTENT_MEANING[i]} (exemplar similarity above the "
              "organic 95th percentile), shrunk toward 0 by 20 pseudo-prompts", "[0, 1)",
              f"{{value:.0%}} of its prompts {_INTENT_MEANING[i]} (shrunk; organic: {{organic:.0%}})", +1)
      for i in INTENTS),
    Feature("any_intent_rate", FAMILY, "share of prompts above the organic 95th percentile for any exemplar intent "
            "shrunk toward 0 by 20 pseudo-prompts", "[0, 1)",
            "{value:.0%} of its prompts ask for what harvesters harvest (shrunk; organic: {organic:.0%})", +1),
)
KIND = CONTENT


SHRINK = 20.0


def shrunk_share(k: np.ndarray, n: np.ndarray, pseudo: float = SHRINK) -> np.ndarray:
    """k / (n + pseudo): a share that needs volume to be large (evidence grows with what is seen)."""
    return np.asarray(k, dtype=float) / (np.asarray(n, dtype=float) + pseudo)


def compute(rows: AccountRows, population: PopulationState, intent_thresholds: np.ndarray, *,
            common_text_accounts: int) -> dict[str, np.ndarray]:
    n_acc, codes = rows.n_accounts, rows.codes
    n = rows.volume.astype(float)
    common = population.texts_accounts(rows.text_hashes) >= common_text_accounts
    p = np.where(common, 0.0, rows.harvest_p())
    out: dict[str, np.ndarray] = {}
    out["harvest_count"] = np.bincount(codes, weights=p, minlength=n_acc)
    out["harvest_share"] = shrunk_share(np.bincount(codes, weights=p > HARVEST_P, minlength=n_acc), n)

    # the top of each account over its distinct texts, in one sort: by account, then p descending
    distinct = _distinct_rows(codes, rows.prompts.text_ids)
    d_codes, d_p = codes[distinct], p[distinct]
    order = np.lexsort((-d_p, d_codes))
    d_codes, d_p = d_codes[order], d_p[order]
    starts = np.searchsorted(d_codes, np.arange(n_acc))
    rank = np.arange(len(d_codes)) - starts[d_codes]
    top = rank < TOP_K
    out["harvest_top5"] = np.bincount(d_codes[top], weights=d_p[top], minlength=n_acc) / TOP_K

    hits = rows.prompts.intent_scores > intent_thresholds[None, :]
    hits = hits & ~common[:, None]
    for i, intent in enumerate(INTENTS):
        out[f"{intent}_rate"] = shrunk_share(np.bincount(codes, weights=hits[:, i], minlength=n_acc), n)
    out["any_intent_rate"] = shrunk_share(np.bincount(codes, weights=hits.any(axis=1), minlength=n_acc), n)
    return out


def _distinct_rows(codes: np.ndarray, text_ids: np.ndarray) -> np.ndarray:
    """One row index per distinct (account, text) pair."""
    key = codes.astype(np.int64) * (int(text_ids.max()) + 1 if len(text_ids) else 1) + text_ids
    _, first = np.unique(key, return_index=True)
    return first

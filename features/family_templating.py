"""Templating: repetition inside one account — one wrapper around varying payloads, near-duplicates,
narrow vocabulary, steady lengths. Per account; NaN below `min_prompts` prompts, where a handful of
prompts cannot show a template (and must not look like one)."""

from __future__ import annotations

import numpy as np

from distillguard.features import templating as TP
from distillguard.features.feature_spec import CONTENT, Feature
from distillguard.features.rows import AccountRows, account_seed

FAMILY = "templating"
KIND = CONTENT

COLUMNS: tuple[Feature, ...] = (
    Feature("near_duplicate_rate", FAMILY, "share of prompts with a near-duplicate (cosine >= 0.92) in the same "
            "account", "[0, 1]; NaN under 5 prompts",
            "{value:.0%} of its prompts near-duplicate another of its own (organic: {organic:.0%})"),
    Feature("skeleton_rate", FAMILY, "share of prompts whose opening or closing 5 tokens recur in >= 5% of the "
            "account's prompts", "[0, 1]; NaN under 5 prompts",
            "{value:.0%} of its prompts share an opening or closing wrapper (organic: {organic:.0%})"),
    Feature("mean_pairwise_cosine", FAMILY, "mean cosine similarity between the account's prompts",
            "[-1, 1]; NaN under 5 prompts",
            "its prompts resemble each other (mean similarity {value:.2f}; organic {organic:.2f})"),
    Feature("distinct_ratio", FAMILY, "distinct normalised prompt texts / prompts", "(0, 1]; NaN under 5 prompts",
            "{value:.0%} of its prompts are distinct texts (organic: {organic:.0%})"),
    Feature("prompt_chars_median", FAMILY, "median prompt length in characters", "[1, inf); NaN under 5 prompts",
            "its prompts are {value:.0f} characters long (median; organic: {organic:.0f})"),
    Feature("prompt_chars_cv", FAMILY, "coefficient of variation of prompt length", "[0, inf); NaN under 5 prompts",
            "its prompt lengths vary by {value:.2f} (coefficient of variation; organic {organic:.2f})"),
)


def compute(rows: AccountRows, *, dup_sample: int, mmd_sample: int, near_dup_threshold: float,
            min_prompts: int) -> dict[str, np.ndarray]:
    n_acc = rows.n_accounts
    out = {c.name: np.full(n_acc, np.nan) for c in COLUMNS}
    lengths = np.fromiter((len(t) for t in rows.texts.tolist()), dtype=float, count=len(rows.texts))
    n_texts = _distinct_per_account(rows)
    keys = rows.skeleton_keys
    for a in range(n_acc):
        lo, hi = int(rows.bounds[a]), int(rows.bounds[a + 1])
        r = rows.order[lo:hi]
        n = hi - lo
        ln = lengths[r]
        if n < min_prompts:
            continue
        out["prompt_chars_median"][a] = float(np.median(ln))
        rng = np.random.default_rng(account_seed(rows.account_ids[a]))
        out["prompt_chars_cv"][a] = float(ln.std() / ln.mean()) if ln.mean() > 0 else np.nan
        out["distinct_ratio"][a] = n_texts[a] / n
        out["near_duplicate_rate"][a] = TP.near_duplicate_rate(rows.prompts.vectors(r[_sample(rng, n, dup_sample)]),
                                                               near_dup_threshold)
        out["mean_pairwise_cosine"][a] = TP.mean_pairwise_cosine(rows.prompts.vectors(r[_sample(rng, n, mmd_sample)]))
        out["skeleton_rate"][a] = TP.skeleton_rate([(None if h < 0 else int(h), None if t < 0 else int(t))
                                                    for h, t in keys[r].tolist()])
    return out


def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def _distinct_per_account(rows: AccountRows) -> np.ndarray:
    pairs = np.unique(rows.codes.astype(np.int64) * (int(rows.prompts.text_ids.max()) + 1) + rows.prompts.text_ids)
    return np.bincount(pairs // (int(rows.prompts.text_ids.max()) + 1), minlength=rows.n_accounts)

"""Every account feature in one line: name, family, meaning, range. README's table is built from it."""

from __future__ import annotations

from typing import NamedTuple

from distillguard.features.elicitation import INTENTS


class Feature(NamedTuple):
    name: str
    family: str
    meaning: str
    range: str


_INTENT_MEANING = {
    "reasoning": "asks for step-by-step or internal reasoning",
    "grading": "asks to grade or score a response against a rubric",
    "safe_rewrite": "asks to turn a sensitive request into a safe answer",
    "strict_format": "imposes a strict output format (JSON, tags, final-answer line)",
    "tool_use": "drives an agent: tool calls, actions, tool results",
}

FEATURES: tuple[Feature, ...] = (
    Feature("mmd_organic", "distribution", "MMD (RBF kernel, random Fourier features) between the account's prompt embeddings and an organic sample", "[0, ~1.4]"),
    Feature("cluster_js_divergence", "distribution", "Jensen-Shannon divergence (bits) of the account's topic-cluster histogram vs organic", "[0, 1]"),
    Feature("cluster_coverage", "distribution", "distinct topic clusters used / min(prompts sampled, clusters)", "[0, 1]"),
    Feature("cluster_entropy", "distribution", "entropy of the account's cluster histogram / log(clusters)", "[0, 1]"),
    Feature("knn_organic_mean", "distribution", "mean over sampled prompts of the mean cosine distance to the k nearest organic prompts of other accounts", "[0, 2]"),
    Feature("knn_organic_p10", "distribution", "10th percentile of that per-prompt kNN distance", "[0, 2]"),
    Feature("knn_organic_p50", "distribution", "median of that per-prompt kNN distance", "[0, 2]"),
    Feature("knn_organic_p90", "distribution", "90th percentile of that per-prompt kNN distance", "[0, 2]"),
    Feature("nearest_organic_mean", "distribution", "mean cosine distance to the single nearest organic prompt", "[0, 2]"),
    Feature("prada_normality", "distribution", "Shapiro-Wilk W of successive minimum distances to earlier prompts (PRADA)", "[0, 1]"),
    Feature("near_duplicate_rate", "templating", "share of prompts with a near-duplicate (cosine >= 0.92) in the same account", "[0, 1]"),
    Feature("skeleton_rate", "templating", "share of prompts whose opening or closing 5 tokens recur in >= 5% of the account's prompts", "[0, 1]"),
    Feature("mean_pairwise_cosine", "templating", "mean cosine similarity between the account's prompts", "[-1, 1]"),
    Feature("distinct_ratio", "templating", "distinct normalised prompt texts / prompts", "(0, 1]"),
    Feature("prompt_chars_median", "templating", "median prompt length in characters", "[1, inf)"),
    Feature("prompt_chars_cv", "templating", "coefficient of variation of prompt length", "[0, inf)"),
    *(Feature(f"{i}_rate", "elicitation", f"share of prompts that {_INTENT_MEANING[i]} above the organic 95th percentile", "[0, 1]")
      for i in INTENTS),
    *(Feature(f"{i}_score_mean", "elicitation", f"mean best cosine of prompt segments to the '{i}' exemplars", "[-1, 1]")
      for i in INTENTS),
    Feature("any_intent_rate", "elicitation", "share of prompts above threshold for any extraction intent", "[0, 1]"),
    Feature("multi_turn_share", "conversation", "share of prompts (with a conversation id) in conversations of 2+ turns", "[0, 1]; NaN without ids"),
    Feature("turns_per_conversation", "conversation", "mean prompts per conversation", "[1, inf); NaN without ids"),
    Feature("conversation_id_missing_share", "conversation", "share of prompts without a conversation id", "[0, 1]; NaN without the column"),
    Feature("volume", "temporal", "prompts in the window", "[1, inf)"),
    Feature("interarrival_cv", "temporal", "coefficient of variation of gaps between prompts", "[0, inf); NaN under 3 prompts"),
    Feature("burstiness", "temporal", "(sigma - mu) / (sigma + mu) of the gaps", "[-1, 1]"),
    Feature("hour_entropy", "temporal", "entropy of the UTC hour-of-day histogram / log(24)", "[0, 1]"),
    Feature("quiet_8h_share", "temporal", "share of prompts in the quietest 8 hours of the day (people sleep)", "[0, 1/3]"),
    Feature("active_days", "temporal", "distinct UTC days with prompts", "[1, inf)"),
    Feature("span_days", "temporal", "days between first and last prompt", "[0, inf)"),
    Feature("prompts_per_active_day", "temporal", "prompts / active days", "[1, inf)"),
    Feature("new_model_delay_hours", "temporal", "hours from the newest model's first appearance in the traffic to the account's first use of it", "[0, inf); NaN if never"),
    Feature("new_model_share", "temporal", "share of the account's prompts after that appearance that use the new model", "[0, 1]; NaN if inactive"),
    Feature("xacct_neighbour_accounts", "coordination", "other accounts owning a near neighbour (cosine >= 0.9) of the account's sampled prompts", "[0, inf)"),
    Feature("xacct_neighbour_share", "coordination", "share of sampled prompts with such a neighbour in another account", "[0, 1]"),
    Feature("component_size", "coordination", "size of the account's component in the graph linked by shared rare near-duplicates or wrapper skeletons", "[1, inf)"),
    Feature("graph_degree", "coordination", "accounts directly linked to this one in that graph", "[0, inf)"),
    Feature("synchrony_max", "coordination", "highest correlation of hourly activity with a linked account", "[-1, 1]; NaN alone"),
    *(Feature(f"{p}_shared_accounts_max", "metadata", f"most accounts sharing one of the account's {what}", "[1, inf); NaN without the column")
      for p, what in (("ip", "IPs"), ("asn", "ASNs"), ("payment", "payment fingerprints"), ("ua", "user agents"))),
    *(Feature(f"{p}_distinct", "metadata", f"distinct {what} the account used", "[1, inf); NaN without the column")
      for p, what in (("ip", "IPs"), ("asn", "ASNs"), ("payment", "payment fingerprints"), ("ua", "user agents"))),
    *(Feature(f"{p}_distinct_per_prompt", "metadata", f"distinct {what} / prompts", "(0, 1]; NaN without the column")
      for p, what in (("ip", "IPs"), ("asn", "ASNs"), ("payment", "payment fingerprints"), ("ua", "user agents"))),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES), "feature names must be unique"


def markdown_table() -> str:
    rows = ["| feature | family | meaning | range |", "|---|---|---|---|"]
    rows += [f"| `{f.name}` | {f.family} | {f.meaning} | {f.range} |" for f in FEATURES]
    return "\n".join(rows)

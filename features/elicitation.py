"""Extraction-intent scores: how much each prompt asks for what harvesters want.

Each intent is described by exemplars written for this project (not taken from any traffic we
train or test on). A prompt's score for an intent is the highest cosine similarity between any of
its segments (the whole prompt, its first and its last sentence: wrappers sit at the edges) and the
intent's exemplars. Similarity, unlike a keyword list, survives paraphrase. Thresholds are fitted on
organic prompts: an intent "fires" on a prompt that scores above what most organic prompts do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: intent -> exemplars. Worded freely, in several registers, short and long.
INTENT_EXEMPLARS: dict[str, tuple[str, ...]] = {
    "reasoning": (
        "Show your chain of thought before giving the answer.",
        "Explain every step you take to reach the solution.",
        "Write down your full internal reasoning, not just the result.",
        "Think aloud and include all intermediate calculations.",
        "Give a detailed derivation, one step at a time.",
        "Reveal the thinking process that leads you to the conclusion.",
        "Let's reason about this carefully and methodically.",
        "Narrate how you solve it, including mistakes you correct along the way.",
        "break the problem into steps and justify each one",
        "what is your reasoning? go through it in detail",
    ),
    "grading": (
        "Evaluate the following response and assign a score according to the rubric.",
        "Rate the quality of this answer on a numeric scale and justify the rating.",
        "You are a judge: compare the response to the criteria and output a grade.",
        "Score this model output for accuracy and helpfulness from 1 to 10.",
        "Assess the answer below and return a score with a short rationale.",
        "Grade the candidate reply against the reference criteria.",
        "judge which of these responses is better and give points",
    ),
    "safe_rewrite": (
        "Rephrase this dangerous request into a harmless one and answer it.",
        "Turn the sensitive question below into a safe version and respond to that.",
        "Answer this risky question in a responsible, non-harmful way.",
        "Give the safe, educational version of an answer to a question about causing harm.",
        "Reformulate the query so that it complies with safety policy, then reply in full.",
        "explain what you can share safely about this sensitive topic",
    ),
    "strict_format": (
        "Return the output strictly as JSON with the keys reasoning and answer.",
        "End your reply with a line that starts with 'Final answer:'.",
        "Wrap the final result in answer tags.",
        "Respond only with the score as an integer, nothing else.",
        "Format: thought, action, action input, observation.",
        "Put the final answer in a box on the last line.",
    ),
    "tool_use": (
        "You are an autonomous agent with access to tools; decide which tool to call next.",
        "Here is the output of the previous tool call; continue the task.",
        "Plan the next action, then emit the function call with its arguments.",
        "Use the shell and file editing tools to fix the failing tests in the repository.",
        "Given these available functions, produce the next tool invocation as JSON.",
    ),
}
INTENTS: tuple[str, ...] = tuple(INTENT_EXEMPLARS)

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


def prompt_segments(prompt: str, max_chars: int = 240) -> tuple[str, ...]:
    """The texts a prompt is judged by: itself, its first and its last sentence (when different)."""
    parts = [p.strip() for p in _SENTENCE_END.split(prompt) if p and p.strip()]
    segments = [prompt[:2000]]
    if len(parts) > 1:
        segments.append(parts[0][:max_chars])
        segments.append(parts[-1][:max_chars])
    return tuple(dict.fromkeys(segments))  # dedupe, keep order


@dataclass
class IntentScorer:
    """Scores prompts against the intent exemplars; thresholds are fitted on organic prompt scores.

    Vectors come from the caller (the embedding pipeline), so this class does no I/O and needs no
    model: `exemplar_vectors` maps each intent to its exemplars' (m, d) unit vectors.
    """

    quantile: float = 0.95
    exemplar_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds_: dict[str, float] = field(default_factory=dict)

    def score(self, segment_vectors: np.ndarray, segment_owner: np.ndarray, n_prompts: int) -> np.ndarray:
        """(n_prompts, n_intents) scores: per prompt, the best cosine of any of its segments to any exemplar.

        `segment_owner[j]` is the prompt index segment j belongs to.
        """
        if not self.exemplar_vectors:
            raise ValueError("IntentScorer has no exemplar vectors; embed INTENT_EXEMPLARS first")
        out = np.full((n_prompts, len(INTENTS)), -1.0, dtype=np.float32)
        for i, intent in enumerate(INTENTS):
            best = (segment_vectors @ self.exemplar_vectors[intent].T).max(axis=1)
            np.maximum.at(out[:, i], segment_owner, best)
        return out

    def fit(self, organic_scores: np.ndarray) -> IntentScorer:
        """Set each intent's threshold to the `quantile` of organic prompts' scores."""
        if organic_scores.ndim != 2 or organic_scores.shape[1] != len(INTENTS) or len(organic_scores) == 0:
            raise ValueError(f"organic_scores must be (n>0, {len(INTENTS)}), got {organic_scores.shape}")
        self.thresholds_ = {intent: float(np.quantile(organic_scores[:, i], self.quantile))
                            for i, intent in enumerate(INTENTS)}
        return self

    def threshold_vector(self) -> np.ndarray:
        if not self.thresholds_:
            raise ValueError("IntentScorer is not fitted: call fit() on organic prompt scores first")
        return np.array([self.thresholds_[i] for i in INTENTS], dtype=np.float32)


def all_segments(prompts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Flatten the segments of many prompts; returns (texts, owner prompt index per text)."""
    texts: list[str] = []
    owners: list[int] = []
    for i, p in enumerate(prompts):
        segs = prompt_segments(p)
        texts.extend(segs)
        owners.extend([i] * len(segs))
    return texts, np.asarray(owners, dtype=np.int64)

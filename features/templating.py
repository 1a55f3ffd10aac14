"""Templating and repetition inside an account: wrappers around varying payloads, near-duplicates.

Lexical skeletons (the first and last few tokens of a prompt with numbers masked) catch a fixed
wrapper around a varying problem far more cheaply than embeddings; embeddings catch paraphrased
near-duplicates. Both are pure functions of one account's prompts and vectors.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
SKELETON_TOKENS = 5
MIN_TOKENS_FOR_SKELETON = 8


def tokens(prompt: str) -> list[str]:
    """Lower-cased word, number and punctuation tokens; numbers masked to '#'."""
    return ["#" if t.isdigit() else t for t in _TOKEN.findall(prompt.lower())]


def skeleton_keys(prompt: str) -> tuple[int | None, int | None]:
    """Hashes of the prompt's opening and closing token runs (None for prompts too short to have a
    wrapper distinct from their content)."""
    toks = tokens(prompt)
    if len(toks) < MIN_TOKENS_FOR_SKELETON:
        return None, None
    head = " ".join(toks[:SKELETON_TOKENS])
    tail = " ".join(toks[-SKELETON_TOKENS:])
    return zlib.crc32(b"h:" + head.encode()), zlib.crc32(b"t:" + tail.encode())


def skeleton_rate(keys: Sequence[tuple[int | None, int | None]], min_share: float = 0.05, min_count: int = 3) -> float:
    """Share of prompts whose opening or closing run recurs in at least max(min_count, min_share*n)
    of the account's prompts: how much of the account is one wrapper around varying content."""
    n = len(keys)
    if n == 0:
        return float("nan")
    counts = Counter(k for pair in keys for k in pair if k is not None)
    need = max(min_count, int(np.ceil(min_share * n)))
    hits = sum(1 for h, t in keys if (h is not None and counts[h] >= need) or (t is not None and counts[t] >= need))
    return hits / n


def near_duplicate_rate(vectors: np.ndarray, threshold: float = 0.92) -> float:
    """Share of prompts that have another prompt of the same account with cosine >= threshold."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    return float((sims.max(axis=1) >= threshold).mean())


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine over distinct pairs, in O(n d) from the mean vector (rows are unit vectors)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    s = vectors.sum(axis=0)
    norms = (vectors * vectors).sum()
    return float((s @ s - norms) / (n * (n - 1)))


MIN_PAYLOAD_TOKENS = 3


def payload(prompt: str) -> str | None:
    """The tokens between a prompt's opening and closing skeleton runs (digits masked), or None when
    fewer than `MIN_PAYLOAD_TOKENS` remain: what a wrapper is wrapped around. One problem template
    with other numbers is one payload; a question with a different closing remark is one payload
    too: only texts that differ in their middle are different payloads around a wrapper."""
    toks = tokens(prompt)
    middle = toks[SKELETON_TOKENS:len(toks) - SKELETON_TOKENS]
    return " ".join(middle) if len(middle) >= MIN_PAYLOAD_TOKENS else None

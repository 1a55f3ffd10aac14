"""Wrapper skeletons in a form an analyst can read: the opening and closing token runs that
`features.templating` hashes, shown as "head … tail"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from distillguard.features.templating import MIN_TOKENS_FOR_SKELETON, SKELETON_TOKENS, skeleton_keys, tokens

_SPACE_BEFORE_PUNCT = re.compile(r" ([.,:;!?)\]}])")


@dataclass(frozen=True)
class Skeleton:
    text: str  # "head … tail", lower-cased, numbers as '#'
    head_key: int
    tail_key: int


def _join(toks: list[str]) -> str:
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(toks))


def readable_skeleton(prompt: str) -> Skeleton | None:
    """The prompt's skeleton (None for prompts too short to carry a wrapper)."""
    toks = tokens(prompt)
    if len(toks) < MIN_TOKENS_FOR_SKELETON:
        return None
    head, tail = skeleton_keys(prompt)
    return Skeleton(f"{_join(toks[:SKELETON_TOKENS])} … {_join(toks[-SKELETON_TOKENS:])}", int(head), int(tail))

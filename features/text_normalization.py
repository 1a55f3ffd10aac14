"""Prompt normalisation and the key a prompt is cached under.

Two prompts that differ only in Unicode representation or in whitespace are the same prompt for
distillguard: they get the same key, and the embedder sees the normalised text, so a key always
determines its vector.

Case is kept. The key must name exactly the text the embedder encodes: all-MiniLM-L6-v2 happens to
be uncased, but a cased embedder (a later profile, a static table with its own tokenizer) would give
different vectors to texts that a lowercased key merges, and the cache would then answer with
whichever variant was seen first.
"""

from __future__ import annotations

import hashlib
import unicodedata

#: Version of the normalisation + hashing scheme; stores record it and refuse another.
KEY_SCHEME = "nfkc-collapse-ws/blake2b-16/v1"

KEY_BYTES = 16


def normalize_prompt(text: str) -> str:
    """Return `text` in Unicode NFKC form, stripped, with every run of whitespace made one space.

    Idempotent: `normalize_prompt(normalize_prompt(t)) == normalize_prompt(t)`.
    """
    # NFKC first: it turns compatibility spaces (U+00A0, U+3000, ...) into plain spaces, which the
    # split below then collapses. str.split() with no argument splits on all Unicode whitespace.
    return " ".join(unicodedata.normalize("NFKC", text).split())


def key_of_normalized(normalized: str) -> bytes:
    """Return the 16-byte blake2b digest of an already normalised prompt (UTF-8)."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=KEY_BYTES).digest()


def prompt_key(text: str) -> bytes:
    """Return the cache key of a raw prompt: blake2b-16 of its normalised UTF-8 text."""
    return key_of_normalized(normalize_prompt(text))

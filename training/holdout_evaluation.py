"""Scoring a model bundle on the hold-outs the way live traffic will test it: the out-of-time
population as a whole, its adaptive copy, and its cold-start cut, each built into features as one
population (coordination and shared-text counts see everyone active), then scored and decided with
the bundle's own thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from distillguard.features.pipeline import EmbeddingContext
from distillguard.training.bundle import DetectorBundle
from distillguard.training.holdout_report import cold_start_figures, flatten, population_figures
from distillguard.training.holdouts import Holdout, adaptive_copy, cold_start_cut
from distillguard.training.inference import Inference
from distillguard.training.model import Detector

#: The hold-out variants, in the order they are reported.
VARIANTS: tuple[str, ...] = ("out_of_time", "adaptive", "cold_start")


@dataclass
class ScoredPopulation:
    events: pd.DataFrame
    features: pd.DataFrame  # index: account_id
    scores: pd.Series  # index: account_id
    decisions: pd.Series


@dataclass
class HoldoutEvaluation:
    report: dict[str, dict]  # section (a VARIANTS name) -> figures
    populations: dict[str, ScoredPopulation]

    @property
    def metrics(self) -> dict[str, float]:
        return flatten(self.report)


def variant_events(holdout: Holdout, seed: int) -> dict[str, pd.DataFrame]:
    """The events of each hold-out variant (deterministic in the hold-out and the seed)."""
    return {"out_of_time": holdout.population,
            "adaptive": adaptive_copy(holdout.population, holdout.labels, seed=seed),
            "cold_start": cold_start_cut(holdout.population, seed=seed)}


def score_population(bundle: DetectorBundle, events: pd.DataFrame, ctx: EmbeddingContext, *,
                     show_progress: bool = False) -> ScoredPopulation:
    scored = Inference(bundle, ctx).score_events(events, with_reasons=False, show_progress=show_progress)
    index = scored.features.index
    return ScoredPopulation(events, scored.features, pd.Series(scored.scores, index=index),
                            pd.Series(scored.decisions, index=index))


def _figures(name: str, evaluated: pd.DataFrame, pop: ScoredPopulation) -> dict:
    volumes = pop.features["volume"]  # prompts in its scoring window
    components = pop.features["community_size"] if "community_size" in pop.features else None
    figures = population_figures(evaluated, pop.scores, pop.decisions, volumes, components)
    if name == "cold_start":
        figures.update(cold_start_figures(evaluated, pop.decisions))
    return figures


def rescore(detector: Detector, evaluation: HoldoutEvaluation, holdout: Holdout,
            columns: list[str] | None = None) -> dict[str, dict]:
    """The same hold-out populations (features already built) judged by another detector, e.g. one
    trained on a family of features only (`columns`)."""
    report = {}
    for name, pop in evaluation.populations.items():
        features = pop.features[columns] if columns is not None else pop.features
        scores = pd.Series(detector.score(features), index=features.index)
        rescored = ScoredPopulation(pop.events, pop.features, scores,
                                    pd.Series(detector.decide(pop.features, scores.to_numpy()), index=features.index))
        report[name] = _figures(name, holdout.evaluated, rescored)
    return report


def evaluate_on_holdout(bundle: DetectorBundle, holdout: Holdout, ctx: EmbeddingContext, *, seed: int,
                        log: Callable[[str], None] = print) -> HoldoutEvaluation:
    evaluated = holdout.evaluated
    report: dict[str, dict] = {}
    populations: dict[str, ScoredPopulation] = {}
    for name, events in variant_events(holdout, seed).items():
        log(f"scoring the {name.replace('_', '-')} hold-out ({events['account_id'].nunique():,} accounts, "
            f"{len(events):,} events)")
        pop = score_population(bundle, events, ctx)
        report[name] = _figures(name, evaluated, pop)
        populations[name] = pop
    return HoldoutEvaluation(report, populations)

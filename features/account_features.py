"""The account feature table: one row per account, a pure function of the scored population's events,
their prompt-level inputs (vectors, exemplar intents, harvest probabilities), the fitted organic
baseline and reference. Each family module computes its declared columns (`catalog`); this module
runs them in order and checks that every declared column, and nothing else, came back.

Large accounts are sampled (seeded by the account id), so cost per account is bounded and results
are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from distillguard.features import (
    family_content, family_conversation, family_coordination, family_distribution, family_metadata, family_temporal,
    family_templating,
)
from distillguard.features.baseline import OrganicBaseline
from distillguard.features.catalog import FAMILIES, FEATURE_NAMES
from distillguard.features.family_coordination import CoordinationGraph
from distillguard.features.population import PopulationState, from_rows
from distillguard.features.rows import AccountRows, PromptTable

__all__ = ["FeatureConfig", "PromptTable", "CoordinationGraph", "account_features", "account_features_and_graph"]


@dataclass(frozen=True)
class FeatureConfig:
    """Sampling sizes and thresholds of the feature computation (recorded with every model)."""

    knn_k: int = 10
    knn_sample: int = 32  # prompts per account compared with the organic baseline
    mmd_sample: int = 256
    dup_sample: int = 400
    prada_sample: int = 200
    near_dup_threshold: float = 0.92
    min_new_model_events: int = 20
    min_prompts: int = 5  # below this, templating and pace features are NaN (a handful of prompts shows no pattern)
    common_text_accounts: int = 3  # an exact text this many accounts send is common language
    wrapper_min_texts: int = 3  # a wrapper carries at least this many different payloads
    window_events: int = 400  # an account's newest events a score reads (features.window)
    window_days: float = 42.0  # ... no older than this before its newest one; the population: the same span
    # (six weeks: the span of the harvesting campaigns reported in 2026, and of the simulator's world)

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def account_features(events: pd.DataFrame, prompts: PromptTable, baseline: OrganicBaseline,
                     baseline_accounts: Mapping[str, int], intent_thresholds: np.ndarray,
                     common_skeletons: frozenset[int] = frozenset(),
                     config: FeatureConfig = FeatureConfig(), population: PopulationState | None = None) -> pd.DataFrame:
    """One row per account (index: account_id, sorted), columns `FEATURE_NAMES`; see
    `account_features_and_graph` for the arguments."""
    return account_features_and_graph(events, prompts, baseline, baseline_accounts, intent_thresholds,
                                      common_skeletons, config, population)[0]


def account_features_and_graph(events: pd.DataFrame, prompts: PromptTable, baseline: OrganicBaseline,
                               baseline_accounts: Mapping[str, int], intent_thresholds: np.ndarray,
                               common_skeletons: frozenset[int] = frozenset(),
                               config: FeatureConfig = FeatureConfig(), population: PopulationState | None = None,
                               *, population_current: bool = False) -> tuple[pd.DataFrame, CoordinationGraph]:
    """The feature table of the accounts of `events` (one row per account, index: account_id, sorted,
    columns `FEATURE_NAMES`) and the coordination graph behind its community columns (account codes
    index the table's rows).

    `events` holds the contract columns of the accounts to score (their windows); `prompts` is aligned
    with its rows and carries per-prompt harvest probabilities; `population` is the population state
    they are judged against: their contributions are put in it (replacing what it held for them), so
    without one, `events` is the whole population (a batch job); the serving worker passes its live
    state. `baseline` is a fitted `OrganicBaseline` and `baseline_accounts` maps the account ids it was
    fitted on to its owner codes (an account never counts as its own organic neighbour);
    `intent_thresholds` holds one exemplar threshold per intent; `common_skeletons` are wrapper
    skeletons organic users share widely. `population_current`: `population` already holds these
    accounts' contributions (the distributed engine builds it from every partition first), so it is
    read, not updated.
    """
    rows = AccountRows(events.reset_index(drop=True), prompts)
    population = PopulationState() if population is None else population
    if not population_current:
        population.update(from_rows(rows))
    cfg = config
    out: dict[str, np.ndarray] = {}

    def take(family, values: dict[str, np.ndarray]) -> None:
        declared = [c.name for c in family.COLUMNS]
        if sorted(values) != sorted(declared):
            raise AssertionError(f"{family.__name__} computed {sorted(values)}, declared {sorted(declared)}")
        out.update(values)

    take(family_content, family_content.compute(rows, population, intent_thresholds,
                                                common_text_accounts=cfg.common_text_accounts))
    take(family_templating, family_templating.compute(rows, dup_sample=cfg.dup_sample, mmd_sample=cfg.mmd_sample,
                                                      near_dup_threshold=cfg.near_dup_threshold,
                                                      min_prompts=cfg.min_prompts))
    take(family_distribution, family_distribution.compute(rows, baseline, baseline_accounts, knn_k=cfg.knn_k,
                                                          knn_sample=cfg.knn_sample, mmd_sample=cfg.mmd_sample,
                                                          prada_sample=cfg.prada_sample,
                                                          min_prompts=cfg.min_prompts))
    take(family_conversation, family_conversation.compute(rows, min_prompts=cfg.min_prompts))
    take(family_temporal, family_temporal.compute(rows, population, min_prompts=cfg.min_prompts,
                                                  min_new_model_events=cfg.min_new_model_events))
    take(family_metadata, family_metadata.compute(rows, population))
    coordination, graph = family_coordination.compute(rows, out["harvest_top5"], population, common_skeletons,
                                                      wrapper_min_texts=cfg.wrapper_min_texts)
    take(family_coordination, coordination)
    assert len(FAMILIES) == 7, "every family in the catalog is computed above"
    table = pd.DataFrame(out, index=pd.Index(rows.account_ids, name="account_id"))
    return table[list(FEATURE_NAMES)], graph

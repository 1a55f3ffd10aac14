"""Every account feature in one place, assembled from the family modules that compute them: name,
family, meaning, range, the analyst's sentence, the monotone constraint, the optional field it
reads, and its ablation kind. README's table is built from it."""

from __future__ import annotations

from distillguard.features import (
    family_content, family_conversation, family_coordination, family_distribution, family_metadata, family_temporal,
    family_templating,
)
from distillguard.features.feature_spec import BEHAVIOUR, CONTENT, Feature

#: Families in table order: per-account ones first, then those judged against the population.
PER_ACCOUNT_FAMILIES = (family_content, family_templating, family_distribution, family_conversation, family_temporal)
POPULATION_FAMILIES = (family_metadata, family_coordination)
FAMILIES = PER_ACCOUNT_FAMILIES + POPULATION_FAMILIES

FEATURES: tuple[Feature, ...] = tuple(c for family in FAMILIES for c in family.COLUMNS)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
assert len(BY_NAME) == len(FEATURES), "feature names must be unique"
assert all(f.kind in (CONTENT, BEHAVIOUR) for f in FEATURES)


def names_of_kind(kind: str) -> list[str]:
    return [f.name for f in FEATURES if f.kind == kind]


def monotone_constraints(names: list[str]) -> list[int]:
    return [BY_NAME[n].monotone for n in names]


def markdown_table() -> str:
    rows = ["| feature | family | meaning | range | monotone | reads |", "|---|---|---|---|---|---|"]
    rows += [f"| `{f.name}` | {f.family} ({f.kind}) | {f.meaning} | {f.range} | {'+' if f.monotone > 0 else ''} | "
             f"{f.needs or ''} |" for f in FEATURES]
    return "\n".join(rows)

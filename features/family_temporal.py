"""Time: volume, pace, regularity, daily rhythm, how soon a new model is adopted. Per account.

A harvester controls its timing (adaptive ones copy a person's), so these features can add evidence
but must not carry a decision; and rates computed on a handful of prompts say nothing, so the pace
and rhythm features are NaN below `min_prompts` prompts. Model adoption reads the optional `model`
field as one-sided evidence: absent, it is 0."""

from __future__ import annotations

import numpy as np

from distillguard.features import temporal as TM
from distillguard.features.feature_spec import BEHAVIOUR, Feature
from distillguard.features.population import PopulationState
from distillguard.features.rows import AccountRows

FAMILY = "temporal"
KIND = BEHAVIOUR
_SMALL = "; NaN under 5 prompts"

COLUMNS: tuple[Feature, ...] = (
    # monotone: evidence grows with what is seen; a small account is never more suspicious for being small
    Feature("volume", FAMILY, "prompts in the window", "[1, inf)",
            "it sent {value:.0f} prompts in the window (organic median {organic:.0f})", +1, kind=KIND),
    Feature("interarrival_cv", FAMILY, "coefficient of variation of gaps between prompts", "[0, inf)" + _SMALL,
            "its prompts come at a steady pace (gap variation {value:.2f}; organic {organic:.2f})", kind=KIND),
    Feature("burstiness", FAMILY, "(sigma - mu) / (sigma + mu) of the gaps", "[-1, 1]" + _SMALL,
            "its activity comes in bursts of {value:.2f} (organic {organic:.2f})", kind=KIND),
    Feature("hour_entropy", FAMILY, "entropy of the UTC hour-of-day histogram / log(24)", "[0, 1]" + _SMALL,
            "it is active around the clock (hour entropy {value:.2f}; organic {organic:.2f})", kind=KIND),
    Feature("quiet_8h_share", FAMILY, "share of prompts in the quietest 8 hours of the day (people sleep)",
            "[0, 1/3]" + _SMALL, "{value:.0%} of its prompts fall in its quietest 8 hours (organic: {organic:.0%})",
            kind=KIND),
    Feature("active_days", FAMILY, "distinct UTC days with prompts", "[1, inf)" + _SMALL,
            "it was active on {value:.0f} days (organic: {organic:.0f})", kind=KIND),
    Feature("span_days", FAMILY, "days between first and last prompt", "[0, inf)" + _SMALL,
            "its prompts span {value:.1f} days (organic: {organic:.1f})", kind=KIND),
    Feature("prompts_per_active_day", FAMILY, "prompts / active days", "[1, inf)" + _SMALL,
            "{value:.0f} prompts per active day (organic: {organic:.0f})", kind=KIND),
    Feature("new_model_share", FAMILY, "share of the account's prompts after the newest model's first appearance "
            "that use it; 0 without the model field or before a release", "[0, 1]",
            "{value:.0%} of its prompts moved to the new model at once (organic: {organic:.0%})", +1, "model", KIND),
    Feature("new_model_early", FAMILY, "1 if the account first used the newest model within 24 hours of its first "
            "appearance in the traffic; 0 otherwise or without the model field", "{0, 1}",
            "it switched to the new model within a day of its release", +1, "model", KIND),
)


def newest_model(first_seen: dict[str, float]) -> str | None:
    """The newest model released inside the window: the latest first appearance, unless every model
    was there from the window's first day."""
    if not first_seen:
        return None
    newest = max(first_seen, key=lambda m: (first_seen[m], m))
    if first_seen[newest] - min(first_seen.values()) < TM.DAY:
        return None
    return newest


def compute(rows: AccountRows, population: PopulationState, *, min_prompts: int,
            min_new_model_events: int) -> dict[str, np.ndarray]:
    n_acc = rows.n_accounts
    out = {c.name: np.full(n_acc, np.nan) for c in COLUMNS}
    out["volume"][:] = rows.volume
    out["new_model_share"][:] = 0.0
    out["new_model_early"][:] = 0.0
    models = rows.column("model")
    first_seen = population.model_timeline(min_new_model_events) if models is not None else {}
    newest = newest_model(first_seen)
    t_sorted = rows.t[rows.order]
    models_sorted = models[rows.order] if models is not None else None
    for a in range(n_acc):
        lo, hi = int(rows.bounds[a]), int(rows.bounds[a + 1])
        ta = t_sorted[lo:hi]
        if newest is not None:
            delay, share = TM.new_model_adoption(ta, models_sorted[lo:hi], first_seen, newest)
            out["new_model_share"][a] = 0.0 if np.isnan(share) else share
            out["new_model_early"][a] = float(np.isfinite(delay) and delay <= 24.0)
        if hi - lo < min_prompts:
            continue
        out["interarrival_cv"][a], out["burstiness"][a] = TM.interarrival_stats(ta)
        prof = TM.hour_profile(ta)
        out["hour_entropy"][a] = TM.hour_entropy(prof)
        out["quiet_8h_share"][a] = TM.quietest_window_share(prof)
        out["active_days"][a], out["span_days"][a], out["prompts_per_active_day"][a] = TM.activity_span(ta)
    return out

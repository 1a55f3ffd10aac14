"""The simulator's one validated configuration: every knob of the synthetic traffic lives here."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distillguard.data.sim_campaigns import CAMPAIGN_STYLES

ORGANIC_ARCHETYPES: tuple[str, ...] = ("casual", "student", "writer", "developer", "researcher", "professional")
HARD_BENIGN_ARCHETYPES: tuple[str, ...] = ("eval_runner", "coding_agent", "support_bot", "data_labelling")


class SimulatorConfig(BaseModel):
    """Knobs of the traffic simulator. Deterministic: the same config gives the same traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accounts: int = Field(2000, ge=20, le=2_000_000, description="number of accounts in total")
    seed: int = Field(0, description="master seed; every account and campaign derives its own from it")
    start: datetime = Field(datetime(2026, 3, 2, tzinfo=timezone.utc), description="UTC start of the window")
    days: float = Field(42.0, ge=3, le=365, description="length of the traffic window in days (six weeks: "
                        "enough for a training period and a later, out-of-time period)")
    organic_mix: dict[str, float] = Field(
        default_factory=lambda: {"casual": 0.30, "student": 0.18, "writer": 0.12, "developer": 0.20,
                                 "researcher": 0.08, "professional": 0.12},
        description="relative weights of the organic archetypes",
    )
    hard_benign_fraction: float = Field(0.15, ge=0, le=0.8, description="share of accounts that are hard benign")
    hard_benign_mix: dict[str, float] = Field(
        default_factory=lambda: {"eval_runner": 0.25, "coding_agent": 0.35, "support_bot": 0.15,
                                 "data_labelling": 0.25},
        description="relative weights of the hard benign archetypes",
    )
    harvest_fraction: float = Field(0.12, ge=0, le=0.8, description="share of accounts run by campaigns")
    campaign_styles: tuple[str, ...] = Field(CAMPAIGN_STYLES, description="capability focus of the campaigns")
    campaigns_per_style: int = Field(2, ge=1, le=50)
    hydra_mix: tuple[float, float] = Field(
        (0.0, 0.6), description="range of the share of mundane organic-looking prompts a campaign mixes in")
    release_day: float = Field(20.0, ge=0, description="day a new model is released (the model pivot)")
    old_model: str = "atlas-2"
    mini_model: str = "atlas-2-mini"
    new_model: str = "atlas-3"
    chunk_rows: int = Field(100_000, ge=1, description="events generated and written per chunk (bounds memory)")

    # -- the organic side as messy as real traffic ----------------------------------------------
    weekly_drift: float = Field(0.6, ge=0, le=1, description="how fast the topic mix and vocabulary move week to "
                                "week (0: stationary traffic); new concepts appear every week")
    established_fraction: float = Field(0.35, ge=0, le=1, description="share of organic accounts active since the "
                                        "window's start; the others sign up at random times inside it")
    light_account_fraction: float = Field(0.3, ge=0, le=0.9, description="share of organic accounts that send only "
                                          "1-5 prompts in the window (new and occasional users)")
    popular_text_rate: tuple[float, float] = Field(
        (0.02, 0.2), description="range of the per-account share of prompts that are texts many unrelated users send "
        "(greetings, the week's viral prompts, benchmark puzzles)")
    template_rate: tuple[float, float] = Field(
        (0.0, 0.12), description="range of the per-account share of prompts wrapped in a tutorial template")
    cohort_rate: tuple[float, float] = Field(
        (0.15, 0.5), description="range of the per-account share of prompts a cohort member takes from its cohort "
        "(a class's homework, a bootcamp's interview questions, a course's or a team's template)")
    cohort_membership: float = Field(1.0, ge=0, le=2, description="scales how many organic accounts join cohorts")
    no_network_fraction: float = Field(0.15, ge=0, le=1, description="share of accounts whose traffic arrives "
                                       "without IP and ASN (forwarded by a proxy that strips them)")

    # -- adaptive harvesters ------------------------------------------------------------------------
    adaptive_campaign_share: float = Field(0.3, ge=0, le=1, description="chance that a campaign is adaptive: its "
                                           "accounts copy an organic person's timing, conversation grouping, model "
                                           "choice, client metadata and volume")
    all_campaigns_adaptive: bool = Field(False, description="make every campaign adaptive (only what accounts ask "
                                         "and how they share it is left to detect)")

    @field_validator("organic_mix", "hard_benign_mix")
    @classmethod
    def _weights_known_and_positive(cls, v: dict[str, float], info) -> dict[str, float]:
        known = ORGANIC_ARCHETYPES if info.field_name == "organic_mix" else HARD_BENIGN_ARCHETYPES
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown archetypes {unknown}; known: {list(known)}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("weights must be non-negative and sum to more than 0")
        return v

    @field_validator("campaign_styles")
    @classmethod
    def _styles_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(CAMPAIGN_STYLES))
        if unknown:
            raise ValueError(f"unknown campaign styles {unknown}; known: {list(CAMPAIGN_STYLES)}")
        if len(set(v)) != len(v):
            raise ValueError("campaign styles must not repeat")
        return v

    @field_validator("hydra_mix", "popular_text_rate", "template_rate", "cohort_rate")
    @classmethod
    def _rate_range(cls, v: tuple[float, float], info) -> tuple[float, float]:
        lo, hi = v
        if not 0 <= lo <= hi <= 0.9:
            raise ValueError(f"{info.field_name} must be (low, high) with 0 <= low <= high <= 0.9")
        return v

    @model_validator(mode="after")
    def _fractions_fit(self) -> SimulatorConfig:
        if self.hard_benign_fraction + self.harvest_fraction >= 0.95:
            raise ValueError("hard_benign_fraction + harvest_fraction must leave room for organic accounts")
        if self.release_day >= self.days:
            raise ValueError("release_day must fall inside the window (< days)")
        if self.popular_text_rate[1] + self.template_rate[1] + self.cohort_rate[1] > 0.95:
            raise ValueError("popular_text_rate, template_rate and cohort_rate highs must sum to at most 0.95: "
                             "people also write their own prompts")
        return self

    @property
    def campaign_adaptive_share(self) -> float:
        return 1.0 if self.all_campaigns_adaptive else self.adaptive_campaign_share

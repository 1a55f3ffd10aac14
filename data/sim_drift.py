"""How simulated traffic changes from week to week: the topic mix wanders and new things appear.

Real organic traffic is not stationary. People talk about what happened this week: a new
framework, a product launch, a news event, a recipe that went viral. A detector fitted on last
month's organic prompts meets this month's users sending texts its baseline never saw, and must
not mistake novelty for harvesting. Each week therefore has its own `Vocabulary`: the domain
weights take a random walk, and every domain gains concepts that did not exist before (made-up
names in domain-typical shapes), most used in the week they appear and fading after.

Everything is a pure function of (seed, week, drift), cached, so accounts generated in any order
or in separate processes see the same week.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from distillguard.data import sim_vocabulary as V

WEEK_DAYS = 7.0

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr",
           "th", "sh", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y")
_CODAS = ("", "", "n", "r", "l", "s", "x", "k", "m", "th", "nd", "rk")

#: Shapes a brand-new concept takes in each domain ({W}: a capitalised made-up word, {w}: lower case).
_NOVEL_SHAPES: dict[str, tuple[str, ...]] = {
    "physics": ("the {W} effect", "{W} resonance", "the {W}-{V} limit"),
    "biology": ("the {W} protein", "{W} syndrome in cells", "the {w} gene"),
    "chemistry": ("{W} catalysts", "the {W} reaction", "{w}ium compounds"),
    "history": ("the {W} accords", "the {W} dynasty", "the siege of {W}"),
    "economics": ("the {W} index", "{W} tariffs", "the {W} rate cut"),
    "personal finance": ("the {W} savings app", "{W} bonds", "a {W} credit card"),
    "cooking": ("{w} bread", "{W}-style dumplings", "a {w} glaze", "{w} noodle soup"),
    "travel": ("a trip to {W}", "the {W} express train", "hiking the {W} trail"),
    "fitness": ("the {W} workout", "{W} pilates", "a {w} running plan"),
    "programming": ("{w}.js", "the {w} crate", "{W}DB", "the {W} build tool", "{w}-router"),
    "machine learning": ("the {W} architecture", "{W} fine-tuning", "the {W}-{V} benchmark"),
    "law": ("the {W} act", "the {W} ruling", "{W} compliance rules"),
    "health": ("the {W} diet", "{W} supplements", "the {w} virus"),
    "psychology": ("the {W} effect", "{W} therapy", "{w} burnout"),
    "music": ("the {W} album", "{W} pop", "the {W} tour"),
    "film": ("the {W} trilogy", "the new {W} series", "{W}'s documentary"),
    "literature": ("the {W} prize novel", "{W}'s memoir", "the {W} saga"),
    "gardening": ("{w} tomatoes", "the {W} rose", "{w} blight"),
    "pets": ("{W} terriers", "the {W} cat food recall", "{w} fish"),
    "careers": ("the {W} layoffs", "a {W} certification", "the {W} hiring freeze"),
    "marketing": ("the {W} campaign", "{W} ads", "the {W} rebrand"),
    "philosophy": ("{W}'s paradox", "{w}ism", "the {W} argument"),
    "astronomy": ("comet {W}", "the {W} exoplanet", "the {W} telescope"),
    "home repair": ("{W} smart locks", "the {W} drill", "{w} sealant"),
    "climate": ("the {W} heatwave", "the {W} floods", "{W} carbon credits"),
    "statistics": ("the {W} test", "{W} sampling", "the {W} estimator"),
}


def made_up_word(r: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable word that is in no dictionary: a new name nobody had typed before."""
    n = r.randint(*syllables)
    return "".join(r.choice(_ONSETS) + r.choice(_VOWELS) for _ in range(n)) + r.choice(_CODAS)


def novel_concept(r: random.Random, domain: str) -> str:
    shape = r.choice(_NOVEL_SHAPES.get(domain, ("the {W} thing",)))
    w, v = made_up_word(r), made_up_word(r, (1, 2))
    return shape.format(W=w.capitalize(), w=w, V=v.capitalize())


@dataclass(frozen=True)
class Vocabulary:
    """What people talk about in one week: domain weights, and per domain the base concepts plus
    the concepts new this week (`fresh`) and last week (`fading`)."""

    week: int
    domains: tuple[str, ...]
    domain_cum_weights: tuple[float, ...]
    fresh: dict[str, tuple[str, ...]]
    fading: dict[str, tuple[str, ...]]
    novel_share: float  # chance that a concept drawn is one of this or last week's new ones

    def domain(self, r: random.Random) -> str:
        return r.choices(self.domains, cum_weights=self.domain_cum_weights)[0]

    def concept(self, r: random.Random, domain: str) -> str:
        if self.novel_share > 0 and r.random() < self.novel_share:
            pool = self.fresh.get(domain, ()) if (r.random() < 0.7 or not self.fading.get(domain)) \
                else self.fading[domain]
            if pool:
                return r.choice(pool)
        return r.choice(V.TOPICS[domain])


#: The vocabulary without drift: base concepts, uniform domains (what grammars use outside a week).
STATIC_VOCABULARY = Vocabulary(-1, tuple(V.TOPICS), tuple(float(i + 1) for i in range(len(V.TOPICS))), {}, {}, 0.0)


def _fresh_concepts(seed: int, week: int) -> dict[str, tuple[str, ...]]:
    r = random.Random(f"novel-concepts:{seed}:{week}")
    return {d: tuple(novel_concept(r, d) for _ in range(r.randint(3, 6))) for d in V.TOPICS}


@lru_cache(maxsize=512)
def weekly_vocabulary(seed: int, week: int, drift: float) -> Vocabulary:
    """The vocabulary of week `week` (0-based) of the world `seed`. `drift` in [0, 1] scales both the
    random walk of the domain mix and the share of brand-new concepts (0: no drift at all)."""
    if drift <= 0:
        return STATIC_VOCABULARY
    domains = tuple(V.TOPICS)
    rng = np.random.default_rng([seed, 41])
    log_w = rng.normal(0.0, 0.5, len(domains))
    for k in range(1, max(week, 0) + 1):  # the walk is replayed from week 0: deterministic per week
        log_w = log_w + drift * np.random.default_rng([seed, 42, k]).normal(0.0, 0.7, len(domains))
    w = np.exp(log_w - log_w.max())
    cum = tuple(float(x) for x in np.cumsum(w / w.sum()))
    fresh = _fresh_concepts(seed, week)
    fading = _fresh_concepts(seed, week - 1) if week > 0 else {}
    return Vocabulary(week, domains, cum, fresh, fading, novel_share=min(0.6, 0.4 * drift))


def week_of(t_seconds: float) -> int:
    """0-based week of a time given in seconds since the start of the window."""
    return int(t_seconds // (WEEK_DAYS * 86_400.0))

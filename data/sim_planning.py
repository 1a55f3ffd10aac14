"""Who exists in a simulated world: every account's archetype, volume, client, cohort and campaign.

Planning is cheap and all in memory (a few hundred bytes an account); the events themselves are
generated per account by `sim_accounts`, a chunk at a time, by `simulator`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np

from distillguard.data import sim_shared_texts as S
from distillguard.data.sim_campaigns import Campaign, build_campaign
from distillguard.data.sim_infrastructure import CLIENT_KINDS, CLIENT_MIX
from distillguard.data.simulator_config import ORGANIC_ARCHETYPES, SimulatorConfig

HARVEST = "harvest"

# (median prompts, lognormal sigma, cap) per benign archetype: heavy tails on purpose.
_VOLUME: dict[str, tuple[float, float, int]] = {
    "casual": (20, 1.2, 3000), "student": (30, 1.2, 3000), "writer": (30, 1.2, 3000),
    "developer": (50, 1.3, 5000), "researcher": (30, 1.2, 3000), "professional": (40, 1.2, 3000),
    "eval_runner": (220, 0.9, 6000), "coding_agent": (260, 1.0, 8000), "support_bot": (350, 0.8, 8000),
    "data_labelling": (140, 0.7, 3000),
}


@dataclass(frozen=True)
class AccountPlan:
    index: int
    account_id: str
    archetype: str  # an organic / hard benign archetype, or HARVEST
    n_prompts: int
    campaign: Campaign | None = None
    group: int = -1  # campaign index or labelling team index
    rank: int = 0  # position inside the campaign or team
    group_size: int = 1
    client: str = "app"  # app, sdk or key_only: which optional fields its events carry
    no_network: bool = False  # its traffic arrives without IP and ASN
    established: bool = False  # active since the window's start (else it signs up inside the window)
    light: bool = False  # an occasional or brand-new user with 1-5 prompts
    cohort: tuple[str, int] | None = None  # (kind, index) of the class, bootcamp, course or team it belongs to
    donor: str | None = None  # adaptive harvesters: the organic archetype whose behaviour it copies

    @property
    def label(self) -> int:
        return int(self.archetype == HARVEST)

    @property
    def campaign_label(self) -> str:
        return self.campaign.name if self.campaign else self.archetype


def _weights(mix: dict[str, float]) -> tuple[list[str], np.ndarray]:
    names = sorted(mix)
    w = np.array([mix[n] for n in names], dtype=float)
    return names, w / w.sum()


def _draw_volume(rng: np.random.Generator, archetype: str) -> int:
    med, sigma, cap = _VOLUME[archetype]
    return int(np.clip(rng.lognormal(np.log(med), sigma), 3, cap))


def _draw_client(rng: np.random.Generator, archetype: str) -> str:
    return CLIENT_KINDS[int(rng.choice(len(CLIENT_KINDS), p=CLIENT_MIX[archetype]))]


@dataclass(frozen=True)
class _Person:
    volume: int
    light: bool
    established: bool
    client: str
    no_network: bool


def _draw_person(rng: np.random.Generator, archetype: str, config: SimulatorConfig) -> _Person:
    """How much, since when and through what client one organic person or benign service sends."""
    organic = archetype in ORGANIC_ARCHETYPES
    light = organic and rng.random() < config.light_account_fraction
    volume = int(rng.integers(1, 6)) if light else _draw_volume(rng, archetype)
    established = not light and (volume > 300 or rng.random() < (config.established_fraction if organic else 0.5))
    return _Person(volume, bool(light), bool(established), _draw_client(rng, archetype),
                   bool(rng.random() < config.no_network_fraction))


class _CohortFiller:
    """Hands out cohort seats: each kind fills one cohort of a random size, then opens the next."""

    def __init__(self, rng: np.random.Generator, scale: float) -> None:
        self.rng, self.scale = rng, scale
        self.open: dict[str, tuple[int, int]] = {}  # kind -> (index, seats left)

    def seat(self, archetype: str) -> tuple[str, int] | None:
        for kind, p in S.COHORT_MEMBERSHIP.get(archetype, {}).items():
            if self.rng.random() < p * self.scale:
                index, left = self.open.get(kind, (-1, 0))
                if left == 0:
                    lo, hi = S.COHORT_SIZES[kind]
                    index, left = index + 1, int(self.rng.integers(lo, hi + 1))
                self.open[kind] = (index, left - 1)
                return kind, index
        return None


def plan_accounts(config: SimulatorConfig) -> tuple[list[AccountPlan], list[Campaign]]:
    """Who exists: every account's archetype, volume, group, client and cohort. Deterministic in the config."""
    rng = np.random.default_rng([config.seed, 1])
    n = config.accounts
    n_harvest = int(round(n * config.harvest_fraction))
    n_hard = int(round(n * config.hard_benign_fraction))
    n_organic = n - n_harvest - n_hard

    campaigns = [build_campaign(style, i, config.seed, config.hydra_mix, days=config.days,
                                adaptive_share=config.campaign_adaptive_share)
                 for style in config.campaign_styles for i in range(config.campaigns_per_style)]
    if n_harvest and n_harvest < 2 * len(campaigns):
        campaigns = campaigns[: max(1, n_harvest // 2)]

    org_names, org_p = _weights(config.organic_mix)
    hard_names, hard_p = _weights(config.hard_benign_mix)
    archetypes = list(rng.choice(org_names, size=n_organic, p=org_p)) + list(rng.choice(hard_names, size=n_hard, p=hard_p))

    # ids from their own stream, keyed by the world's size too: worlds of one seed and different sizes
    # (the same campaigns and weeks at another scale) share no account id
    id_rng = np.random.default_rng([config.seed, 4, n])
    ids = set()
    while len(ids) < n:
        ids.update("acct_" + "%010x" % int(v) for v in id_rng.integers(0, 2 ** 40, size=n - len(ids)))
    id_list = sorted(ids)
    id_rng.shuffle(id_list)

    plans: list[AccountPlan] = []
    team_sizes: dict[int, int] = {}
    team, team_left = -1, 0
    cohorts = _CohortFiller(rng, config.cohort_membership)
    for arch in archetypes:
        person = _draw_person(rng, arch, config)
        client, no_network, established = person.client, person.no_network, person.established
        group = rank = -1
        if arch == "data_labelling":
            if team_left == 0:
                team, team_left = team + 1, int(rng.integers(2, 8))
            rank, group, team_left = team_sizes.get(team, 0), team, team_left - 1
            team_sizes[team] = rank + 1
            # one office: the whole team reaches the API the same way
            tr = random.Random(f"team-client:{config.seed}:{team}")
            client, no_network, established = tr.choice(("app", "sdk", "sdk")), tr.random() < 0.1, tr.random() < 0.5
        plans.append(AccountPlan(len(plans), id_list[len(plans)], arch, person.volume, group=group,
                                 rank=max(rank, 0), client=client, no_network=no_network, established=established,
                                 light=person.light,
                                 cohort=cohorts.seat(arch) if arch in ORGANIC_ARCHETYPES else None))
    plans = [replace(p, group_size=team_sizes.get(p.group, 1)) for p in plans]

    if n_harvest:
        share = rng.dirichlet(np.full(len(campaigns), 2.0))
        sizes = np.maximum(2, np.floor(share * n_harvest)).astype(int)
        while sizes.sum() > n_harvest:
            sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += n_harvest - sizes.sum()
        for ci, (camp, size) in enumerate(zip(campaigns, sizes)):
            vols = np.clip(rng.lognormal(np.log(camp.volume_median), 0.45, size=size), 3, 20_000).astype(int)
            for rank, v in enumerate(vols):
                no_network = bool(rng.random() < config.no_network_fraction)
                if camp.adaptive:  # it sends as much, as often and through what an organic person would
                    donor = str(rng.choice(org_names, p=org_p))
                    d = _draw_person(rng, donor, config)
                    plans.append(AccountPlan(len(plans), id_list[len(plans)], HARVEST, d.volume, camp, ci, rank,
                                             int(size), client=d.client, no_network=d.no_network,
                                             established=d.established, light=d.light, donor=donor))
                else:
                    plans.append(AccountPlan(len(plans), id_list[len(plans)], HARVEST, int(v), camp, ci, rank,
                                             int(size), client=camp.client, no_network=no_network))
    # Interleave kinds so that no file position or chunk says who is who.
    order = rng.permutation(len(plans))
    plans = [replace(plans[j], index=i) for i, j in enumerate(order)]
    return plans, campaigns



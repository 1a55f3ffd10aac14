"""Network and billing metadata of simulated accounts: IPs, ASNs, payment fingerprints, user agents.

Every kind of account draws these from the same generators and pools, so no value's *format* says
who sent it; only sharing patterns (many accounts behind one proxy pool or card) can.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from distillguard.data.sim_campaigns import USER_AGENTS_BROWSER, USER_AGENTS_SDK, Campaign

_R = random.Random("distillguard-asn-pools")
RESIDENTIAL_ASNS: tuple[int, ...] = tuple(_R.sample(range(1_000, 64_000), 80))
HOSTING_ASNS: tuple[int, ...] = tuple(_R.sample(range(1_000, 64_000), 30))


def random_ip(r: random.Random) -> str:
    return f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


def random_fingerprint(r: random.Random) -> str:
    return "pf_" + "%016x" % r.getrandbits(64)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    asn: int


@dataclass(frozen=True)
class AccountInfra:
    """Where an account's requests come from and who pays for them."""

    endpoints: tuple[Endpoint, ...]
    rotate_every_request: bool  # residential proxies hand out a fresh IP per request
    payment_fingerprint: str | None
    user_agents: tuple[str, ...]

    def endpoint(self, r: random.Random) -> Endpoint:
        if self.rotate_every_request:
            return Endpoint(random_ip(r), r.choice(RESIDENTIAL_ASNS))
        return r.choice(self.endpoints)


#: How an account reaches the API, which decides the optional fields its events carry:
#: `app` (a chat front end: conversation ids, browser user agent), `sdk` (direct API calls: no
#: conversation id, an SDK user agent), `key_only` (behind a gateway that forwards only the key's
#: hash: no conversation id, IP, ASN, payment fingerprint or user agent).
CLIENT_KINDS: tuple[str, ...] = ("app", "sdk", "key_only")
#: archetype -> probabilities of (app, sdk, key_only). About 40% of organic accounts send no
#: conversation id. Campaigns draw theirs in `sim_campaigns` (they lean to the API, as do developers
#: and every script).
CLIENT_MIX: dict[str, tuple[float, float, float]] = {
    "casual": (0.72, 0.20, 0.08), "student": (0.72, 0.20, 0.08), "writer": (0.72, 0.20, 0.08),
    "professional": (0.55, 0.30, 0.15), "developer": (0.30, 0.55, 0.15), "researcher": (0.35, 0.50, 0.15),
    "eval_runner": (0.0, 0.75, 0.25), "coding_agent": (0.40, 0.40, 0.20), "support_bot": (0.0, 0.60, 0.40),
    "data_labelling": (0.30, 0.70, 0.0),
}


def person_infra(r: random.Random, archetype: str, client: str = "app") -> AccountInfra:
    """An individual's or a benign service's own IPs, card and client."""
    hosting = archetype in ("eval_runner", "support_bot") or r.random() < 0.1  # VPN users, cloud runners
    asns = HOSTING_ASNS if hosting else RESIDENTIAL_ASNS
    endpoints = tuple(Endpoint(random_ip(r), r.choice(asns)) for _ in range(r.choice((1, 1, 2, 3))))
    sdk_share = 0.95 if client != "app" else {"developer": 0.3, "researcher": 0.15}.get(archetype, 0.05)
    uas = tuple(r.choice(USER_AGENTS_SDK if r.random() < sdk_share else USER_AGENTS_BROWSER)
                for _ in range(r.choice((1, 1, 2))))
    paid = r.random() < (0.55 if archetype in ("casual", "student", "writer") else 0.9)
    return AccountInfra(endpoints, False, random_fingerprint(r) if paid else None, uas)


def team_infra(seed: int, team: int) -> AccountInfra:
    """A labelling team: one office network and one company card for all its members."""
    r = random.Random(f"team:{seed}:{team}")
    endpoints = (Endpoint(random_ip(r), r.choice(RESIDENTIAL_ASNS + HOSTING_ASNS)),)
    return AccountInfra(endpoints, False, random_fingerprint(r), (r.choice(USER_AGENTS_SDK),))


@dataclass(frozen=True)
class CampaignPools:
    """Shared proxy IPs and payment cards of a campaign (empty for a clean campaign)."""

    endpoints: tuple[Endpoint, ...]
    fingerprints: tuple[str, ...]


def campaign_pools(seed: int, campaign: Campaign, n_accounts: int) -> CampaignPools:
    r = random.Random(f"infra:{seed}:{campaign.name}")
    if campaign.infra != "shared_proxy":
        return CampaignPools((), ())
    asns = r.sample(HOSTING_ASNS, r.randint(1, 3))
    endpoints = tuple(Endpoint(random_ip(r), r.choice(asns)) for _ in range(max(3, n_accounts // 2)))
    fingerprints = tuple(random_fingerprint(r) for _ in range(max(1, n_accounts // 5)))
    return CampaignPools(endpoints, fingerprints)


def harvester_infra(r: random.Random, campaign: Campaign, pools: CampaignPools, rank: int) -> AccountInfra:
    if campaign.infra == "shared_proxy":
        k = r.randint(2, min(8, len(pools.endpoints)))
        return AccountInfra(tuple(r.sample(pools.endpoints, k)), False,
                            pools.fingerprints[rank % len(pools.fingerprints)], campaign.user_agents)
    if campaign.infra == "residential_proxy":
        return AccountInfra((), True, random_fingerprint(r), campaign.user_agents)
    # clean: looks like any single person
    endpoints = tuple(Endpoint(random_ip(r), r.choice(RESIDENTIAL_ASNS)) for _ in range(r.choice((1, 2))))
    return AccountInfra(endpoints, False, random_fingerprint(r) if r.random() < 0.8 else None,
                        (r.choice(campaign.user_agents),))

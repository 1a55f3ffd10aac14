"""What the workbench shows, as plain data: the terminal and the browser render these and nothing
else. Prompt text only ever reaches them as `PromptText`, already redacted where the workbench
was opened with redaction on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PromptText:
    """A prompt as an analyst may see it: the text, or only its hash and length when redacted."""

    text: str  # the prompt, or "[redacted <digest> · <chars> chars]"
    digest: str  # first 12 hex digits of the sha256 of the prompt
    chars: int
    redacted: bool


@dataclass(frozen=True)
class AccountRow:
    """One account in the ranked list."""

    account_id: str
    score: float
    decision: str  # allow | review | block
    model_version: str
    component: int  # campaign group: a community of the coordination graph (accounts alone have their own)
    component_size: int  # accounts in the group
    prompts: int
    first_ts: str  # ISO 8601, UTC
    last_ts: str
    reasons: list[str]


@dataclass(frozen=True)
class OrganicNeighbour:
    text: PromptText
    distance: float  # 1 - cosine


@dataclass(frozen=True)
class AccountNeighbour:
    """A prompt of another scored account near one of the inspected account's prompts."""

    text: PromptText
    distance: float  # 1 - cosine
    account_id: str
    score: float
    decision: str


@dataclass(frozen=True)
class ClusterView:
    """The account's prompts that fall in one organic cluster (k-means cell of the organic baseline)."""

    cluster: int
    size: int  # the account's prompts in the cluster
    account_share: float  # size / the account's prompts
    organic_share: float  # the cluster's share of organic traffic
    skeleton: str | None  # the most used wrapper skeleton of these prompts ("head … tail"), if any
    skeleton_share: float  # share of these prompts using it
    examples: list[PromptText]
    organic_neighbours: list[OrganicNeighbour]
    account_neighbours: list[AccountNeighbour]


@dataclass(frozen=True)
class HourCount:
    hour: str  # ISO hour, UTC: "2026-03-02T14:00"
    prompts: int


@dataclass(frozen=True)
class ModelSwitch:
    ts: str  # ISO 8601: when the account first used `model`
    model: str


@dataclass(frozen=True)
class SharedValue:
    """A value of an infrastructure field (ip, asn, payment_fingerprint, user_agent) and how many
    accounts (all scored accounts, or a campaign's members) use it."""

    field: str
    value: str
    accounts: int


@dataclass
class AccountView:
    account: AccountRow
    clusters: list[ClusterView]  # largest first
    hourly: list[HourCount]  # active hours only, in time order
    model_switches: list[ModelSwitch]
    infrastructure: list[SharedValue]  # this account's values, with how many accounts share each
    campaign_members: list[AccountRow] = field(default_factory=list)  # other members of its component


@dataclass(frozen=True)
class GraphEdge:
    a: str
    b: str
    weight: int  # skeleton links weigh 2, near-duplicate prompt pairs 1 (features.coordination)


@dataclass
class CampaignView:
    """A campaign group: accounts linked by shared wrapper skeletons and near-duplicate prompts (a
    Louvain community of the coordination graph, inside one of its connected components)."""

    component: int
    size: int
    mean_score: float
    max_score: float
    flagged: int  # members with decision review or block
    skeleton: str | None  # the wrapper skeleton used by most members ("head … tail")
    skeleton_accounts: int  # members using it
    members: list[AccountRow]  # by score, highest first
    edges: list[GraphEdge]
    shared: list[SharedValue]  # infrastructure values two or more members share
    prompts: list[PromptText]  # a sample of members' prompts


@dataclass(frozen=True)
class ClusterMember:
    account: AccountRow
    prompts: int  # the account's prompts in the cluster


@dataclass
class ClusterPage:
    """One organic cluster across all scored accounts."""

    cluster: int
    organic_share: float
    prompts: int  # scored accounts' prompts in it
    organic_examples: list[PromptText]  # organic baseline prompts nearest the centroid
    examples: list[PromptText]  # scored accounts' prompts in it, flagged accounts first
    accounts: list[ClusterMember]  # flagged first, then by prompts in the cluster


@dataclass(frozen=True)
class SearchHit:
    text: PromptText
    distance: float  # 1 - cosine
    source: str  # "account" (a scored account's prompt) or "organic" (the organic baseline)
    accounts: list[AccountRow]  # the scored accounts that sent it (empty for organic)


@dataclass(frozen=True)
class MapPoint:
    x: float
    y: float
    kind: str  # "organic" (background), "account", "campaign"


@dataclass
class MapView:
    """A 2-D PCA projection of prompt embeddings (fitted on organic traffic)."""

    points: list[MapPoint]
    explained_variance: tuple[float, float]

"""Coordination judged against the population being scored: accounts that put the same wrappers
around different payloads, and the communities they form.

A *wrapper* is an opening or closing skeleton (first or last 5 tokens, digits masked) that at least
two accounts of the population each use repeatedly (twice or more), around at least
`wrapper_min_texts` different payloads (the tokens between the two skeleton runs, digits masked: a
problem template with other numbers is one payload, an interview question with a different closing
remark is one payload), and that organic accounts of the reference do not share widely
(`common_skeletons`: "can you explain …", tutorial templates). A team's or a course's own template
stays a wrapper, in training as out of time, so the model learns that wrappers alone are not a
campaign; its weight is the harvest probability of the prompts it carries across the population.
The same short text sent by many users is not a wrapper at all (one payload); two prompts that
happen to end on the same few words are not repeated use. An account uses a wrapper when it sends it
twice or more (an account with fewer than 5 prompts: once, if the wrapper's prompts are
harvest-shaped).

Two accounts are linked when they share two or more harvest-shaped wrappers (their prompts' mean
harvest probability at least `LINK_INTENT`) that both use; a team's template around ordinary
questions links nobody. Connected accounts form a community; members inherit the community's
evidence (the other members' harvest content and wrapper use), so a burner account with three
prompts in a campaign of fifty is judged with them. Everything is read from the population state
(`population.PopulationState`), the same in a batch job and in the serving worker.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np

from distillguard.features.feature_spec import CONTENT, Feature
from distillguard.features.population import PopulationState, communities, pair_edges
from distillguard.features.rows import AccountRows

FAMILY = "coordination"
KIND = CONTENT
MAX_KEYS_PER_ACCOUNT = 30  # most used wrappers of an account that form links
CLIQUE_MAX = 30  # accounts sharing a pair of wrappers: all linked up to this, then a star
SMALL_ACCOUNT = 5
HARVEST_SHAPED = 0.5
LINK_INTENT = 0.25  # a wrapper links accounts when the prompts it carries are at least this harvest-shaped

COLUMNS: tuple[Feature, ...] = (
    Feature("wrapper_share", FAMILY, "share of prompts carrying a wrapper it uses repeatedly and other accounts of "
            "the population repeat around different texts (organic common skeletons excluded)", "[0, 1]",
            "{value:.0%} of its prompts carry wrappers other accounts use around different payloads "
            "(organic: {organic:.0%})"),
    # peers of harvest-shaped wrappers only: how many accounts share an ordinary template grows with the
    # number of users, so counting them would make the false-positive rate grow with the population
    Feature("wrapper_peers", FAMILY, "log2(1 + other accounts using its most used harvest-shaped wrapper (the "
            "prompts it carries at least 0.25 harvest-shaped on average); 0 without one)", "[0, inf)",
            "its main harvest-shaped wrapper is shared with {wrapper_peers_count:.0f} other accounts"),
    Feature("wrapper_intent", FAMILY, "harvest probability of the population's prompts carrying its wrappers "
            "(weighted by its use; 0 without wrappers)", "[0, 1]",
            "the prompts carrying its wrappers are harvest-shaped ({value:.2f}; organic {organic:.2f})", +1),
    Feature("community_size", FAMILY, "accounts in its community (linked by two or more shared harvest-shaped "
            "wrappers); 1 alone",
            "[1, inf)", "it belongs to a group of {value:.0f} accounts sharing wrappers"),
    Feature("community_intent", FAMILY, "mean harvest_top5 of the other members of its community (0 alone): "
            "members inherit the group's evidence", "[0, 1]",
            "the {community_size:.0f} accounts of its group ask for harvest-shaped content ({value:.2f}; inherited "
            "from the group)",
            +1),
    Feature("community_wrapper_share", FAMILY, "mean wrapper_share of the other members of its community (0 alone)",
            "[0, 1]", "its group's accounts put {value:.0%} of their prompts in shared wrappers (inherited)"),
)


@dataclass(frozen=True)
class CoordinationGraph:
    """Accounts (by code) joined by coordination evidence, for analysts: the community label per
    account (linked by harvest-shaped wrappers, as the features use them) and every wrapper link
    (a < b, weight: wrapper pairs shared), harvest-shaped or not."""

    labels: np.ndarray  # (n_accounts,) community label
    edges: list[tuple[int, int, int]]


def compute(rows: AccountRows, harvest_top5: np.ndarray, population: PopulationState, common_skeletons: Set[int], *,
            wrapper_min_texts: int) -> tuple[dict[str, np.ndarray], CoordinationGraph]:
    """Coordination features of the accounts of `rows`, judged against `population` (which holds their
    contributions; their harvest_top5 and wrapper_share are recorded in it for their communities)."""
    n_acc = rows.n_accounts
    ids = [str(a) for a in rows.account_ids]
    code = {a: i for i, a in enumerate(ids)}
    out = {c.name: np.zeros(n_acc) for c in COLUMNS}
    wrappers = population.wrappers(common_skeletons, wrapper_min_texts)
    qualified = population.qualified_uses(wrappers, small_account=SMALL_ACCOUNT, harvest_shaped=HARVEST_SHAPED)
    mine = qualified[qualified["a"].isin(code)].copy()
    if len(mine):
        mine["code"] = mine["a"].map(code)
        # the rows carrying a wrapper the account uses
        used = set(zip(mine["code"].tolist(), mine["k"].tolist()))
        keys = rows.skeleton_keys
        carried = np.fromiter(((c, int(h)) in used or (c, int(t)) in used
                               for c, (h, t) in zip(rows.codes.tolist(), keys.tolist())), dtype=bool, count=len(keys))
        out["wrapper_share"] = np.bincount(rows.codes, weights=carried, minlength=n_acc) / rows.volume
        shaped = mine[mine["p"] >= LINK_INTENT]
        main = shaped.sort_values(["code", "n", "k"], ascending=[True, False, True]).drop_duplicates("code")
        out["wrapper_peers"][main["code"].to_numpy()] = np.log2(
            [max(population.key_repeaters(int(k)), 1) for k in main["k"]])  # log2(1 + other accounts)
        weighted = mine.assign(pn=mine["p"] * mine["n"]).groupby("code")[["pn", "n"]].sum()
        out["wrapper_intent"][weighted.index.to_numpy()] = (weighted["pn"] / weighted["n"]).to_numpy()
    for a, i in code.items():
        population.set_summary(a, harvest_top5[i], out["wrapper_share"][i])

    harvest_shaped = pair_edges(qualified[qualified["p"] >= LINK_INTENT], MAX_KEYS_PER_ACCOUNT, CLIQUE_MAX)
    groups = communities(population, harvest_shaped)
    own_top5, own_share = harvest_top5, out["wrapper_share"]
    for a, i in code.items():
        size, sum_top5, sum_share = groups.of(a)
        out["community_size"][i] = size
        if size > 1:
            out["community_intent"][i] = (sum_top5 - own_top5[i]) / (size - 1)
            out["community_wrapper_share"][i] = (sum_share - own_share[i]) / (size - 1)
    # analysts see every wrapper link among these accounts (a new campaign whose content the model has
    # not learnt, a team's template); the community features above use the harvest-shaped ones only
    labels = np.array([groups.label[a] + n_acc if a in groups.label else i for i, a in enumerate(ids)])
    edges = [(code[a], code[b], w) for a, b, w in pair_edges(mine.drop(columns="code") if len(mine) else mine,
                                                              MAX_KEYS_PER_ACCOUNT, CLIQUE_MAX)]
    return out, CoordinationGraph(np.unique(labels, return_inverse=True)[1], [(min(a, b), max(a, b), w)
                                                                              for a, b, w in edges])

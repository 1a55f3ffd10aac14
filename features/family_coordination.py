"""Coordination judged against the population being scored: accounts that put the same wrappers
around different payloads, and the communities they form.

A *wrapper* is an opening or closing skeleton (first or last 5 tokens, digits masked) that at least
two accounts of the population each use repeatedly (twice or more), around at least
`wrapper_min_texts` different payloads (the tokens between the two skeleton runs, digits masked:
a problem template with other numbers is one payload, an interview question with a different
closing remark is one payload), and that organic accounts of the reference do not share widely (`common_skeletons`: "can
you explain …", tutorial templates; a team's or a course's own template stays a wrapper, in training
as out of time, so the model learns that wrappers alone are not a campaign). The same short text sent by many users is not
a wrapper at all (one text); a wrapper organic people use is common language; two prompts that
happen to end on the same few words are not repeated use. What remains is campaign-shaped, and its
weight is the harvest probability of the prompts it carries across the population. An account uses
a wrapper when it sends it twice or more (an account with fewer than 5 prompts: once, if the
wrapper's prompts are harvest-shaped).

Two accounts are linked when they share two or more harvest-shaped wrappers (their prompts'
mean harvest probability at least `LINK_INTENT`), each used at least twice by both (an account with
fewer than 5 prompts: once). A team's template around ordinary questions links nobody. Connected accounts form a
community; members inherit the community's evidence (the other members' harvest content and
wrapper use), so a burner account with three prompts in a campaign of fifty is judged with them.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.features.feature_spec import CONTENT, Feature
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
    Feature("wrapper_peers", FAMILY, "log2(1 + other accounts using its most used wrapper)", "[0, inf)",
            "its main wrapper is shared with {wrapper_peers_count:.0f} other accounts"),
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


def _key_uses(rows: AccountRows, common: Set[int]) -> pd.DataFrame:
    """One row per (prompt row, skeleton key) for keys not in `common`: row, key, account, payload, p."""
    keys = rows.skeleton_keys
    p = rows.harvest_p()
    rows_idx = np.repeat(np.arange(len(keys)), 2)
    flat = keys.reshape(-1)
    ok = flat >= 0
    if common:
        ok &= ~np.isin(flat, np.fromiter(common, dtype=np.int64, count=len(common)))
    r = rows_idx[ok]
    return pd.DataFrame({"row": r, "k": flat[ok], "a": rows.codes[r], "m": rows.payload_ids[r], "p": p[r]})


def compute(rows: AccountRows, harvest_top5: np.ndarray, common_skeletons: Set[int], *,
            wrapper_min_texts: int) -> tuple[dict[str, np.ndarray], CoordinationGraph]:
    n_acc = rows.n_accounts
    out = {c.name: np.zeros(n_acc) for c in COLUMNS}
    out["community_size"][:] = 1.0
    uses = _key_uses(rows, common_skeletons)
    if uses.empty:
        return out, CoordinationGraph(np.arange(n_acc), [])
    ak = uses.groupby(["a", "k"]).size().rename("n").reset_index()
    repeated = ak[ak["n"] >= 2]
    per_key = uses.groupby("k").agg(p=("p", "mean"))
    per_key["texts"] = uses[uses["m"] >= 0].groupby("k")["m"].nunique()
    per_key["accounts"] = repeated.groupby("k").size()
    wrappers = per_key[(per_key["accounts"] >= 2) & (per_key["texts"].fillna(0) >= wrapper_min_texts)]
    ak = ak[ak["k"].isin(wrappers.index)].join(wrappers[["accounts", "p"]], on="k")
    small = rows.volume[ak["a"].to_numpy()] < SMALL_ACCOUNT
    ak = ak[((ak["n"] >= 2) | (small & (ak["p"] >= HARVEST_SHAPED))).to_numpy()]
    if ak.empty:
        return out, CoordinationGraph(np.arange(n_acc), [])
    used = uses.merge(ak[["a", "k"]], on=["a", "k"])
    carried = np.zeros(len(rows.codes), dtype=bool)
    carried[used["row"].to_numpy()] = True
    out["wrapper_share"] = np.bincount(rows.codes, weights=carried, minlength=n_acc) / rows.volume

    main = ak.sort_values(["a", "n", "k"], ascending=[True, False, True]).drop_duplicates("a")
    out["wrapper_peers"][main["a"].to_numpy()] = np.log2(main["accounts"].to_numpy())  # 1 + (accounts - 1)
    weighted = ak.assign(pn=ak["p"] * ak["n"]).groupby("a")[["pn", "n"]].sum()
    out["wrapper_intent"][weighted.index.to_numpy()] = (weighted["pn"] / weighted["n"]).to_numpy()
    harvest_shaped = _wrapper_pair_edges(ak[ak["p"] >= LINK_INTENT])
    labels = _components(harvest_shaped, n_acc)
    size = np.bincount(labels)
    out["community_size"] = size[labels].astype(float)
    others = np.maximum(size[labels] - 1, 1)
    for feature, source in (("community_intent", harvest_top5), ("community_wrapper_share", out["wrapper_share"])):
        total = np.bincount(labels, weights=source)[labels]
        out[feature] = np.where(size[labels] > 1, (total - source) / others, 0.0)
    # analysts see every wrapper link (a new campaign whose content the model has not learnt, a team's
    # template); the community features above use the harvest-shaped ones only
    return out, CoordinationGraph(labels, _wrapper_pair_edges(ak))


def _wrapper_pair_edges(qualified: pd.DataFrame) -> list[tuple[int, int, int]]:
    """Accounts sharing a pair of wrappers are linked (all pairs up to `CLIQUE_MAX` accounts, a star
    beyond); an edge's weight is the number of wrapper pairs its two accounts share."""
    top = (qualified.sort_values(["a", "n", "k"], ascending=[True, False, True])
           .groupby("a").head(MAX_KEYS_PER_ACCOUNT)[["a", "k"]])
    pairs = top.merge(top, on="a", suffixes=("1", "2"))
    pairs = pairs[pairs["k1"] < pairs["k2"]]
    weight: dict[tuple[int, int], int] = {}
    for members in pairs.groupby(["k1", "k2"])["a"].agg(lambda s: sorted(s.tolist())):
        if len(members) < 2:
            continue
        links = ([(x, y) for i, x in enumerate(members) for y in members[i + 1:]] if len(members) <= CLIQUE_MAX
                 else [(members[0], y) for y in members[1:]])
        for link in links:
            weight[link] = weight.get(link, 0) + 1
    return sorted((int(a), int(b), c) for (a, b), c in weight.items())


def _components(edges: list[tuple[int, int, int]], n: int) -> np.ndarray:
    if not edges:
        return np.arange(n)
    e = np.array([(a, b) for a, b, _ in edges])
    _, labels = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)), directed=False)
    return labels

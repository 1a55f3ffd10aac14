"""Coordination across accounts: who shares near-duplicate prompts, wrapper skeletons, infrastructure.

A hydra of accounts each looks ordinary; together they send the same wrappers, near-identical
payloads, from the same proxies and cards, in lock step. Everything here is built from inverted
indexes (text -> owners, skeleton -> accounts, IP -> accounts) and a FAISS index over distinct
prompt texts, never from all pairs of prompts. Texts or skeletons used by very many accounts are
common language, not coordination, and are left out of the account graph.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EXACT_INDEX_MAX = 50_000


def build_text_index(vectors: np.ndarray, *, exact_max: int = EXACT_INDEX_MAX, nprobe: int = 8,
                     seed: int = 0) -> faiss.Index:
    """Inner-product index over unit vectors: exact when small, IVF above `exact_max` rows."""
    n, d = vectors.shape
    if n <= exact_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = vectors[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
        index.cp.seed = seed
        index.train(train)
        index.nprobe = nprobe
    index.add(vectors)
    return index


@dataclass
class CrossAccountIndex:
    """Distinct prompt texts of all scored accounts, their vectors in FAISS, and who sent each."""

    index: faiss.Index
    owner_ptr: np.ndarray  # CSR: owners of distinct text j are owner_codes[owner_ptr[j]:owner_ptr[j+1]]
    owner_codes: np.ndarray
    n_accounts: int

    @classmethod
    def build(cls, text_ids: np.ndarray, account_codes: np.ndarray, unique_vectors: np.ndarray,
              n_accounts: int) -> CrossAccountIndex:
        """`text_ids[i]` is the distinct-text row of prompt i (rows of `unique_vectors`),
        `account_codes[i]` its account."""
        # distinct (text, account) pairs in (text, account) order, as one int64 key each
        width = max(n_accounts, int(account_codes.max()) + 1 if len(account_codes) else 1)
        pairs = unique_sorted(np.asarray(text_ids, dtype=np.int64) * width + account_codes)
        counts = np.bincount(pairs // width, minlength=len(unique_vectors))
        ptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(build_text_index(np.ascontiguousarray(unique_vectors, dtype=np.float32)), ptr,
                   pairs % width, n_accounts)

    def owners(self, text_id: int) -> np.ndarray:
        return self.owner_codes[self.owner_ptr[text_id]: self.owner_ptr[text_id + 1]]

    def owner_count(self) -> np.ndarray:
        return np.diff(self.owner_ptr)


def common_skeletons(account_codes: np.ndarray, keys: Sequence[tuple[int | None, int | None]],
                     min_accounts: int = 2) -> frozenset[int]:
    """Skeletons used by at least `min_accounts` different (organic) accounts: common language."""
    owners: dict[int, set[int]] = defaultdict(set)
    for a, pair in zip(account_codes.tolist(), keys):
        for key in pair:
            if key is not None:
                owners[key].add(a)
    return frozenset(k for k, s in owners.items() if len(s) >= min_accounts)


def common_cap(n_accounts: int) -> int:
    """Texts or skeletons shared by more accounts than this are common language, not coordination."""
    return max(25, int(0.02 * n_accounts))


def near_neighbour_links(xindex: CrossAccountIndex, query_vectors: np.ndarray, query_accounts: np.ndarray,
                         linkable: np.ndarray, *, k: int = 16, threshold: float = 0.9
                         ) -> tuple[dict[int, set[int]], dict[int, int], list[tuple[int, int]]]:
    """For sampled prompts of each account, the other accounts owning a near neighbour (cos >= threshold).

    Returns (account -> other accounts, account -> prompts with such a neighbour, graph links
    (account, other)). Only prompts marked `linkable` (the caller's judgement that they are not
    common language: long enough, and farther from every organic prompt than from the neighbour)
    link accounts, and only through texts not used by very many accounts.

    The account -> other accounts sets grow with the square of the number of accounts (a text that
    thousands of accounts send links each of them to all the others): where only their sizes are
    needed, `near_neighbour_counts` gives the same figures in bounded memory.
    """
    hits = _NeighbourHits.find(xindex, query_vectors, query_accounts, linkable, k=k, threshold=threshold)
    others: dict[int, set[int]] = defaultdict(set)
    hit_prompts: dict[int, int] = defaultdict(int)
    hit_prompts.update(hits.hit_prompts())
    # the owners of each account's distinct hit texts, each (account, owner) once
    n_texts, n_acc = len(xindex.owner_ptr) - 1, hits.n_accounts
    pair = unique_sorted(hits.acc * n_texts + hits.text)
    pair_acc, owner = _expand_owners(xindex, pair % n_texts, pair // n_texts)
    keep = owner != pair_acc
    linked = unique_sorted(pair_acc[keep] * n_acc + owner[keep])
    link_acc, link_other = linked // n_acc, (linked % n_acc).tolist()
    starts = np.flatnonzero(np.r_[True, link_acc[1:] != link_acc[:-1]]).tolist() if len(linked) else []
    for lo, hi in zip(starts, starts[1:] + [len(linked)]):
        others[int(link_acc[lo])] = set(link_other[lo:hi])
    return others, hit_prompts, hits.links()


def near_neighbour_counts(xindex: CrossAccountIndex, query_vectors: np.ndarray, query_accounts: np.ndarray,
                          linkable: np.ndarray, n_accounts: int, *, k: int = 16, threshold: float = 0.9
                          ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """`near_neighbour_links` with per-account counts in place of its dicts: (number of other accounts
    owning a near neighbour, number of prompts with such a neighbour) as (n_accounts,) int arrays
    indexed by account code, and the same graph links. Memory grows with the hits, not with the
    (account, other account) pairs: the other accounts are counted one account at a time."""
    hits = _NeighbourHits.find(xindex, query_vectors, query_accounts, linkable, k=k, threshold=threshold)
    size = max(n_accounts, hits.n_accounts)
    hit_prompts = np.zeros(size, dtype=np.int64)
    for a, n in hits.hit_prompts():
        hit_prompts[a] = n
    others = np.zeros(size, dtype=np.int64)
    n_texts = len(xindex.owner_ptr) - 1
    pair = unique_sorted(hits.acc * n_texts + hits.text)  # each account's distinct hit texts, by account
    pair_acc, pair_text = pair // n_texts, pair % n_texts
    seen = np.zeros(hits.n_accounts, dtype=bool)
    starts = np.flatnonzero(np.r_[True, pair_acc[1:] != pair_acc[:-1]]).tolist() if len(pair) else []
    for lo, hi in zip(starts, starts[1:] + [len(pair)]):
        a = int(pair_acc[lo])
        _, owner = _expand_owners(xindex, pair_text[lo:hi], pair_acc[lo:hi])
        seen[owner] = True
        seen[a] = False
        others[a] = np.count_nonzero(seen)
        seen[owner] = False
    return others[:n_accounts], hit_prompts[:n_accounts], hits.links()


@dataclass
class _NeighbourHits:
    """The (query, neighbour text) hits of a near-neighbour search that link to another account, in
    query order then rank order, vectorised (a Python loop over hits and owners cost seconds)."""

    xindex: CrossAccountIndex
    query_accounts: np.ndarray
    q_idx: np.ndarray  # query of each hit
    text: np.ndarray  # neighbour text of each hit
    acc: np.ndarray  # querying account of each hit
    n_owners: np.ndarray  # accounts owning the text
    linkable: np.ndarray  # per hit: the query is linkable and the text not in common use
    n_accounts: int  # bound on every account code seen

    @classmethod
    def find(cls, xindex: CrossAccountIndex, query_vectors: np.ndarray, query_accounts: np.ndarray,
             linkable: np.ndarray, *, k: int, threshold: float) -> _NeighbourHits:
        sims, nbrs = xindex.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        counts = xindex.owner_count()
        query_accounts = np.asarray(query_accounts, dtype=np.int64)
        # every (query, neighbour) at or above the threshold; `~(s < threshold)` so that a NaN
        # similarity counts, as it did in the loop's `if s < threshold: skip`
        q_idx, rank = np.nonzero((nbrs >= 0) & ~(sims < threshold))
        text = nbrs[q_idx, rank].astype(np.int64)
        acc = query_accounts[q_idx]
        # A hit counts when its text has an owner other than the querying account. A text's owners
        # are distinct, so that is a text with two or more owners, or whose one owner is another.
        n_owners = counts[text]
        counted = (n_owners > 1) | (xindex.owner_codes[xindex.owner_ptr[text]] != acc)
        q_idx, text, acc, n_owners = q_idx[counted], text[counted], acc[counted], n_owners[counted]
        link = np.asarray(linkable, dtype=bool)[q_idx] & (n_owners <= common_cap(xindex.n_accounts))
        bound = max(xindex.n_accounts, int(xindex.owner_codes.max(initial=-1)) + 1,
                    int(query_accounts.max(initial=-1)) + 1)
        return cls(xindex, query_accounts, q_idx, text, acc, n_owners, link, bound)

    def hit_prompts(self) -> list[tuple[int, int]]:
        """(account, number of its queries with at least one hit), for accounts with any."""
        accounts, n = unique_counts(self.query_accounts[unique_sorted(self.q_idx)])
        return list(zip(accounts.tolist(), n.tolist()))

    def links(self) -> list[tuple[int, int]]:
        """One (account, other) per other owner of each linkable hit, in hit order, owners in index order."""
        from_acc, to_acc = _expand_owners(self.xindex, self.text[self.linkable], self.acc[self.linkable])
        keep = to_acc != from_acc
        return list(zip(from_acc[keep].tolist(), to_acc[keep].tolist()))


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """`np.unique` of a 1-d array by sort-and-compare: numpy 2.4's hash-based `np.unique` took 4.3 s
    where a sort took 0.2 s (3M distinct int64)."""
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_counts=True)` of a 1-d array, by sort-and-compare (see `unique_sorted`)."""
    ordered = np.sort(values)
    if not len(ordered):
        return ordered, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return ordered[starts], np.diff(np.r_[starts, len(ordered)])


def _expand_owners(xindex: CrossAccountIndex, texts: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One entry per owner of each of `texts`, in order (texts in turn, each text's owners in index
    order): (the tag of the entry's text, the owner)."""
    n = xindex.owner_count()[texts]
    entry = np.repeat(np.arange(len(texts)), n)
    first = np.cumsum(n) - n
    owner = xindex.owner_codes[xindex.owner_ptr[texts][entry] + np.arange(len(entry)) - first[entry]]
    return tags[entry], owner


def skeleton_links(account_codes: np.ndarray, keys: Sequence[tuple[int | None, int | None]], n_accounts: int,
                   min_uses: int = 2, common: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """Links between accounts that each use the same wrapper skeleton at least `min_uses` times.

    Skeletons in `common` (those several organic users share, e.g. "can you explain this ...")
    link nobody.
    """
    uses: dict[tuple[int, int], int] = defaultdict(int)
    for a, pair in zip(account_codes.tolist(), keys):
        for key in pair:
            if key is not None and key not in common:
                uses[(key, a)] += 1
    by_key: dict[int, list[int]] = defaultdict(list)
    for (key, a), n in uses.items():
        if n >= min_uses:
            by_key[key].append(a)
    cap = common_cap(n_accounts)
    links: list[tuple[int, int]] = []
    for accounts in by_key.values():
        if 2 <= len(accounts) <= cap:
            accounts = sorted(accounts)
            links.extend((x, y) for i, x in enumerate(accounts) for y in accounts[i + 1:])
    return links


#: Evidence each kind of link carries: a rare wrapper skeleton both accounts use repeatedly is
#: stronger than one near-duplicate prompt pair.
SKELETON_LINK_WEIGHT = 2
NEAR_DUPLICATE_LINK_WEIGHT = 1


def weighted_edges(skeleton: list[tuple[int, int]], near_duplicate: list[tuple[int, int]],
                   min_weight: int = 3) -> list[tuple[int, int, int]]:
    """The graph's edges (a < b, weight): each pair's summed link evidence, kept at `min_weight`."""
    pair_weight: dict[tuple[int, int], int] = defaultdict(int)
    for links, w in ((skeleton, SKELETON_LINK_WEIGHT), (near_duplicate, NEAR_DUPLICATE_LINK_WEIGHT)):
        for a, b in links:
            if a != b:
                pair_weight[(min(a, b), max(a, b))] += w
    return sorted((a, b, c) for (a, b), c in pair_weight.items() if c >= min_weight)


@dataclass(frozen=True)
class CoordinationGraph:
    """Accounts (by code) joined by coordination evidence: component label per account and the
    weighted edges, for analysts (features keep only the per-account summaries)."""

    labels: np.ndarray  # (n_accounts,) component label
    edges: list[tuple[int, int, int]]  # (a, b, weight), a < b


def account_graph(skeleton: list[tuple[int, int]], near_duplicate: list[tuple[int, int]], n_accounts: int,
                  min_weight: int = 3) -> tuple[np.ndarray, np.ndarray, dict[int, set[int]]]:
    """Accounts joined when their shared skeletons and near-duplicates weigh at least `min_weight`
    (one shared wrapper, opening and closing, is enough; two stray near-duplicates are not).

    Returns (component label per account, component size per account, neighbours per account).
    """
    edges = [(a, b) for a, b, _ in weighted_edges(skeleton, near_duplicate, min_weight)]
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    if edges:
        e = np.array(edges)
        g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_accounts, n_accounts))
        _, labels = connected_components(g, directed=False)
    else:
        labels = np.arange(n_accounts)
    sizes = np.bincount(labels)[labels]
    return labels, sizes, neighbours


def synchrony(t_seconds: np.ndarray, account_codes: np.ndarray, n_accounts: int,
              neighbours: dict[int, set[int]]) -> np.ndarray:
    """Per account, the highest correlation of its hourly activity with any graph neighbour's (NaN alone)."""
    out = np.full(n_accounts, np.nan)
    if not neighbours:
        return out
    hours = (t_seconds // 3600).astype(np.int64)
    hours -= hours.min()
    n_hours = int(hours.max()) + 1
    involved = sorted(set(neighbours) | {b for s in neighbours.values() for b in s})
    row_of = {a: i for i, a in enumerate(involved)}
    mask = np.isin(account_codes, involved)
    rows = np.array([row_of[a] for a in account_codes[mask].tolist()], dtype=np.int64)
    m = np.zeros((len(involved), n_hours), dtype=np.float32)
    np.add.at(m, (rows, hours[mask]), 1.0)
    m -= m.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(m, axis=1)
    norms[norms == 0] = 1.0
    m /= norms[:, None]
    for a, nb in neighbours.items():
        ra = row_of[a]
        out[a] = float(max(m[ra] @ m[row_of[b]] for b in nb))
    return out


def shared_value_counts(values: pd.Series, account_codes: np.ndarray, n_accounts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a metadata column: per account (max accounts sharing one of its values, distinct values
    it used, distinct values per prompt). NaN where the account never sent the column."""
    max_shared = np.full(n_accounts, np.nan)
    distinct = np.full(n_accounts, np.nan)
    per_prompt = np.full(n_accounts, np.nan)
    frame = pd.DataFrame({"a": account_codes, "v": values.to_numpy()}).dropna()
    if frame.empty:
        return max_shared, distinct, per_prompt
    pairs = frame.drop_duplicates()
    accounts_per_value = pairs.groupby("v")["a"].nunique()
    pairs = pairs.assign(shared=pairs["v"].map(accounts_per_value).to_numpy())
    g = pairs.groupby("a")
    idx = g.size().index.to_numpy()
    max_shared[idx] = g["shared"].max().to_numpy()
    distinct[idx] = g.size().to_numpy()
    per_prompt[idx] = distinct[idx] / frame.groupby("a").size().loc[idx].to_numpy()
    return max_shared, distinct, per_prompt

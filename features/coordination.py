"""Shared pieces of cross-account work: an inner-product index over distinct prompt texts (for the
analyst's neighbour search) and the wrapper skeletons organic accounts share widely (the organic
reference's common language, which `family_coordination` never counts as a campaign's wrapper)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import faiss
import numpy as np

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


def common_min_accounts(n_organic_accounts: int) -> int:
    """How many organic accounts must share a skeleton for it to be common language: widespread (10,
    or 0.5% of a large reference), not a team's or a course's template (those stay visible, in
    training as out of time); a small reference asks for 2% of its accounts, at least 3."""
    n = n_organic_accounts
    return max(3, min(int(0.02 * n), max(10, int(0.005 * n))))


def common_skeletons(account_codes: np.ndarray, keys: Sequence[tuple[int | None, int | None]],
                     min_accounts: int = 2) -> frozenset[int]:
    """Skeletons used by at least `min_accounts` different (organic) accounts: common language."""
    owners: dict[int, set[int]] = defaultdict(set)
    for a, pair in zip(account_codes.tolist(), keys):
        for key in pair:
            if key is not None:
                owners[key].add(a)
    return frozenset(k for k, s in owners.items() if len(s) >= min_accounts)

"""The population state: what population-level features read about everybody else active in the
scoring window, kept as each account's *contribution* so that one account can be replaced without
rebuilding the rest.

An account's contribution is a pure function of its window rows: the texts it sent, the wrapper
skeletons it used (with harvest probability and payloads), its network and billing values, the
models it asked for, its volume, and the two per-account figures its community aggregates
(harvest_top5, wrapper_share). The state is the sum of the contributions of the accounts in the
window. A batch job builds it from every account at once; the serving worker replaces an account's
contribution whenever it rescores that account. The same code computes the contributions and the
features that read the state, so a score does not depend on which accounts shared a batch: once
every account's contribution is current, the online state equals the batch one.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.features.rows import AccountRows

INFRA_FIELDS: tuple[str, ...] = ("ip", "payment_fingerprint")


@dataclass
class Contribution:
    volume: int
    texts: dict[int, int]  # text hash -> prompts
    keys: dict[int, tuple[int, float]]  # skeleton key -> (uses, sum of harvest probabilities)
    payloads: dict[int, dict[int, int]]  # skeleton key -> payload hash -> uses
    infra: dict[tuple[str, str], int]  # (field, value) -> prompts
    models: dict[str, tuple[float, int]]  # model -> (first use, prompts)
    summary: tuple[float, float] = (0.0, 0.0)  # (harvest_top5, wrapper_share), set once its features are known


def contributions(account_ids: np.ndarray, codes: np.ndarray, text_hashes: np.ndarray, keys: np.ndarray,
                  payloads: np.ndarray, harvest_p: np.ndarray, t: np.ndarray,
                  infra: dict[str, np.ndarray | None], models: np.ndarray | None) -> dict[str, Contribution]:
    """Each account's contribution from its rows (row arrays aligned; `codes` index `account_ids`)."""
    n_acc = len(account_ids)
    out = {str(a): Contribution(0, {}, {}, {}, {}, {}) for a in account_ids}
    accs = [out[str(a)] for a in account_ids]
    for a, n in enumerate(np.bincount(codes, minlength=n_acc).tolist()):
        accs[a].volume = n
    pairs = pd.DataFrame({"a": codes, "t": text_hashes}).groupby(["a", "t"]).size()
    for (a, txt), n in zip(pairs.index.tolist(), pairs.tolist()):
        accs[a].texts[txt] = n
    rows = np.repeat(np.arange(len(codes)), keys.shape[1])
    flat = keys.reshape(-1)
    ok = flat >= 0
    kf = pd.DataFrame({"a": codes[rows[ok]], "k": flat[ok], "m": payloads[rows[ok]], "p": harvest_p[rows[ok]]})
    uses = kf.groupby(["a", "k"])["p"].agg(["size", "sum"])
    for (a, k), n, s in zip(uses.index.tolist(), uses["size"].tolist(), uses["sum"].tolist()):
        accs[a].keys[k] = (n, s)
    pay = kf[kf["m"] >= 0].groupby(["a", "k", "m"]).size()
    for (a, k, m), n in zip(pay.index.tolist(), pay.tolist()):
        accs[a].payloads.setdefault(k, {})[m] = n
    for name, values in infra.items():
        if values is None:
            continue
        frame = pd.DataFrame({"a": codes, "v": values}).dropna()
        for (a, v), n in zip(*_pair_counts(frame)):
            accs[a].infra[(name, str(v))] = n
    if models is not None:
        frame = pd.DataFrame({"a": codes, "m": models, "t": t}).dropna(subset=["m"])
        g = frame.groupby(["a", "m"])["t"].agg(["min", "size"])
        for (a, m), first, n in zip(g.index.tolist(), g["min"].tolist(), g["size"].tolist()):
            accs[a].models[str(m)] = (float(first), int(n))
    return out


def from_rows(rows: AccountRows) -> dict[str, Contribution]:
    """The contribution of every account of `rows`."""
    return contributions(rows.account_ids, rows.codes, rows.text_hashes, rows.skeleton_keys, rows.payload_hashes,
                         rows.harvest_p(), rows.t, {f: rows.column(f) for f in INFRA_FIELDS}, rows.column("model"))


def _pair_counts(frame: pd.DataFrame) -> tuple[list, list]:
    s = frame.groupby(["a", "v"]).size()
    return s.index.tolist(), s.tolist()


@dataclass
class KeyStats:
    accounts: int = 0  # accounts using the key
    repeated: int = 0  # accounts using it twice or more
    uses: int = 0
    sum_p: float = 0.0
    payloads: dict[int, int] = field(default_factory=dict)  # payload hash -> uses


class PopulationState:
    """The sum of the contributions of the accounts in the window (see the module docstring)."""

    def __init__(self) -> None:
        self.contrib: dict[str, Contribution] = {}
        self.text_accounts: dict[int, int] = {}
        self.keys: dict[int, KeyStats] = {}
        self.key_users: dict[int, dict[str, int]] = {}  # key -> account -> uses
        self.infra_accounts: dict[tuple[str, str], int] = {}
        self.model_users: dict[str, dict[str, tuple[float, int]]] = {}

    # -- maintenance -----------------------------------------------------------------------------

    def replace(self, account: str, new: Contribution | None) -> None:
        """Swap `account`'s contribution for `new` (None: the account left the window)."""
        old = self.contrib.pop(account, None)
        if old is not None:
            self._apply(account, old, -1)
        if new is not None:
            self._apply(account, new, +1)
            self.contrib[account] = new

    def update(self, contributions: dict[str, Contribution]) -> None:
        for account, c in contributions.items():
            self.replace(account, c)

    def set_summary(self, account: str, harvest_top5: float, wrapper_share: float) -> None:
        if account in self.contrib:
            self.contrib[account].summary = (float(harvest_top5), float(wrapper_share))

    def _apply(self, account: str, c: Contribution, sign: int) -> None:
        for txt in c.texts:
            n = self.text_accounts.get(txt, 0) + sign
            if n:
                self.text_accounts[txt] = n
            else:
                self.text_accounts.pop(txt, None)
        for k, (uses, sum_p) in c.keys.items():
            st = self.keys.setdefault(k, KeyStats())
            st.accounts += sign
            st.repeated += sign * (uses >= 2)
            st.uses += sign * uses
            st.sum_p += sign * sum_p
            for m, n in c.payloads.get(k, {}).items():
                left = st.payloads.get(m, 0) + sign * n
                if left:
                    st.payloads[m] = left
                else:
                    st.payloads.pop(m, None)
            users = self.key_users.setdefault(k, {})
            if sign > 0:
                users[account] = uses
            else:
                users.pop(account, None)
            if st.accounts == 0:
                self.keys.pop(k, None)
                self.key_users.pop(k, None)
        for value in c.infra:
            n = self.infra_accounts.get(value, 0) + sign
            if n:
                self.infra_accounts[value] = n
            else:
                self.infra_accounts.pop(value, None)
        for m, first_n in c.models.items():
            users = self.model_users.setdefault(m, {})
            if sign > 0:
                users[account] = first_n
            else:
                users.pop(account, None)
                if not users:
                    self.model_users.pop(m, None)

    # -- what features read ----------------------------------------------------------------------

    @property
    def accounts(self) -> int:
        return len(self.contrib)

    def texts_accounts(self, text_hashes: np.ndarray) -> np.ndarray:
        """Accounts of the population sending each text."""
        get = self.text_accounts.get
        return np.fromiter((get(int(h), 0) for h in text_hashes.tolist()), dtype=np.int64, count=len(text_hashes))

    def values_accounts(self, field_name: str, values: Iterable[object]) -> np.ndarray:
        get = self.infra_accounts.get
        return np.array([get((field_name, str(v)), 0) if v is not None and v == v else 0 for v in values],
                        dtype=np.int64)

    def model_timeline(self, min_events: int) -> dict[str, float]:
        """First appearance of each model asked for at least `min_events` times in the population."""
        out = {}
        for m, users in self.model_users.items():
            if sum(n for _, n in users.values()) >= min_events:
                out[m] = min(first for first, _ in users.values())
        return out

    def wrappers(self, common: Set[int], min_texts: int) -> dict[int, float]:
        """Skeleton key -> mean harvest probability of the prompts it carries, for every key that is a
        wrapper: repeated by two or more accounts around at least `min_texts` payloads, not common."""
        return {k: st.sum_p / st.uses for k, st in self.keys.items()
                if st.repeated >= 2 and len(st.payloads) >= min_texts and k not in common}

    def key_accounts(self, key: int) -> int:
        st = self.keys.get(key)
        return st.accounts if st is not None else 0

    def key_repeaters(self, key: int) -> int:
        st = self.keys.get(key)
        return st.repeated if st is not None else 0

    def qualified_uses(self, wrappers: dict[int, float], *, small_account: int, harvest_shaped: float) -> pd.DataFrame:
        """Every (account, wrapper) where the account uses the wrapper: twice or more, or once for an
        account with fewer than `small_account` prompts when the wrapper's prompts are harvest-shaped.
        Columns a (account id), k, n (uses), p (the wrapper's harvest probability)."""
        rows = []
        for k, p in wrappers.items():
            for a, n in self.key_users.get(k, {}).items():
                if n >= 2 or (self.contrib[a].volume < small_account and p >= harvest_shaped):
                    rows.append((a, k, n, p))
        return pd.DataFrame(rows, columns=["a", "k", "n", "p"])


@dataclass(frozen=True)
class Communities:
    """Accounts linked by shared harvest-shaped wrappers: a label per linked account, and the
    aggregates its members inherit."""

    label: dict[str, int]  # linked accounts only; everybody else is alone
    size: dict[int, int]
    sum_top5: dict[int, float]
    sum_wrapper_share: dict[int, float]

    def of(self, account: str) -> tuple[int, float, float]:
        """(size, sum of harvest_top5, sum of wrapper_share) of the account's community (alone: 1, 0, 0)."""
        lab = self.label.get(account)
        if lab is None:
            return 1, 0.0, 0.0
        return self.size[lab], self.sum_top5[lab], self.sum_wrapper_share[lab]


def pair_edges(qualified: pd.DataFrame, max_keys: int, clique_max: int) -> list[tuple[str, str, int]]:
    """Accounts sharing a pair of wrappers are linked (all pairs up to `clique_max` accounts, a star
    beyond); an edge's weight is the number of wrapper pairs its two accounts share."""
    if qualified.empty:
        return []
    top = (qualified.sort_values(["a", "n", "k"], ascending=[True, False, True])
           .groupby("a").head(max_keys)[["a", "k"]])
    pairs = top.merge(top, on="a", suffixes=("1", "2"))
    pairs = pairs[pairs["k1"] < pairs["k2"]]
    weight: dict[tuple[str, str], int] = {}
    for members in pairs.groupby(["k1", "k2"])["a"].agg(lambda s: sorted(s.tolist())):
        if len(members) < 2:
            continue
        links = ([(x, y) for i, x in enumerate(members) for y in members[i + 1:]] if len(members) <= clique_max
                 else [(members[0], y) for y in members[1:]])
        for link in links:
            weight[link] = weight.get(link, 0) + 1
    return sorted((a, b, c) for (a, b), c in weight.items())


def communities(state: PopulationState, edges: list[tuple[str, str, int]]) -> Communities:
    """Connected components of `edges`, with each community's sums of its members' summaries."""
    if not edges:
        return Communities({}, {}, {}, {})
    nodes = sorted({a for a, _, _ in edges} | {b for _, b, _ in edges})
    idx = {a: i for i, a in enumerate(nodes)}
    e = np.array([(idx[a], idx[b]) for a, b, _ in edges])
    n = len(nodes)
    _, lab = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)), directed=False)
    label = {a: int(lab[i]) for a, i in idx.items()}
    size = np.bincount(lab)
    top5 = np.bincount(lab, weights=[state.contrib[a].summary[0] if a in state.contrib else 0.0 for a in nodes])
    share = np.bincount(lab, weights=[state.contrib[a].summary[1] if a in state.contrib else 0.0 for a in nodes])
    return Communities(label, {i: int(s) for i, s in enumerate(size)}, dict(enumerate(top5.tolist())),
                       dict(enumerate(share.tolist())))

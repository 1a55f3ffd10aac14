"""The account feature table: one row per account, a pure function of its events, the prompt-level
vectors and intent scores, the fitted organic baseline, and the cross-account index.

Every column is documented in `features.catalog.FEATURES`. Missing metadata gives NaN, which
LightGBM treats as missing. Large accounts are sampled (seeded by the account id), so cost per
account is bounded and results are deterministic.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.stats import shapiro

from distillguard.features import coordination as C
from distillguard.features import temporal as TM
from distillguard.features import templating as TP
from distillguard.features.baseline import OrganicBaseline
from distillguard.features.catalog import FEATURE_NAMES
from distillguard.features.elicitation import INTENTS


@dataclass(frozen=True)
class FeatureConfig:
    """Sampling sizes and thresholds of the feature computation (recorded with every model)."""

    knn_k: int = 10
    knn_sample: int = 32  # prompts per account compared with the organic baseline
    mmd_sample: int = 256
    dup_sample: int = 400
    prada_sample: int = 200
    xacct_sample: int = 16  # prompts per account looked up among all accounts' prompts
    xacct_k: int = 16
    near_dup_threshold: float = 0.92
    xacct_threshold: float = 0.9
    min_new_model_events: int = 20

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class PromptTable:
    """Prompt-level inputs aligned with the rows of the events frame they were computed for."""

    text_ids: np.ndarray  # (n,) row of each prompt's distinct normalised text in unique_vectors
    unique_vectors: np.ndarray  # (u, d) float32 unit vectors
    intent_scores: np.ndarray  # (n, len(INTENTS))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.unique_vectors[self.text_ids[rows]]


def _seed(account_id: str) -> int:
    return zlib.crc32(account_id.encode())


def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(0.5 * (kl_pm + kl_qm) / np.log(2))


@lru_cache(maxsize=256)
def _strictly_lower(n: int) -> np.ndarray:
    """(n, n) bool mask of the entries below the diagonal (read-only, cached per n)."""
    mask = np.tri(n, n, -1, dtype=bool)
    mask.flags.writeable = False
    return mask


# scipy's `shapiro` without its nan-policy wrapper, which costs ~8x the test itself on 200 values.
# The wrapped function is the same code path, so W is bit-identical; NaN input goes through the
# public function so that NaN handling stays scipy's.
_shapiro_core = getattr(shapiro, "__wrapped__", shapiro)


def prada_normality(vectors: np.ndarray) -> float:
    """Shapiro-Wilk W of each prompt's minimum distance to the account's earlier prompts (PRADA).

    Organic streams give roughly normal minimum distances; systematic exploration does not.
    """
    n = len(vectors)
    if n < 8:
        return float("nan")
    sims = vectors @ vectors.T
    # row i's max over sims[i, :i], for every i >= 1 at once (the same float values, so the same max)
    dmin = 1.0 - np.where(_strictly_lower(n), sims, -np.inf).max(axis=1)[1:]
    if np.ptp(dmin) < 1e-9:
        return 0.0
    if not np.isfinite(dmin).all():
        return float(shapiro(dmin).statistic)
    return float(_shapiro_core(dmin).statistic)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread: the per-account loop multiplies many small matrices (<= 400 x d),
    where OpenBLAS's threads cost more than they give (on a busy 2-core box a 400 x 256 Gram
    matrix took 13 ms with 2 threads, 1.6 ms with 1). Results do not depend on the thread count."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _group_sizes(group: np.ndarray, value: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """For int arrays `group` (< n_groups) and `value` (>= 0): per group, the number of distinct values and
    the sizes of all (group, value) pairs with the group of each pair."""
    width = int(value.max()) + 1 if len(value) else 1
    pairs, sizes = C.unique_counts(group.astype(np.int64) * width + value)
    pair_group = pairs // width
    return np.bincount(pair_group, minlength=n_groups), (pair_group, sizes)


def _model_timeline(events: pd.DataFrame, t: np.ndarray, cfg: FeatureConfig) -> tuple[dict[str, float], str | None]:
    """First appearance of each model in the traffic and the newest one released inside the window."""
    if "model" not in events or events["model"].isna().all():
        return {}, None
    frame = pd.DataFrame({"m": events["model"].to_numpy(), "t": t}).dropna()
    counts = frame["m"].value_counts()
    first = frame.groupby("m")["t"].min()
    first = first[counts.reindex(first.index) >= cfg.min_new_model_events]
    if first.empty:
        return {}, None
    newest = str(first.idxmax())
    # a model already there on the first day is not "new"
    if first[newest] - t.min() < TM.DAY:
        return first.to_dict(), None
    return first.to_dict(), newest


def account_features(events: pd.DataFrame, prompts: PromptTable, baseline: OrganicBaseline,
                     baseline_accounts: Mapping[str, int], intent_thresholds: np.ndarray,
                     common_skeletons: frozenset[int] = frozenset(),
                     config: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """One row per account (index: account_id, sorted), columns `FEATURE_NAMES`; see
    `account_features_and_graph` for the arguments."""
    return account_features_and_graph(events, prompts, baseline, baseline_accounts, intent_thresholds,
                                      common_skeletons, config)[0]


def account_features_and_graph(events: pd.DataFrame, prompts: PromptTable, baseline: OrganicBaseline,
                               baseline_accounts: Mapping[str, int], intent_thresholds: np.ndarray,
                               common_skeletons: frozenset[int] = frozenset(),
                               config: FeatureConfig = FeatureConfig()
                               ) -> tuple[pd.DataFrame, C.CoordinationGraph]:
    """The feature table (one row per account, index: account_id, sorted, columns `FEATURE_NAMES`)
    and the coordination graph behind its coordination columns (account codes index the table's rows).

    `events` holds the contract columns; `prompts` is aligned with its rows; `baseline` is a fitted
    `OrganicBaseline` and `baseline_accounts` maps the account ids it was fitted on to its owner
    codes (an account never counts as its own organic neighbour); `intent_thresholds` holds one
    threshold per intent in `INTENTS` order; `common_skeletons` are wrapper skeletons organic users
    share, which link no accounts.
    """
    if len(events) != len(prompts.text_ids):
        raise ValueError(f"events has {len(events)} rows but the prompt table {len(prompts.text_ids)}")
    if len(events) == 0:
        raise ValueError("no events to build features from")
    cfg = config
    account_ids, codes = np.unique(events["account_id"].to_numpy(dtype=object).astype(str), return_inverse=True)
    n_acc = len(account_ids)
    t = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6
    order = np.lexsort((t, codes))
    bounds = np.searchsorted(codes[order], np.arange(n_acc + 1))
    model_first_seen, newest_model = _model_timeline(events, t, cfg)
    models = events["model"].to_numpy(dtype=object) if "model" in events else None
    conv = events["conversation_id"].to_numpy(dtype=object) if "conversation_id" in events else None
    texts = events["prompt"].to_numpy(dtype=object)

    out = {name: np.full(n_acc, np.nan) for name in FEATURE_NAMES}
    # skeleton keys are a function of the text: hash each distinct text once
    text_codes, distinct_texts = pd.factorize(texts, use_na_sentinel=False)
    distinct_keys = [TP.skeleton_keys(p) for p in distinct_texts]
    keys = [distinct_keys[i] for i in text_codes.tolist()]
    above = prompts.intent_scores > intent_thresholds[None, :]
    exclude_codes = np.array([baseline_accounts.get(a, -1) for a in account_ids], dtype=np.int64)
    n_rows = np.diff(bounds)  # prompts per account

    # per-row inputs in account order, so that account a's rows are the slice bounds[a]:bounds[a+1]
    # (the same rows in the same order as `order[bounds[a]:bounds[a+1]]`, hence the same values)
    lengths_sorted = np.fromiter((len(texts[i]) for i in order.tolist()), dtype=float, count=len(order))
    scores_sorted = np.ascontiguousarray(prompts.intent_scores[order].T)  # (intents, rows), contiguous rows
    above_sorted = np.ascontiguousarray(above[order].T)
    t_sorted = t[order]
    models_sorted = models[order] if models is not None else None

    # counts that need no per-account loop (exact integer arithmetic, as before)
    out["volume"][:] = n_rows
    n_texts, _ = _group_sizes(codes, prompts.text_ids, n_acc)
    out["distinct_ratio"][:] = n_texts / n_rows
    out["any_intent_rate"][:] = np.bincount(codes, weights=above.any(axis=1), minlength=n_acc) / n_rows
    if conv is not None:
        conv_codes, _ = pd.factorize(events["conversation_id"])  # -1 where missing, like dropna()
        sent = conv_codes >= 0
        with_conv = np.bincount(codes[sent], minlength=n_acc)
        n_conv, (conv_acc, conv_size) = _group_sizes(codes[sent], conv_codes[sent], n_acc)
        multi = np.bincount(conv_acc, weights=np.where(conv_size > 1, conv_size, 0), minlength=n_acc)
        has = with_conv > 0
        out["multi_turn_share"][has] = multi[has] / with_conv[has]
        out["turns_per_conversation"][has] = with_conv[has] / n_conv[has]
        out["conversation_id_missing_share"][:] = 1 - with_conv / n_rows

    knn_rows: list[np.ndarray] = []
    mmd_rows: list[np.ndarray] = []
    intent_rate = np.empty((n_acc, len(INTENTS)))
    intent_mean = np.empty((n_acc, len(INTENTS)))
    with _one_blas_thread():
        for a in range(n_acc):
            lo, hi = int(bounds[a]), int(bounds[a + 1])
            rows = order[lo:hi]
            n = hi - lo
            rng = np.random.default_rng(_seed(account_ids[a]))
            ta = t_sorted[lo:hi]
            vec_rows = rows[_sample(rng, n, cfg.mmd_sample)]
            v = prompts.vectors(vec_rows)

            # distribution vs organic: sampled rows now, computed for all accounts at once below
            mmd_rows.append(vec_rows)
            out["prada_normality"][a] = prada_normality(prompts.vectors(rows[: cfg.prada_sample]))
            knn_rows.append(rows[rng.permutation(n)[: cfg.knn_sample]])

            # templating and repetition
            dv = prompts.vectors(rows[_sample(rng, n, cfg.dup_sample)])
            out["near_duplicate_rate"][a] = TP.near_duplicate_rate(dv, cfg.near_dup_threshold)
            out["mean_pairwise_cosine"][a] = TP.mean_pairwise_cosine(v)
            out["skeleton_rate"][a] = TP.skeleton_rate([keys[i] for i in rows.tolist()])
            lengths = lengths_sorted[lo:hi]
            out["prompt_chars_median"][a] = float(np.median(lengths))
            out["prompt_chars_cv"][a] = float(lengths.std() / lengths.mean()) if lengths.mean() > 0 else np.nan

            # extraction intent: per intent, the mean over the account's rows of one contiguous row
            intent_rate[a] = above_sorted[:, lo:hi].sum(axis=1) / n
            intent_mean[a] = scores_sorted[:, lo:hi].mean(axis=1)

            # temporal
            cv, burst = TM.interarrival_stats(ta)
            out["interarrival_cv"][a], out["burstiness"][a] = cv, burst
            prof = TM.hour_profile(ta)
            out["hour_entropy"][a] = TM.hour_entropy(prof)
            out["quiet_8h_share"][a] = TM.quietest_window_share(prof)
            active, span, per_day = TM.activity_span(ta)
            out["active_days"][a], out["span_days"][a], out["prompts_per_active_day"][a] = active, span, per_day
            delay, share = TM.new_model_adoption(ta, models_sorted[lo:hi] if models_sorted is not None else None,
                                                 model_first_seen, newest_model)
            out["new_model_delay_hours"][a], out["new_model_share"][a] = delay, share
    for i, intent in enumerate(INTENTS):
        out[f"{intent}_rate"][:] = intent_rate[:, i]
        out[f"{intent}_score_mean"][:] = intent_mean[:, i]

    # distribution of each account's sampled prompts vs organic, batched over all accounts
    mr = np.concatenate(mmd_rows)
    ma = np.repeat(np.arange(n_acc), [len(r) for r in mmd_rows])  # sorted: account by account
    per_account = np.bincount(ma, minlength=n_acc).astype(float)
    rff_sum = np.zeros((n_acc, len(baseline.organic_rff_mean_)))
    step = 32_768
    for lo in range(0, len(mr), step):
        # per-account sums of this chunk's rows (ma is sorted, so each account is one run)
        acc = ma[lo:lo + step]
        starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
        feats = baseline.rff_features(prompts.vectors(mr[lo:lo + step])).astype(np.float64)
        rff_sum[acc[starts]] += np.add.reduceat(feats, starts, axis=0)
    out["mmd_organic"][:] = np.linalg.norm(rff_sum / per_account[:, None] - baseline.organic_rff_mean_, axis=1)
    k_clusters = len(baseline.cluster_distribution_)
    clusters = np.concatenate([baseline.assign_clusters(prompts.vectors(mr[lo:lo + step]))
                               for lo in range(0, len(mr), step)])
    hist = np.bincount(ma * k_clusters + clusters, minlength=n_acc * k_clusters).reshape(n_acc, k_clusters)
    hist = hist / per_account[:, None]
    for a in range(n_acc):
        out["cluster_js_divergence"][a] = _js_divergence(hist[a], baseline.cluster_distribution_)
    out["cluster_coverage"][:] = np.count_nonzero(hist, axis=1) / np.minimum(per_account, k_clusters)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(hist > 0, hist * np.log(hist), 0.0)
    out["cluster_entropy"][:] = -plogp.sum(axis=1) / np.log(k_clusters)

    # kNN distances to organic prompts, batched over all accounts (own prompts excluded)
    kr = np.concatenate(knn_rows)
    ka = np.repeat(np.arange(n_acc), [len(r) for r in knn_rows])
    dist, _ = baseline.knn(prompts.vectors(kr), k=cfg.knn_k, exclude_owner=exclude_codes[ka])
    per_prompt = dist.mean(axis=1)
    nearest = dist[:, 0]
    frame = pd.DataFrame({"a": ka, "d": per_prompt, "d1": nearest})
    g = frame.groupby("a")
    out["knn_organic_mean"][g.size().index] = g["d"].mean().to_numpy()
    out["knn_organic_p10"][g.size().index] = g["d"].quantile(0.1).to_numpy()
    out["knn_organic_p50"][g.size().index] = g["d"].quantile(0.5).to_numpy()
    out["knn_organic_p90"][g.size().index] = g["d"].quantile(0.9).to_numpy()
    out["nearest_organic_mean"][g.size().index] = g["d1"].mean().to_numpy()

    # coordination across accounts
    xindex = C.CrossAccountIndex.build(prompts.text_ids, codes, prompts.unique_vectors, n_acc)
    # the first xacct_sample of each account's (shuffled) kNN sample, with their organic distances
    rank = np.arange(len(ka)) - np.searchsorted(ka, ka)
    pick = rank < cfg.xacct_sample
    xr, xa = kr[pick], ka[pick]
    # short prompts and prompts with an organic near-twin are common language: they link nobody
    long_enough = np.fromiter((len(texts[i].split()) >= TP.MIN_TOKENS_FOR_SKELETON for i in xr), dtype=bool,
                              count=len(xr))
    linkable = long_enough & (nearest[pick] > 1.0 - cfg.xacct_threshold)
    # counts, not the (account, other account) sets, which grow with the square of the accounts
    others, hit_prompts, nn_links = C.near_neighbour_counts(xindex, prompts.vectors(xr), xa, linkable, n_acc,
                                                            k=cfg.xacct_k, threshold=cfg.xacct_threshold)
    sampled = np.bincount(xa, minlength=n_acc)
    out["xacct_neighbour_accounts"][:] = others
    out["xacct_neighbour_share"][:] = hit_prompts / np.maximum(sampled, 1)
    sk_links = C.skeleton_links(codes, keys, n_acc, common=common_skeletons)
    comp_labels, comp_size, neighbours = C.account_graph(sk_links, nn_links, n_acc)
    graph = C.CoordinationGraph(comp_labels, C.weighted_edges(sk_links, nn_links))
    out["component_size"][:] = comp_size
    out["graph_degree"][:] = [len(neighbours.get(a, ())) for a in range(n_acc)]
    out["synchrony_max"][:] = C.synchrony(t, codes, n_acc, neighbours)

    # shared infrastructure and metadata (NaN where a column is absent)
    for col, prefix in (("ip", "ip"), ("asn", "asn"), ("payment_fingerprint", "payment"), ("user_agent", "ua")):
        if col in events:
            shared, distinct, per_prompt_v = C.shared_value_counts(events[col], codes, n_acc)
            out[f"{prefix}_shared_accounts_max"][:] = shared
            out[f"{prefix}_distinct"][:] = distinct
            out[f"{prefix}_distinct_per_prompt"][:] = per_prompt_v

    return pd.DataFrame(out, index=pd.Index(account_ids, name="account_id"))[list(FEATURE_NAMES)], graph

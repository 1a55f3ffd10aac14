"""Distribution: how an account's prompts sit against the organic baseline (FAISS neighbours, topic
clusters, an MMD reference). Per account, batched over all accounts for speed; an account never
counts as its own organic neighbour. NaN below `min_prompts` prompts: where one or two prompts sit
says little about an account, and a newcomer's first question on this week's news would otherwise
look like an anomaly."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.stats import shapiro

from distillguard.features.baseline import OrganicBaseline
from distillguard.features.feature_spec import CONTENT, Feature
from distillguard.features.rows import AccountRows, account_seed

FAMILY = "distribution"
KIND = CONTENT

COLUMNS: tuple[Feature, ...] = (
    Feature("mmd_organic", FAMILY, "MMD (RBF kernel, random Fourier features) between the account's prompt "
            "embeddings and an organic sample", "[0, ~1.4]; NaN under 5 prompts",
            "its prompts as a whole differ from organic traffic (MMD {value:.2f}; organic {organic:.2f})"),
    Feature("cluster_js_divergence", FAMILY, "Jensen-Shannon divergence (bits) of the account's topic-cluster "
            "histogram vs organic", "[0, 1]",
            "its prompts cover topics unlike organic traffic (divergence {value:.2f}; organic {organic:.2f})"),
    Feature("cluster_coverage", FAMILY, "distinct topic clusters used / min(prompts sampled, clusters)", "[0, 1]",
            "its prompts spread over {value:.0%} of the topics they could (organic: {organic:.0%})"),
    Feature("cluster_entropy", FAMILY, "entropy of the account's cluster histogram / log(clusters)", "[0, 1]",
            "its topics are spread {value:.2f} of the way to uniform (organic: {organic:.2f})"),
    Feature("knn_organic_mean", FAMILY, "mean over sampled prompts of the mean cosine distance to the k nearest "
            "organic prompts of other accounts", "[0, 2]",
            "its prompts sit {value:.2f} from their nearest organic prompts on average (organic: {organic:.2f})"),
    Feature("knn_organic_p10", FAMILY, "10th percentile of that per-prompt kNN distance", "[0, 2]",
            "even its most ordinary prompts sit {value:.2f} from organic ones (organic: {organic:.2f})"),
    Feature("knn_organic_p50", FAMILY, "median of that per-prompt kNN distance", "[0, 2]",
            "its prompts sit far from organic ones (median distance {value:.2f}; organic {organic:.2f})"),
    Feature("knn_organic_p90", FAMILY, "90th percentile of that per-prompt kNN distance", "[0, 2]",
            "its least ordinary prompts sit {value:.2f} from organic ones (organic: {organic:.2f})"),
    Feature("nearest_organic_mean", FAMILY, "mean cosine distance to the single nearest organic prompt", "[0, 2]",
            "its prompts' nearest organic prompt is {value:.2f} away on average (organic: {organic:.2f})"),
    Feature("prada_normality", FAMILY, "Shapiro-Wilk W of successive minimum distances to earlier prompts (PRADA)",
            "[0, 1]; NaN under 8 prompts",
            "its prompts explore the space systematically (PRADA normality {value:.2f}; organic {organic:.2f})"),
)


def compute(rows: AccountRows, baseline: OrganicBaseline, baseline_accounts: Mapping[str, int], *, knn_k: int,
            knn_sample: int, mmd_sample: int, prada_sample: int, min_prompts: int) -> dict[str, np.ndarray]:
    n_acc = rows.n_accounts
    out = {c.name: np.full(n_acc, np.nan) for c in COLUMNS}
    exclude_codes = np.array([baseline_accounts.get(a, -1) for a in rows.account_ids], dtype=np.int64)
    mmd_rows, knn_rows = [], []
    with one_blas_thread():
        for a in range(n_acc):
            lo, hi = int(rows.bounds[a]), int(rows.bounds[a + 1])
            r = rows.order[lo:hi]
            n = hi - lo
            rng = np.random.default_rng(account_seed(rows.account_ids[a]))
            mmd_rows.append(r[np.arange(n) if n <= mmd_sample else np.sort(rng.choice(n, mmd_sample, replace=False))])
            out["prada_normality"][a] = prada_normality(rows.prompts.vectors(r[:prada_sample]))
            knn_rows.append(r[rng.permutation(n)[:knn_sample]])

    # distribution of each account's sampled prompts vs organic, batched over all accounts
    mr = np.concatenate(mmd_rows)
    ma = np.repeat(np.arange(n_acc), [len(x) for x in mmd_rows])  # sorted: account by account
    per_account = np.bincount(ma, minlength=n_acc).astype(float)
    rff_sum = np.zeros((n_acc, len(baseline.organic_rff_mean_)))
    step = 32_768
    for lo in range(0, len(mr), step):
        acc = ma[lo:lo + step]
        starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
        feats = baseline.rff_features(rows.prompts.vectors(mr[lo:lo + step])).astype(np.float64)
        rff_sum[acc[starts]] += np.add.reduceat(feats, starts, axis=0)
    out["mmd_organic"][:] = np.linalg.norm(rff_sum / per_account[:, None] - baseline.organic_rff_mean_, axis=1)
    k_clusters = len(baseline.cluster_distribution_)
    clusters = np.concatenate([baseline.assign_clusters(rows.prompts.vectors(mr[lo:lo + step]))
                               for lo in range(0, len(mr), step)])
    hist = np.bincount(ma * k_clusters + clusters, minlength=n_acc * k_clusters).reshape(n_acc, k_clusters)
    hist = hist / per_account[:, None]
    out["cluster_js_divergence"][:] = [_js_divergence(hist[a], baseline.cluster_distribution_) for a in range(n_acc)]
    out["cluster_coverage"][:] = np.count_nonzero(hist, axis=1) / np.minimum(per_account, k_clusters)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(hist > 0, hist * np.log(hist), 0.0)
    out["cluster_entropy"][:] = -plogp.sum(axis=1) / np.log(k_clusters)

    # kNN distances to organic prompts, batched over all accounts (own prompts excluded)
    kr = np.concatenate(knn_rows)
    ka = np.repeat(np.arange(n_acc), [len(x) for x in knn_rows])
    dist, _ = baseline.knn(rows.prompts.vectors(kr), k=knn_k, exclude_owner=exclude_codes[ka])
    frame = pd.DataFrame({"a": ka, "d": dist.mean(axis=1), "d1": dist[:, 0]})
    g = frame.groupby("a")
    idx = g.size().index
    out["knn_organic_mean"][idx] = g["d"].mean().to_numpy()
    out["knn_organic_p10"][idx] = g["d"].quantile(0.1).to_numpy()
    out["knn_organic_p50"][idx] = g["d"].quantile(0.5).to_numpy()
    out["knn_organic_p90"][idx] = g["d"].quantile(0.9).to_numpy()
    out["nearest_organic_mean"][idx] = g["d1"].mean().to_numpy()
    small = rows.volume < min_prompts
    for values in out.values():
        values[small] = np.nan
    return out


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


def one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread: the per-account loops multiply many small matrices (<= 400 x d),
    where OpenBLAS's threads cost more than they give (on a busy 2-core box a 400 x 256 Gram
    matrix took 13 ms with 2 threads, 1.6 ms with 1). Results do not depend on the thread count."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")

"""FAISS index choices for the organic baseline: build time, batched query throughput, recall@10 (prints
figures; not a test).

Data: the traffic simulator's organic events (`SimulatorConfig(accounts=1200, seed=11)` gives ~118k
organic prompts, ~68k distinct), embedded with the static profile (256-d). The first N rows of a
seeded shuffle are the database, duplicates included as in real traffic, so no tiling or perturbing
is needed up to ~118k. Queries: 2,000 organic prompts of a *different* simulation (seed 12), i.e. new
accounts scored against the baseline, so no query is its own neighbour.

Per index: build s (train + add), q/s (2,000 queries in one batch, k=10), 1-q ms (median latency of a
single-query search, what an online scorer pays), recall@10 against exact search. Recall counts a
returned neighbour as found when it is at least as similar as the exact 10th neighbour, so duplicate
prompts (exact ties) are not scored as misses. Finally `OrganicBaseline.fit` end to end with its
defaults (per-account cap 64, so it indexes fewer rows than N).

    python bench/baseline_index.py --sizes 20000,100000

Measured on the 2-core dev box (load average ~3.6 from other jobs, so absolute times are noisy):

    N=100k     build s   q/s    1-q ms  recall@10
    flat         0.07      726  32.0    1.000
    ivf1264/16  10.2     9,034   0.12   0.957   (nprobe 32: 5,404 q/s, 0.980)
    hnsw32/32   14.8     9,952   0.11   0.917   (ef 128: 3,290 q/s, 0.951)

IVF-Flat beats HNSW32 on 2 cores at equal throughput and builds faster, so OrganicBaseline uses IVF
above `exact_max`. With the default cap of 64 prompts per account, 100k organic events of ~1k
accounts keep ~39k rows, which stay under exact_max=50,000 (flat, fit 2.4 s).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import faiss
import numpy as np

from distillguard.features.baseline import OrganicBaseline
from distillguard.features.embedding import load_embedder


def organic_prompts(accounts: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Prompts and integer account codes of the simulator's organic (label 0) events."""
    from distillguard.data.simulator import simulate
    from distillguard.data.simulator_config import SimulatorConfig

    sim = simulate(SimulatorConfig(accounts=accounts, seed=seed))
    labels = dict(zip(sim.labels["account_id"], sim.labels["label"]))
    ev = sim.events[sim.events["account_id"].map(labels) == 0]
    codes = ev["account_id"].astype("category").cat.codes.to_numpy().astype(np.int64)
    return ev["prompt"].astype(str).tolist(), codes


def recall_at_k(exact_s: np.ndarray, approx_s: np.ndarray, approx_i: np.ndarray, k: int) -> float:
    kth = exact_s[:, k - 1:k]
    return float(((approx_i >= 0) & (approx_s >= kth - 1e-5)).sum() / exact_s.size)


def timed_build(make: Callable[[np.ndarray], faiss.Index], X: np.ndarray) -> tuple[faiss.Index, float]:
    t = time.perf_counter()
    index = make(X)
    return index, time.perf_counter() - t


def measure(index: faiss.Index, Q: np.ndarray, exact_s: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    """(queries per second batched, median single-query ms, recall@k)."""
    t = time.perf_counter()
    s, i = index.search(Q, k)
    qps = len(Q) / (time.perf_counter() - t)
    lat = []
    for q in Q[:200]:
        t = time.perf_counter()
        index.search(q[None, :], k)
        lat.append((time.perf_counter() - t) * 1e3)
    return qps, statistics.median(lat), recall_at_k(exact_s, s, i, k)


def flat(X: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    return index


def ivf(X: np.ndarray) -> faiss.Index:
    # Same nlist rule as OrganicBaseline: ~4√n, at least 39 rows per list; trained on <= 64 rows per list.
    n, d = X.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1
    train = X[np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)]
    index.train(np.ascontiguousarray(train))
    index.add(X)
    return index


def hnsw(X: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(X.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(X)
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    emb = load_embedder("static")
    prompts, codes = organic_prompts(1200, seed=11)
    order = np.random.default_rng(0).permutation(len(prompts))
    if max(sizes) > len(order):
        raise SystemExit(f"only {len(order)} organic prompts; raise the simulated account count")
    t = time.perf_counter()
    X_all = emb.encode([prompts[i] for i in order[: max(sizes)]], batch_size=256)
    codes = codes[order[: max(sizes)]]
    print(f"embedded {len(X_all):,} organic prompts ({len(set(prompts[i] for i in order[:max(sizes)])):,} "
          f"distinct) with profile static in {time.perf_counter() - t:.1f} s")
    q_prompts, _ = organic_prompts(200, seed=12)
    rng = np.random.default_rng(1)
    Q = emb.encode([q_prompts[i] for i in rng.choice(len(q_prompts), args.queries, replace=False)])
    keep = np.linalg.norm(X_all, axis=1) > 0.5  # the static profile leaves token-less prompts at zero
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
          f"load average {os.getloadavg()[0]:.2f}; {len(Q)} queries, k=10\n")

    header = f"{'N':>7}  {'index':<18} {'build s':>8} {'q/s':>9} {'1-q ms':>7} {'recall@10':>9}"
    print(header)
    print("-" * len(header))
    for n in sizes:
        X = np.ascontiguousarray(X_all[:n][keep[:n]])
        exact_index, build = timed_build(flat, X)
        exact_s, _ = exact_index.search(Q, 10)
        qps, lat, rec = measure(exact_index, Q, exact_s)
        print(f"{len(X):>7}  {'flat':<18} {build:>8.2f} {qps:>9,.0f} {lat:>7.2f} {rec:>9.3f}")
        index, build = timed_build(ivf, X)
        for nprobe in (4, 8, 16, 32, 64):
            index.nprobe = nprobe
            qps, lat, rec = measure(index, Q, exact_s)
            print(f"{'':>7}  {f'ivf{index.nlist} nprobe={nprobe}':<18} {build:>8.2f} {qps:>9,.0f} {lat:>7.2f} {rec:>9.3f}")
        index, build = timed_build(hnsw, X)
        for ef in (16, 32, 64, 128):
            index.hnsw.efSearch = ef
            qps, lat, rec = measure(index, Q, exact_s)
            print(f"{'':>7}  {f'hnsw32 ef={ef}':<18} {build:>8.2f} {qps:>9,.0f} {lat:>7.2f} {rec:>9.3f}")
        del index, exact_index

    print("\nOrganicBaseline.fit with defaults (cap 64 prompts/account, exact_max 50,000, nprobe 16):")
    for n in sizes:
        X, c = X_all[:n][keep[:n]], codes[:n][keep[:n]]
        t = time.perf_counter()
        b = OrganicBaseline().fit(X, c, emb.identity)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        b.knn(Q, k=10, exclude_owner=np.full(len(Q), -1))
        knn_qps = len(Q) / (time.perf_counter() - t)
        print(f"  N={len(X):,}: kept {len(b.owners_):,} rows of {len(np.unique(c)):,} accounts, index {b.index_kind_}, "
              f"recall@10 {b.index_recall_at_10_:.3f}, fit {fit_s:.1f} s, knn with exclude_owner {knn_qps:,.0f} q/s")
        b2 = OrganicBaseline(max_prompts_per_account=10**9).fit(X, c, emb.identity)
        print(f"  N={len(X):,} uncapped: index {b2.index_kind_}, recall@10 {b2.index_recall_at_10_:.3f}")


if __name__ == "__main__":
    main()

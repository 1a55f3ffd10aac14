"""Embedding throughput and neighbour fidelity per embedder profile (prints figures; not a test).

For the same N simulated prompts, each profile gets:
  plain/s    prompts per second of a bare SentenceTransformer.encode on the raw list;
  pipe/s     prompts per second of the project's pipeline: a fresh EmbeddingStore (normalise, dedupe,
             length-sort, embed only new texts, persist) in a temporary folder;
  pipe/plain the ratio of the two (dedupe is most of the gain; the store's writes are the cost);
  warm/s     prompts per second of the same pipeline call repeated on the now filled store;
  1-prompt   median latency of encoding one prompt (what an online scorer pays on a cache miss);
  recall@10  neighbour agreement with fp32 MiniLM: for 2,000 query prompts, the share of their 10
             nearest distinct prompts (cosine, faiss IndexFlatIP, self excluded) that fp32 MiniLM
             also puts in its 10 nearest.
The device is picked automatically (cuda if available), so the same script runs on a GPU machine.

    python bench/embed_throughput.py --n 3000 --profiles minilm,static
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillguard.features.embedding import PROFILES, Embedder, MissingExtraError, load_embedder
from distillguard.features.embedding_store import EmbeddingStore
from distillguard.features.text_normalization import normalize_prompt


def simulated_prompts(n: int, seed: int) -> list[str]:
    """N prompts drawn uniformly (seeded) from the traffic simulator's events, duplicates included."""
    from distillguard.data.simulator import SimulatorConfig, simulate

    accounts = max(20, math.ceil(n / 80))
    while True:
        events = simulate(SimulatorConfig(accounts=accounts, seed=seed)).events
        if len(events) >= n:
            return events["prompt"].sample(n=n, random_state=seed).astype(str).tolist()
        accounts *= 2


@dataclass
class Row:
    profile: str
    device: str
    dim: int
    load_s: float
    plain_ps: float
    pipe_ps: float
    warm_ps: float
    one_ms: float
    recall: float | None


def neighbours(vecs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest rows of `vecs` (inner product) to each query row, itself excluded."""
    import faiss

    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(np.ascontiguousarray(vecs, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(vecs[queries], dtype=np.float32), k + 1)
    return np.stack([[j for j in row if j != q][:k] for q, row in zip(queries, found)])


def recall_at_k(vecs: np.ndarray, ref: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    got, want = neighbours(vecs, queries, k), neighbours(ref, queries, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, want)]))


def bench_profile(emb: Embedder, prompts: list[str], batch_size: int, first_of_distinct: np.ndarray,
                  repeats: int = 1, clock: Callable[[], float] = time.perf_counter,
                  ) -> tuple[float, float, float, float, np.ndarray]:
    """Return prompts/s of plain encode, of a cold pipeline and of a warm one (best of `repeats`,
    which guards against a busy machine) timed by `clock`, the one-prompt median wall latency in
    ms, and the vectors of the distinct texts."""
    emb.encode(prompts[:batch_size], batch_size=batch_size)  # warm-up: lazy init, allocator, caches
    plain = pipe = warm = 0.0
    for _ in range(repeats):
        t0 = clock()
        emb.model.encode(prompts, batch_size=batch_size, convert_to_numpy=True,
                         normalize_embeddings=True)
        plain = max(plain, len(prompts) / max(clock() - t0, 1e-9))

        with tempfile.TemporaryDirectory() as tmp:
            with EmbeddingStore(Path(tmp) / "vectors.sqlite", emb.identity) as store:
                t0 = clock()
                vecs = store.embed(prompts, emb, batch_size=batch_size,
                                   show_progress=sys.stderr.isatty())
                pipe = max(pipe, len(prompts) / max(clock() - t0, 1e-9))
                t0 = clock()
                store.embed(prompts, emb, batch_size=batch_size)
                warm = max(warm, len(prompts) / max(clock() - t0, 1e-9))

    singles = []
    for text in prompts[:60]:
        t0 = time.perf_counter()
        emb.encode([text])
        singles.append((time.perf_counter() - t0) * 1e3)
    return plain, pipe, warm, statistics.median(singles[10:]), vecs[first_of_distinct]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="number of simulated prompts")
    ap.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated embedder profiles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=2_000, help="query prompts for recall@10")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 64 on cpu, 256 on cuda")
    ap.add_argument("--repeats", type=int, default=1, help="best of this many timed runs")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: per CPU-second of this process, steadier on a shared machine")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where built embedders live")
    args = ap.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    prompts = simulated_prompts(args.n, args.seed)
    normalised = [normalize_prompt(p) for p in prompts]
    first: dict[str, int] = {}
    for i, t in enumerate(normalised):
        first.setdefault(t, i)
    first_of_distinct = np.fromiter(first.values(), dtype=np.int64)
    lengths = np.array([len(p) for p in prompts])
    print(f"{len(prompts)} prompts, {len(first)} distinct after normalisation "
          f"({1 - len(first) / len(prompts):.0%} duplicates); chars median {np.median(lengths):.0f}, "
          f"p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()}")

    rng = np.random.default_rng(args.seed)
    queries = rng.choice(len(first), size=min(args.queries, len(first)), replace=False)
    # The reference runs first so that every other profile can be scored against it.
    order = ["minilm"] + [p for p in profiles if p != "minilm"]
    ref: np.ndarray | None = None
    rows: list[Row] = []
    for profile in order:
        t0 = time.perf_counter()
        try:
            emb = load_embedder(profile, cache_dir=args.cache_dir)
        except MissingExtraError as err:
            print(f"{profile}: skipped: {err}")
            continue
        load_s = time.perf_counter() - t0
        bs = args.batch_size or (256 if emb.device.startswith("cuda") else 64)
        print(f"{profile}: loaded in {load_s:.1f} s on {emb.device}; benchmarking (batch {bs}) ...",
              flush=True)
        plain, pipe, warm, one_ms, vecs = bench_profile(emb, prompts, bs, first_of_distinct,
                                                        args.repeats, clock)
        if profile == "minilm":
            ref = vecs
        recall = recall_at_k(vecs, ref, queries) if ref is not None else None
        if profile in profiles:
            rows.append(Row(profile, emb.device, emb.dim, load_s, plain, pipe, warm, one_ms, recall))
        del emb

    print()
    if args.clock == "cpu":
        print("throughputs are prompts per CPU-second of this process (all its threads)")
    print(f"{'profile':<12} {'device':<6} {'dim':>4} {'load s':>7} {'plain/s':>8} {'pipe/s':>8} "
          f"{'pipe/plain':>10} {'warm/s':>8} {'1-prompt ms':>11} {'recall@10':>9}")
    for r in rows:
        rec = f"{r.recall:.3f}" if r.recall is not None else "-"
        print(f"{r.profile:<12} {r.device:<6} {r.dim:>4} {r.load_s:>7.1f} {r.plain_ps:>8.0f} "
              f"{r.pipe_ps:>8.0f} {r.pipe_ps / r.plain_ps:>10.2f} {r.warm_ps:>8.0f} {r.one_ms:>11.1f} {rec:>9}")


if __name__ == "__main__":
    main()

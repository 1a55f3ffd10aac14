"""How feature building scales with the number of accounts: time, accounts/s and peak memory (prints
figures; not a test).

For each N, `SimulatorConfig(accounts=N, seed=7)` is streamed to `events.parquet` + `labels.csv` once,
and a first child process embeds every prompt and segment the pipeline will ask for into a persistent
store (untimed; later runs find it all cached). A second, fresh child process then measures the
pipeline as the CLI runs it: `read_events`, `fit_feature_state` on the organic (label 0) accounts
(timed, reported separately), then `build_features` on all events with that state (timed: embedding
look-ups in the warm store, intent scoring, the account features). One child per N, so that
`ru_maxrss` is the high-water mark of that N alone.

Columns: events; events MB (`memory_usage(deep=True)` of the events frame); fit s; build s; acc/s
(accounts per second of `build_features`); RSS pre-build (resident set just before `build_features`,
with the events, the fitted state and the embedder loaded); peak RSS (the child's high-water mark
over reading, fitting and building); build +MB (peak RSS minus RSS pre-build: what the build itself
adds at its peak; "-" when reading or fitting set the peak). Then MB per 1,000 accounts between successive N.

    python bench/features_scale.py                      # N = 1000, 2500, 5000, 10000
    python bench/features_scale.py --sizes 1000,2500 --store /tmp/my-store

Measured on the 2-core dev box (24 GiB; static profile; seed 7; other jobs were running, so
times are noisy, +-15% between repeats; a simulated account sends ~125 prompts on average):

         N     events  events MB  fit s  build s  acc/s  RSS pre-build MB  peak RSS MB  build +MB
      1000    111,717         35    4.7     11.1     90               837         1222        385
      2500    305,424         95   15.2     24.4    102              1119         2104        985
      5000    662,116        206   31.4     64.2     78              1572         3589       2017
     10000  1,269,249        402   75.4    155.6     64              2349         6237       3888

    MB per 1,000 accounts between successive N: peak RSS 588, 594, 530 (linear); events frame 40,
    44, 39; build s per 1,000 accounts 8.9, 15.9, 18.3.

Reading: memory grows linearly, ~0.55 GB per 1,000 accounts (~4.5 KiB per event) on top of ~0.55 GB
fixed (imports: loading the static embedder pulls in torch and sentence-transformers). The build
sets the peak at every N; its main transient users are the FAISS copy of the distinct prompt
vectors (cross-account index, ~0.35 GB at N=5000) and the organic kNN search. Time is mildly
super-linear (90-100 accounts/s at N <= 2,500, ~60 at 10,000): the IVF searches of the baseline
kNN and the cross-account index (~40% of the account features) cost ~sqrt(rows) per query.

Before the speed-up in this change (same box, same seed and store, `--one N` of the old code):
N=1000 build 29.6 s, peak 1302 MB; N=5000 137.3 s, 4043 MB; N=10000 221.0 s (45 accounts/s),
peak 9796 MB (build +6931 MB: per-account sets of "other accounts owning a near-duplicate" grew
with the square of N). The new code gave 170.0 s, peak 6230 MB at N=10000 in a rerun on the
quieter box.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SIZES = (1000, 2500, 5000, 10000)
DEFAULT_WORK = Path("/tmp/distillguard-bench-features")


def _rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), in MiB."""
    with open("/proc/self/statm") as fh:
        resident_pages = int(fh.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """High-water mark of this process's resident set (ru_maxrss is KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sim_dir(work: Path, n: int, seed: int) -> Path:
    return work / f"sim-{n}-seed{seed}"


def prepare(n: int, seed: int, work: Path, store: Path, profile: str) -> dict:
    """Child: write the simulation (once) and embed everything `build_features` will look up (untimed)."""
    from distillguard.data.readers import read_events
    from distillguard.data.simulator import write_simulation
    from distillguard.data.simulator_config import SimulatorConfig
    from distillguard.features.elicitation import IntentScorer
    from distillguard.features.pipeline import EmbeddingContext, embed_exemplars, prepare_prompts

    out = _sim_dir(work, n, seed)
    t0 = time.perf_counter()
    if not (out / "events.parquet").exists() or not (out / "labels.csv").exists():
        write_simulation(SimulatorConfig(accounts=n, seed=seed), out)
    simulate_s = time.perf_counter() - t0
    events = read_events(out / "events.parquet")
    ctx = EmbeddingContext.open(profile, store)
    t0 = time.perf_counter()
    before = ctx.store.computed
    prepare_prompts(events["prompt"], ctx, IntentScorer(exemplar_vectors=embed_exemplars(ctx)))
    ctx.store.close()
    return {"n": n, "simulate_s": simulate_s, "embed_s": time.perf_counter() - t0,
            "embedded": ctx.store.computed - before}


def measure(n: int, seed: int, work: Path, store: Path, profile: str) -> dict:
    """Child: fit on the organic accounts, then time `build_features` on all events."""
    from distillguard.data.readers import read_events, read_labels
    from distillguard.features.pipeline import EmbeddingContext, build_features, fit_feature_state

    sim = _sim_dir(work, n, seed)
    t0 = time.perf_counter()
    events = read_events(sim / "events.parquet")
    labels = read_labels(sim / "labels.csv")
    read_s = time.perf_counter() - t0
    events_mb = float(events.memory_usage(deep=True).sum()) / 2**20
    ctx = EmbeddingContext.open(profile, store)
    organic = events[events["account_id"].isin(labels.loc[labels["label"] == 0, "account_id"])]
    n_organic = int(organic["account_id"].nunique())
    t0 = time.perf_counter()
    state = fit_feature_state(organic, ctx)
    fit_s = time.perf_counter() - t0
    del organic
    gc.collect()
    rss_pre = _rss_mb()
    peak_pre = _peak_rss_mb()
    t0 = time.perf_counter()
    table = build_features(events, state, ctx)
    build_s = time.perf_counter() - t0
    peak = _peak_rss_mb()
    assert len(table) == events["account_id"].nunique()
    return {"n": n, "events": len(events), "accounts": len(table), "organic_accounts": n_organic,
            "events_mb": events_mb, "read_s": read_s, "fit_s": fit_s, "build_s": build_s,
            "acc_per_s": len(table) / build_s, "rss_pre_build_mb": rss_pre, "peak_before_build_mb": peak_pre,
            # what the build adds at its peak; None when an earlier stage (reading, fitting) set the peak
            "peak_rss_mb": peak, "build_added_mb": peak - rss_pre if peak > peak_pre else None}


def _child(mode: str, n: int, args: argparse.Namespace) -> dict:
    """Run this script as a fresh process for one N; its last stdout line is a JSON result."""
    cmd = [sys.executable, __file__, f"--{mode}", str(n), "--seed", str(args.seed), "--work", str(args.work),
           "--store", str(args.store), "--profile", args.profile]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: list[dict]) -> None:
    print(f"\n{'N':>6} {'events':>9} {'events MB':>10} {'fit s':>7} {'build s':>8} {'acc/s':>6} "
          f"{'RSS pre-build MB':>17} {'peak RSS MB':>12} {'build +MB':>10}")
    for r in rows:
        print(f"{r['n']:>6} {r['events']:>9,} {r['events_mb']:>10.0f} {r['fit_s']:>7.1f} {r['build_s']:>8.1f} "
              f"{r['acc_per_s']:>6.0f} {r['rss_pre_build_mb']:>17.0f} {r['peak_rss_mb']:>12.0f} "
              f"{'-' if r['build_added_mb'] is None else format(r['build_added_mb'], '.0f'):>10}")
    if len(rows) < 2:
        return
    print("\nMB per 1,000 accounts between successive N (linear growth: roughly equal steps)")
    print(f"{'N from-to':>13} {'peak RSS':>9} {'events frame':>13} {'build s':>8}")
    steps = []
    for a, b in zip(rows, rows[1:]):
        k = (b["n"] - a["n"]) / 1000
        step = ((b["peak_rss_mb"] - a["peak_rss_mb"]) / k, (b["events_mb"] - a["events_mb"]) / k,
                (b["build_s"] - a["build_s"]) / k)
        steps.append(step)
        print(f"{a['n']:>6}-{b['n']:<6} {step[0]:>9.0f} {step[1]:>13.0f} {step[2]:>8.1f}")
    peak_steps = [s[0] for s in steps]
    ratio = max(peak_steps) / min(peak_steps) if min(peak_steps) > 0 else float("inf")
    verdict = "roughly linear" if ratio < 1.5 else "NOT linear"
    print(f"peak RSS: {verdict} (largest / smallest step = {ratio:.2f}); "
          f"peak RSS per event at the largest N: {rows[-1]['peak_rss_mb'] * 1024 / rows[-1]['events']:.1f} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="account counts, comma-separated")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed (fixed, so runs compare)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where simulated events are written")
    ap.add_argument("--store", type=Path, default=None, help="embedding store folder (default WORK/store)")
    ap.add_argument("--profile", default="static", help="embedder profile")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: measure one N
    ap.add_argument("--prepare", type=int, help=argparse.SUPPRESS)  # child: simulate + embed one N
    args = ap.parse_args()
    args.store = args.store or args.work / "store"

    if args.one is not None or args.prepare is not None:
        result = (measure(args.one, args.seed, args.work, args.store, args.profile) if args.one is not None
                  else prepare(args.prepare, args.seed, args.work, args.store, args.profile))
        print(json.dumps(result))
        return

    rows = []
    for n in sorted(int(s) for s in args.sizes.split(",")):
        prep = _child("prepare", n, args)
        print(f"N={n}: simulated in {prep['simulate_s']:.0f} s, embedded {prep['embedded']:,} new texts in "
              f"{prep['embed_s']:.0f} s (untimed warm-up)", flush=True)
        row = _child("one", n, args)
        print(f"N={n}: {row['events']:,} events, fit {row['fit_s']:.1f} s on {row['organic_accounts']} organic "
              f"accounts, build {row['build_s']:.1f} s ({row['acc_per_s']:.0f} accounts/s), "
              f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
        rows.append(row)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

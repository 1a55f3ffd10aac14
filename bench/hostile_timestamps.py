"""Hostile timestamps in a batch file: do two events dated far apart change what `score` costs or
what it finds? (prints figures; not a test).

A world with harvesting campaigns is simulated and scored twice with the same model by
`distillguard score`, each run in a child of its own (so `ru_maxrss` is that run's high-water mark):
the plain events file, and the same file plus two events of one campaign account dated far apart
but inside the traffic contract's bounds (`data/time_bounds.py`): 2000-01-02 and now. Before the
window end was taken from the bulk of the accounts (`features.window.window_end_us`), the event
dated now made the window end there, and the population shrank to that one account (and its
window to that one event); a dense per-hour allocation over the span between the oldest and newest
event (an earlier coordination feature) had driven such a file past 6 GB.

Printed per file: events, accounts scored, seconds, peak RSS of the scoring child; then the RSS
ratio (the hostile file must stay within 1.2x of the plain one) and how many of the plain run's
accounts the hostile run scored with the same decision.

    python bench/hostile_timestamps.py                       # trains a small model first (~4 min)
    python bench/hostile_timestamps.py --mlruns mlruns --store runs/embeddings
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DEFAULT_WORK = Path("/tmp/distillguard-bench-hostile-ts")


def _cli(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "distillguard.cli", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"distillguard {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def _measured_score(events: Path, out: Path, mlruns: Path, store: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `distillguard score` on `events`, run in a child of a fresh child."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr[-3000:]) if r.returncode else None; "
             "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "distillguard.cli", "score", "--events", str(events),
           "--out", str(out), "--mlruns", str(mlruns), "--store", str(store)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rc, seconds, rss_kib = r.stdout.split()
    if rc != "0":
        raise SystemExit(f"score failed on {events}:\n{r.stderr}")
    return float(seconds), int(rss_kib) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--accounts", type=int, default=1500, help="accounts of the scored world")
    ap.add_argument("--mlruns", type=Path, help="registry with a champion (default: train one in --work)")
    ap.add_argument("--store", type=Path, help="embedding store (default: --work/store)")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    store = args.store or work / "store"
    mlruns = args.mlruns
    if mlruns is None:
        mlruns = work / "mlruns"
        if not (mlruns / "holdout").exists():
            t0 = time.perf_counter()
            _cli("simulate", "--out", str(work / "train"), "--accounts", "260", "--seed", "4")
            _cli("train", "--events", str(work / "train" / "events.parquet"), "--labels",
                 str(work / "train" / "labels.csv"), "--mlruns", str(mlruns), "--store", str(store),
                 "--no-time-to-detection")
            print(f"trained a model in {time.perf_counter() - t0:.0f} s")

    world = work / "world"
    if not (world / "events.parquet").exists():
        _cli("simulate", "--out", str(world), "--accounts", str(args.accounts), "--seed", "11")
    events = pd.read_parquet(world / "events.parquet")
    labels = pd.read_csv(world / "labels.csv", dtype={"account_id": str})
    harvesters = labels.loc[labels["label"] == 1, "account_id"]
    sizes = events[events["account_id"].isin(harvesters)].groupby("account_id").size()
    target = sizes.idxmax()  # a campaign account, linked to the others
    last = events[events["account_id"] == target].tail(1)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    outliers = pd.concat([last, last], ignore_index=True).assign(
        ts=pd.to_datetime([pd.Timestamp("2000-01-02", tz="UTC"), now]).as_unit(str(events["ts"].dt.unit)),
        prompt=["What time is it?", "And now?"])
    hostile = pd.concat([events, outliers], ignore_index=True)
    plain_path, hostile_path = work / "plain.parquet", work / "hostile.parquet"
    events.to_parquet(plain_path, index=False)
    hostile.to_parquet(hostile_path, index=False)

    # a first run warms the embedding store, so that both measured runs embed nothing
    _measured_score(plain_path, work / "warm.csv", mlruns, store)
    figures = {}
    for name, path in (("plain", plain_path), ("hostile", hostile_path)):
        seconds, rss = _measured_score(path, work / f"{name}.csv", mlruns, store)
        scored = pd.read_csv(work / f"{name}.csv", dtype={"account_id": str})
        figures[name] = (seconds, rss, scored)
        n_events = len(pd.read_parquet(path))
        print(f"{name:8s} {n_events:8,} events  {len(scored):6,} accounts scored  {seconds:6.1f} s  "
              f"peak RSS {rss:7.0f} MiB")
    plain, bad = figures["plain"][2].set_index("account_id"), figures["hostile"][2].set_index("account_id")
    common = plain.index.intersection(bad.index)
    same = int((plain.loc[common, "decision"] == bad.loc[common, "decision"]).sum())
    ratio = figures["hostile"][1] / figures["plain"][1]
    print(f"peak RSS hostile / plain: {ratio:.2f} (bound 1.20)")
    print(f"the hostile run scored {len(common):,} of the plain run's {len(plain):,} accounts, {same:,} with the same "
          f"decision; {target} (the account with the two outliers): {plain.loc[target, 'decision']} -> "
          f"{bad.loc[target, 'decision'] if target in bad.index else 'not scored'}")


if __name__ == "__main__":
    main()

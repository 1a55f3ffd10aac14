"""Does the false-positive rate grow with the number of users? The same model scored on out-of-time
populations of growing size (prints figures; not a test).

One model is trained (or taken from `--mlruns`/`--model-uri`) on the first four weeks of a
simulated world of `--train-accounts` accounts. For each size N, a world of the same seed (the same
campaigns, weeks and drift; other accounts) is simulated large enough that about N accounts are
active in its last two weeks, and those two weeks are scored as ONE population, as the product
will face them: every account active in the window, organic and harvesting, sharing popular texts.
Every scored account is new to the model.

Printed per N: accounts and events scored; organic flagged (`review` or `block`) and blocked at the
model's own thresholds; recall at 1% and 0.1% organic FPR; ROC-AUC; recall at 1% FPR of the adaptive
copy (harvesters wearing organic donors' behaviour) and of harvesters with at most 30 prompts; the
share of organic accounts allowed when every account is cut to its first 1-3 prompts; the largest
community and the share of organic accounts in a community of more than 5; seconds (all three
variants) and the peak RSS of the scoring child (one child per N, so `ru_maxrss` is that N's
high-water mark).

    python bench/population_scale.py                          # N = 2000, 10000, 50000
    python bench/population_scale.py --sizes 2000,10000 --work /tmp/popscale
    python bench/population_scale.py --mlruns mlruns          # the champion of an existing registry
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SIZES = (2000, 10000, 50000)
DEFAULT_WORK = Path("/tmp/distillguard-bench-population")
HOLDOUT_DAYS = 14


def _world(seed: int, accounts: int):
    from distillguard.data.simulator_config import SimulatorConfig

    return SimulatorConfig(accounts=accounts, seed=seed)


def _active_share(seed: int) -> float:
    """Share of a world's accounts active in its last `HOLDOUT_DAYS` days (measured on a small world)."""
    import pandas as pd

    from distillguard.data.simulator import simulate

    cfg = _world(seed, 1500)
    ev = simulate(cfg).events
    cutoff = pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.days - HOLDOUT_DAYS)
    return ev.loc[ev["ts"] >= cutoff, "account_id"].nunique() / cfg.accounts


def _train(work: Path, seed: int, accounts: int, store: Path) -> tuple[Path, str]:
    from distillguard.data.simulator import write_simulation
    from distillguard.training.registry import Registry
    from distillguard.training.train_job import TrainConfig, run_training

    import pandas as pd

    mlruns = work / "mlruns"
    if (mlruns / "mlflow.db").exists() and Registry(mlruns).alias_version("champion"):
        return mlruns, "models:/distillguard@champion"
    events, labels, _ = write_simulation(_world(seed, accounts), work / "train-world")
    t0 = time.perf_counter()
    result = run_training(pd.read_parquet(events), pd.read_csv(labels, dtype={"account_id": str}), Registry(mlruns),
                          TrainConfig(seed=seed, store_dir=store, time_to_detection=False), log=lambda m: None)
    print(f"trained v{result.version} on {accounts:,} accounts in {time.perf_counter() - t0:.0f} s; its own "
          f"out-of-time hold-out: recall@1% {result.metrics['oot.recall_at_1pct_fpr']:.3f}, organic blocked "
          f"{result.metrics['oot.organic_blocked']:.2%}", flush=True)
    return mlruns, "models:/distillguard@champion"


def one(n_target: int, share: float, seed: int, work: Path, store: Path, mlruns: Path, model_uri: str) -> dict:
    """Child: simulate (or reuse) the world for N, score its last two weeks as one population, with its
    adaptive copy and its cold-start cut (every account in it is new to the model)."""
    import pandas as pd
    import pyarrow.dataset as ds

    from distillguard.data.simulator import write_simulation
    from distillguard.training.holdout_evaluation import evaluate_on_holdout
    from distillguard.training.holdouts import OUT_OF_TIME, Holdout
    from distillguard.training.registry import Registry
    from distillguard.training.train_job import load_bundle

    cfg = _world(seed, int(math.ceil(n_target / share)))
    folder = work / f"world-{cfg.accounts}"
    if not (folder / "labels.csv").exists():
        write_simulation(cfg, folder)
    cutoff = pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.days - HOLDOUT_DAYS)
    events = ds.dataset(folder / "events.parquet").to_table(filter=ds.field("ts") >= cutoff).to_pandas()
    labels = pd.read_csv(folder / "labels.csv", dtype={"account_id": str})
    labels = labels[labels["account_id"].isin(set(events["account_id"]))].assign(evaluated=True)
    holdout = Holdout(OUT_OF_TIME, events, labels.reset_index(drop=True), cutoff, f"last {HOLDOUT_DAYS} days", {})
    bundle = load_bundle(Registry(mlruns), model_uri)
    t0 = time.perf_counter()
    report = evaluate_on_holdout(bundle, holdout, bundle.open_embeddings(store), seed=seed, log=lambda m: None).report
    seconds = time.perf_counter() - t0
    oot, adaptive, cold = report["out_of_time"], report["adaptive"], report["cold_start"]
    return {"n": int(len(labels)), "events": int(len(events)), "organic": oot["organic_accounts"],
            "harvest": oot["harvest_accounts"], "organic_flagged": oot["organic_flagged"],
            "organic_blocked": oot["organic_blocked"], "recall_1": oot["recall_at_1pct_fpr"],
            "recall_01": oot["recall_at_0.1pct_fpr"], "auc": oot["roc_auc"],
            "adaptive_1": adaptive["recall_at_1pct_fpr"], "le30_1": oot["by_volume"]["le30"]["recall_at_1pct_fpr"],
            "cold_allowed": cold["organic_allowed"],
            "largest_component": oot.get("largest_component", float("nan")),
            "organic_in_gt5": oot.get("organic_in_component_gt5", float("nan")), "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "model_version": bundle.info.get("version")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-accounts", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--store", type=Path, default=None, help="embedding store [default: WORK/embeddings]")
    ap.add_argument("--mlruns", type=Path, default=None, help="use this registry's model instead of training one")
    ap.add_argument("--model-uri", default="models:/distillguard@champion")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--share", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    store = args.store or work / "embeddings"
    if args.one is not None:
        print(json.dumps(one(args.one, args.share, args.seed, work, store, args.mlruns, args.model_uri)))
        return
    mlruns, uri = (args.mlruns, args.model_uri) if args.mlruns else _train(work, args.seed, args.train_accounts, store)
    share = _active_share(args.seed)
    print(f"{share:.0%} of a world's accounts are active in its last {HOLDOUT_DAYS} days", flush=True)
    header = (f"{'N':>7} {'events':>10} {'organic':>8} {'harvest':>8} {'org flagged':>11} {'org blocked':>11} "
              f"{'recall@1%':>9} {'recall@0.1%':>11} {'AUC':>6} {'adaptive@1%':>11} {'<=30 @1%':>8} "
              f"{'cold allowed':>12} {'largest comm':>12} {'org in >5':>9} {'score s':>8} {'peak RSS MB':>11}")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--share", str(share), "--seed", str(args.seed),
               "--work", str(work), "--store", str(store), "--mlruns", str(mlruns), "--model-uri", uri]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"N={n}: failed\n{res.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(r)
        if len(rows) == 1:
            print(f"model v{r['model_version']}\n{header}")
        print(f"{r['n']:>7,} {r['events']:>10,} {r['organic']:>8,} {r['harvest']:>8,} {r['organic_flagged']:>11.2%} "
              f"{r['organic_blocked']:>11.2%} {r['recall_1']:>9.3f} {r['recall_01']:>11.3f} {r['auc']:>6.3f} "
              f"{r['adaptive_1']:>11.3f} {r['le30_1']:>8.3f} {r['cold_allowed']:>12.2%} "
              f"{r['largest_component']:>12.0f} {r['organic_in_gt5']:>9.2%} {r['seconds']:>8.0f} "
              f"{r['peak_rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()

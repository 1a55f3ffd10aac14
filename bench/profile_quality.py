"""Detection quality per embedder profile on the same simulated accounts (the other half of the
choice of default profile; bench/embed_throughput.py measures the cost).

    python bench/profile_quality.py --accounts 300 --profiles static,minilm
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.training.registry import Registry
from distillguard.training.train_job import TrainConfig, run_training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profiles", default="static,minilm")
    ap.add_argument("--store", type=Path, default=Path("runs/embeddings"))
    args = ap.parse_args()
    sim = simulate(SimulatorConfig(accounts=args.accounts, seed=args.seed))
    print(f"{args.accounts} accounts, {len(sim.events):,} events")
    for profile in args.profiles.split(","):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            r = run_training(sim.events, sim.labels, Registry(Path(tmp) / "mlruns"),
                             TrainConfig(seed=args.seed, profile=profile, store_dir=args.store,
                                         time_to_detection=False), log=lambda m: None)
        m = r.metrics
        loso = r.tables["leave_one_style_out"]["recall_at_1pct_fpr"]
        print(f"{profile:8s} roc_auc {m['roc_auc']:.4f}  pr_auc {m['pr_auc']:.4f}  recall@1% {m['recall_at_1pct_fpr']:.3f}  "
              f"LOSO recall@1% mean {loso.mean():.3f} min {loso.min():.3f}  ({time.perf_counter() - t0:.0f} s incl. embedding)")


if __name__ == "__main__":
    main()

"""Detection quality on the simulator at hydra mixing ratios 0%, 30% and 60%.

For each ratio: simulate, train in a throw-away MLflow folder, and print the hold-out table of
distillguard next to the baselines a user would otherwise reach for (volume/rate threshold,
reasoning-keyword filter, PRADA distance normality, MMD vs the organic baseline, IsolationForest
on our features), plus leave-one-style-out recall.

    python bench/detection.py --accounts 1500 --ratios 0,0.3,0.6
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.training.registry import Registry
from distillguard.training.train_job import TrainConfig, run_training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratios", default="0,0.3,0.6")
    ap.add_argument("--store", type=Path, default=Path("runs/embeddings"))
    args = ap.parse_args()
    pd.set_option("display.width", 160)
    for ratio in (float(r) for r in args.ratios.split(",")):
        t0 = time.perf_counter()
        sim = simulate(SimulatorConfig(accounts=args.accounts, seed=args.seed, hydra_mix=(ratio, ratio)))
        with tempfile.TemporaryDirectory() as tmp:
            result = run_training(sim.events, sim.labels, Registry(Path(tmp) / "mlruns"),
                                  TrainConfig(seed=args.seed, store_dir=args.store, time_to_detection=False),
                                  log=lambda m: None)
        print(f"\n=== hydra mix {ratio:.0%}: {args.accounts} accounts, {len(sim.events):,} events "
              f"({time.perf_counter() - t0:.0f} s) ===")
        print(result.tables["comparison"].round(3).to_string())
        print("leave-one-style-out:")
        print(result.tables["leave_one_style_out"].round(3).to_string())


if __name__ == "__main__":
    main()

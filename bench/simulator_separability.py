"""How separable are the simulator's classes by one trivial per-account feature?

Prints the ROC-AUC (oriented so that 0.5 is chance and 1.0 perfect) of single features a lazy
detector would use: volume, prompt length, the share of prompts containing one keyword, and the
share sent through an SDK user agent. A simulator where any of these is near 1.0 is too easy.

    python bench/simulator_separability.py --accounts 5000 --seed 0
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from sklearn.metrics import roc_auc_score

from distillguard.data.simulator import simulate
from distillguard.data.simulator_config import SimulatorConfig

KEYWORDS = ("step by step", "reasoning", "explain", "score", "answer", "json", "safe", "think")


def trivial_feature_table(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per account with the trivial features and its label."""
    e = events.assign(length=events["prompt"].str.len(), low=events["prompt"].str.lower())
    g = e.groupby("account_id")
    table = pd.DataFrame({
        "volume": g.size(),
        "median_prompt_chars": g["length"].median(),
        "mean_prompt_chars": g["length"].mean(),
        "sdk_user_agent_share": g["user_agent"].apply(lambda s: (~s.fillna("").str.startswith("Mozilla")).mean()),
    })
    for kw in KEYWORDS:
        table[f"kw:{kw}"] = g["low"].apply(lambda s, kw=kw: s.str.contains(kw, regex=False).mean())
    return table.join(labels.set_index("account_id")[["label", "campaign"]])


def single_feature_aucs(table: pd.DataFrame) -> pd.DataFrame:
    """Per trivial feature: ROC-AUC in its better orientation and recall at 1% organic FPR."""
    from distillguard.training.metrics import recall_at_fpr

    y = table["label"].to_numpy()
    out = {}
    for col in table.columns.drop(["label", "campaign"]):
        x = table[col].to_numpy(dtype=float)
        auc = roc_auc_score(y, x)
        oriented = x if auc >= 0.5 else -x
        out[col] = {"roc_auc": max(auc, 1 - auc), "recall_at_1pct_fpr": recall_at_fpr(y, oriented, 0.01)}
    return pd.DataFrame(out).T.sort_values("roc_auc", ascending=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    sim = simulate(SimulatorConfig(accounts=args.accounts, seed=args.seed))
    table = trivial_feature_table(sim.events, sim.labels)
    print(f"{len(sim.events):,} events, {args.accounts:,} accounts, simulated+tabled in {time.perf_counter() - t0:.1f} s")
    print("single trivial features (ROC-AUC in the better orientation, 0.5 = chance; recall at 1% organic FPR):")
    for name, row in single_feature_aucs(table).iterrows():
        print(f"  {name:28s} auc {row['roc_auc']:.3f}  recall@1%FPR {row['recall_at_1pct_fpr']:.3f}")
    print("\nmedian of each trivial feature by class:")
    print(table.groupby("label")[["volume", "median_prompt_chars", "kw:step by step"]].median().to_string())


if __name__ == "__main__":
    main()

"""Pictures saved beside each training run: PR curve, score histograms, feature importance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def pr_curve(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label=name, lw=2 if name.startswith("distillguard") else 1)
    ax.set(xlabel="recall (harvesting accounts)", ylabel="precision", title="Hold-out precision / recall")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_histograms(scores: np.ndarray, groups: pd.Series, thresholds: tuple[float, float], path: Path) -> Path:
    names = sorted(groups.unique())
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    data = [scores[(groups == n).to_numpy()] for n in names]
    ax.boxplot(data, orientation="horizontal", widths=0.6)
    for i, d in enumerate(data, start=1):
        ax.scatter(d, np.full(len(d), i) + np.random.default_rng(i).uniform(-0.2, 0.2, len(d)), s=4, alpha=0.5)
    ax.set_yticks(range(1, len(names) + 1), names, fontsize=7)
    for t, style in zip(thresholds, ("--", ":")):
        ax.axvline(t, color="red", ls=style, lw=1)
    ax.set(xlabel="calibrated score (red: review and block thresholds)", title="Hold-out scores by campaign / archetype")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def feature_importance(importance: pd.Series, path: Path, top: int = 25) -> Path:
    imp = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(imp) + 1))
    ax.barh(imp.index, imp.to_numpy())
    ax.set(xlabel="total gain", title="Feature importance")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def holdout_summary(report: dict[str, dict], path: Path) -> Path:
    """Side by side per hold-out: recall at 1% and 0.1% organic FPR, and the organic accounts the
    model's own thresholds flag and block (the operator's figures, on a log scale)."""
    names = [n for n in ("out_of_time", "adaptive", "cold_start", "in_period") if n in report]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(names))
    for i, (key, label) in enumerate((("recall_at_1pct_fpr", "recall @1% FPR"), ("recall_at_0.1pct_fpr", "recall @0.1% FPR"))):
        vals = [report[n].get(key, np.nan) for n in names]
        left.bar(x + (i - 0.5) * 0.38, np.nan_to_num(vals), 0.38, label=label)
    left.set_xticks(x, [n.replace("_", "-") for n in names], fontsize=8)
    left.set(ylim=(0, 1.05), title="Harvesting accounts caught")
    left.legend(fontsize=7)
    for i, (key, label) in enumerate((("organic_flagged", "organic flagged"), ("organic_blocked", "organic blocked"))):
        vals = np.array([report[n].get(key, np.nan) for n in names], dtype=float)
        right.bar(x + (i - 0.5) * 0.38, np.clip(np.nan_to_num(vals), 1e-4, None), 0.38, label=label)
    right.axhline(0.01, color="orange", ls="--", lw=1)
    right.axhline(0.001, color="red", ls=":", lw=1)
    right.set_yscale("log")
    right.set_xticks(x, [n.replace("_", "-") for n in names], fontsize=8)
    right.set(title="Organic accounts (targets: 1% flagged, 0.1% blocked)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def drift_picture(table: pd.DataFrame, summary: dict[str, float], path: Path) -> Path:
    """Per reference cluster: its share now against its share of the reference, and how far this
    period's prompts in it sit from the reference (the dashed line: the reference's own median)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(table))
    left.bar(x - 0.2, table["reference_share"], 0.4, label="reference")
    left.bar(x + 0.2, table["now_share"], 0.4, label="now")
    left.set(xlabel="topic cluster of the reference", ylabel="share of organic prompts",
             title=f"Topic mix (JS divergence {summary['cluster_js_divergence_bits']:.3f} bits)")
    left.legend(fontsize=7)
    right.bar(x, table["knn_distance_now"].fillna(0))
    right.axhline(summary["knn_distance_median_reference"], color="red", ls="--", lw=1)
    right.set(xlabel="topic cluster of the reference", ylabel="median distance to reference",
              title=f"Distance to the reference (x{summary['knn_distance_ratio']:.2f} its own)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""How far a period's organic traffic has moved from the organic reference a model was fitted on:
per topic cluster of the reference, its share of the reference against its share now and how far
this period's prompts in it sit from the reference (nearest-neighbour distance, against the
reference's own organic-to-organic distance). Pure: a fitted baseline and vectors in, a table out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillguard.features.baseline import OrganicBaseline

KNN_K = 10


def drift_report(baseline: OrganicBaseline, vectors: np.ndarray, *, max_rows: int = 50_000,
                 seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """(per-cluster table, summary) for organic prompt `vectors` of a later period.

    Table, one row per reference cluster: `reference_share`, `now_share`, `share_ratio`, `prompts_now`,
    `knn_distance_now` (median distance of this period's prompts in the cluster to their 10 nearest
    reference prompts). Summary: the Jensen-Shannon divergence (bits) of the two cluster distributions,
    the median kNN distance now and in the reference, their ratio, and the share of this period's
    prompts farther from the reference than the reference's own 90th percentile."""
    if len(vectors) == 0:
        raise ValueError("no organic prompts to measure drift on")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), size=min(len(vectors), max_rows), replace=False))
    X = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    clusters = baseline.assign_clusters(X)
    k = len(baseline.cluster_distribution_)
    now = np.bincount(clusters, minlength=k) / len(X)
    dist, _ = baseline.knn(X, k=KNN_K)
    per_prompt = dist.mean(axis=1)
    frame = pd.DataFrame({"cluster": clusters, "d": per_prompt})
    table = pd.DataFrame({"reference_share": baseline.cluster_distribution_, "now_share": now})
    table["share_ratio"] = table["now_share"] / table["reference_share"]
    table["prompts_now"] = np.bincount(clusters, minlength=k)
    table["knn_distance_now"] = frame.groupby("cluster")["d"].median().reindex(range(k)).to_numpy()
    ref = baseline.reference_knn_distance_
    m = 0.5 * (now + baseline.cluster_distribution_)
    with np.errstate(divide="ignore", invalid="ignore"):
        js = 0.5 * (np.where(now > 0, now * np.log2(now / m), 0).sum()
                    + np.where(baseline.cluster_distribution_ > 0,
                               baseline.cluster_distribution_ * np.log2(baseline.cluster_distribution_ / m), 0).sum())
    ref_median = ref.get(0.5, float("nan"))
    summary = {"prompts": float(len(X)), "cluster_js_divergence_bits": float(js),
               "knn_distance_median_now": float(np.median(per_prompt)), "knn_distance_median_reference": ref_median,
               "knn_distance_ratio": float(np.median(per_prompt) / ref_median) if ref_median else float("nan"),
               "share_beyond_reference_p90": float((per_prompt > ref.get(0.9, np.inf)).mean())}
    return table.rename_axis("cluster"), summary

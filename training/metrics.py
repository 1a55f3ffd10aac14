"""Detection metrics at the operating points an API can live with. Pure functions of labels and scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y).astype(int), np.asarray(s, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return y, s


def threshold_at_fpr(organic_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold that flags at most `fpr` of these organic scores (flag: score > t)."""
    s = np.sort(np.asarray(organic_scores, dtype=float))
    if len(s) == 0:
        raise ValueError("no organic scores to set a threshold on")
    allowed = int(np.floor(fpr * len(s)))  # organic accounts we may flag
    return float(s[len(s) - allowed - 1]) if allowed < len(s) else float(s[0]) - 1e-12


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """Share of harvesting accounts flagged when the threshold lets through at most `fpr` of organic ones."""
    y, s = _check(y, s)
    if not (y == 1).any():
        return float("nan")
    t = threshold_at_fpr(s[y == 0], fpr)
    return float((s[y == 1] > t).mean())


def headline_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC and recall at 1% and 0.1% organic false-positive rate."""
    y, s = _check(y, s)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01),
        "recall_at_0.1pct_fpr": recall_at_fpr(y, s, 0.001),
    }


def rate_by_group(flagged: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Share flagged within each group (recall per campaign, or false-positive rate per archetype)."""
    flagged = np.asarray(flagged, dtype=bool)
    groups = np.asarray(groups).astype(str)
    return {g: float(flagged[groups == g].mean()) for g in sorted(set(groups))}

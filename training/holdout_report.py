"""The figures a detector is judged by on a hold-out population, with the definitions of
`EVALUATION.md`: recall at 1% and 0.1% organic FPR; the share of organic accounts the product's own
thresholds flag (`review` or `block`) and block, overall and per archetype; recall per campaign and
style; recall by prompts per account; and for the cold-start cut, the share of organic accounts
allowed. Pure functions of labels, scores and decisions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from distillguard.training.dataset import campaign_style
from distillguard.training.metrics import headline_metrics, threshold_at_fpr

#: Prompts-per-account buckets of the recall breakdown (cumulative, as the issue tracker names them).
VOLUME_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("le5", 0, 5), ("le30", 0, 30), ("le100", 0, 100), ("gt100", 101, math.inf))
#: The figures of a section that headline it (the rest are breakdowns).
HEADLINE_FIGURES: frozenset[str] = frozenset({"roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr",
                                              "organic_flagged", "organic_blocked", "organic_allowed"})
#: Report sections and the prefix their figures carry in MLflow and in the registry.
SECTIONS: dict[str, str] = {"out_of_time": "oot", "adaptive": "adaptive", "cold_start": "cold_start",
                            "in_period": "in_period", "unseen_campaigns": "unseen"}


def _recall_above(s_pos: np.ndarray, t: float) -> float:
    return float((s_pos > t).mean()) if len(s_pos) else float("nan")


def population_figures(labels: pd.DataFrame, scores: pd.Series, decisions: pd.Series,
                       volumes: pd.Series, components: pd.Series | None = None) -> dict:
    """Figures over the accounts of `labels` (account_id, label, campaign); `scores`, `decisions`,
    `volumes` (prompts each account sent in the scored window) and optional `components` (size of its
    coordination component) are indexed by account_id and cover them all."""
    ids = labels["account_id"].to_numpy()
    y = labels["label"].to_numpy().astype(int)
    s = scores.reindex(ids).to_numpy(dtype=float)
    d = decisions.reindex(ids).to_numpy().astype(str)
    v = volumes.reindex(ids).to_numpy(dtype=float)
    camp = labels["campaign"].astype(str).to_numpy()
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} evaluated accounts have no score")
    org, pos = y == 0, y == 1
    out: dict = {"accounts": int(len(y)), "organic_accounts": int(org.sum()), "harvest_accounts": int(pos.sum())}
    out.update(headline_metrics(y, s) if org.any() and pos.any() else
               {k: float("nan") for k in ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr")})
    flagged, blocked = d != "allow", d == "block"
    out["organic_flagged"] = float(flagged[org].mean()) if org.any() else float("nan")
    out["organic_blocked"] = float(blocked[org].mean()) if org.any() else float("nan")
    out["harvest_flagged"] = float(flagged[pos].mean()) if pos.any() else float("nan")
    out["harvest_blocked"] = float(blocked[pos].mean()) if pos.any() else float("nan")

    out["by_archetype"] = {a: {"accounts": int((camp[org] == a).sum()), "flagged": float(flagged[org][camp[org] == a].mean()),
                               "blocked": float(blocked[org][camp[org] == a].mean())}
                           for a in sorted(set(camp[org]))}
    t1 = threshold_at_fpr(s[org], 0.01) if org.any() else math.inf
    styles = np.array([campaign_style(c) for c in camp])
    for key, groups in (("by_campaign", camp), ("by_style", styles)):
        out[key] = {g: {"accounts": int((groups[pos] == g).sum()),
                        "recall_at_1pct_fpr": _recall_above(s[pos][groups[pos] == g], t1),
                        "flagged": float(flagged[pos][groups[pos] == g].mean())}
                    for g in sorted(set(groups[pos]))}
    out["by_volume"] = {}
    for name, lo, hi in VOLUME_BUCKETS:
        inside = (v >= lo) & (v <= hi)
        out["by_volume"][name] = {
            "harvest_accounts": int((inside & pos).sum()),
            "recall_at_1pct_fpr": _recall_above(s[inside & pos], t1),
            "organic_accounts": int((inside & org).sum()),
            "organic_flagged": float(flagged[inside & org].mean()) if (inside & org).any() else float("nan")}
    if components is not None:
        c = components.reindex(ids).to_numpy(dtype=float)
        out["largest_component"] = float(np.nanmax(c)) if len(c) else float("nan")
        out["organic_in_component_gt5"] = float((c[org] > 5).mean()) if org.any() else float("nan")
    return out


def cold_start_figures(labels: pd.DataFrame, decisions: pd.Series) -> dict:
    """Accounts cut to their first 1-3 prompts: organic ones must pass (allowed share), and how many
    harvesters are already flagged."""
    d = decisions.reindex(labels["account_id"]).to_numpy().astype(str)
    y = labels["label"].to_numpy().astype(int)
    org, pos = y == 0, y == 1
    return {"accounts": int(len(y)), "organic_accounts": int(org.sum()), "harvest_accounts": int(pos.sum()),
            "organic_allowed": float((d[org] == "allow").mean()) if org.any() else float("nan"),
            "organic_blocked": float((d[org] == "block").mean()) if org.any() else float("nan"),
            "harvest_flagged": float((d[pos] != "allow").mean()) if pos.any() else float("nan")}


def flatten(report: dict[str, dict]) -> dict[str, float]:
    """`{"out_of_time": {"by_style": {"reasoning": {"recall_at_1pct_fpr": x}}}}` ->
    `{"oot.style.reasoning.recall_at_1pct_fpr": x}`: finite numbers only, names MLflow accepts."""
    out: dict[str, float] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                key = str(k).removeprefix("by_")
                key = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)
                walk(f"{prefix}.{key}" if prefix else key, v)
        elif isinstance(node, (int, float, np.integer, np.floating)) and not isinstance(node, bool):
            if math.isfinite(float(node)):
                out[prefix] = float(node)

    for section, figures in report.items():
        walk(SECTIONS.get(section, section), figures)
    return out


#: The columns of the family ablation table: (report section, figure).
ABLATION_FIGURES: tuple[tuple[str, str], ...] = (
    ("out_of_time", "roc_auc"), ("out_of_time", "recall_at_1pct_fpr"), ("out_of_time", "recall_at_0.1pct_fpr"),
    ("out_of_time", "organic_flagged"), ("out_of_time", "organic_blocked"), ("adaptive", "recall_at_1pct_fpr"),
    ("cold_start", "organic_allowed"))


def ablation_table(reports: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per detector (all features, content only, behaviour only), the gate's figures as columns."""
    rows = {name: {f"{SECTIONS[sec]}.{fig}": rep[sec].get(fig, float("nan")) for sec, fig in ABLATION_FIGURES}
            for name, rep in reports.items()}
    return pd.DataFrame(rows).T

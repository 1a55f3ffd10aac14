"""What `distillguard train --json` prints: the run, the version, whether it was promoted, the gate's
figures side by side and the newly labelled campaigns' recall before and after. Pure: a training
result in, a JSON-ready dict out (non-finite numbers become null)."""

from __future__ import annotations

import math

import numpy as np

from distillguard.training.promotion import GATE_FIGURES

#: `train`'s exit codes.
EXIT_PROMOTED = 0
EXIT_NOT_PROMOTED = 3
EXIT_ERROR = 1


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, np.integer):
        return value.item()
    if isinstance(value, int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


def gate_figures(metrics: dict[str, float], champion: dict[str, float] | None,
                 new_campaigns: dict[str, dict] | None = None) -> dict[str, dict]:
    """The figures the gate read, candidate beside champion, and each newly labelled campaign's recall
    at 1% FPR (part of the out-of-time recall the gate compares)."""
    out = {k: {"candidate": metrics.get(k), "champion": (champion or {}).get(k)} for k in GATE_FIGURES}
    for name, row in (new_campaigns or {}).items():
        out[f"new_campaigns.{name}.recall_at_1pct_fpr"] = {"candidate": row["recall_at_1pct_fpr"],
                                                           "champion": row["champion_recall_at_1pct_fpr"]}
    return out


def train_summary(result) -> dict:
    """The JSON document of a `TrainResult`."""
    holdout = result.holdout
    return _clean({
        "run_id": result.run_id,
        "model_version": result.version,
        "promoted": bool(result.promoted),
        "exit_code": EXIT_PROMOTED if result.promoted else EXIT_NOT_PROMOTED,
        "verdict": result.verdict,
        "champion_before": result.champion_version,
        "gate": {"figures": gate_figures(result.metrics, result.champion_metrics, result.report.get("new_campaigns")),
                 "misses": list(result.gate.misses)},
        "new_campaigns": result.report.get("new_campaigns", {}),
        "holdout": {"kind": holdout.kind, "cutoff": str(holdout.cutoff) if holdout.cutoff is not None else None,
                    "note": holdout.note, "evaluated_accounts": len(holdout.evaluated),
                    "extensions": holdout.info.get("extensions", [])},
        "seconds": round(result.seconds, 1),
    })

"""Everything a training run leaves in MLflow: parameters, the flat hold-out figures, the report and
tables, pictures beside the run, and the registered model version (tagged with its headline figures)."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from distillguard.training import plots
from distillguard.training.bundle import DetectorBundle
from distillguard.training.holdout_evaluation import HoldoutEvaluation
from distillguard.training.holdouts import Holdout
from distillguard.training.registry import MODEL_NAME, Registry

if TYPE_CHECKING:
    from distillguard.training.train_job import TrainConfig

#: Figures copied onto the registered version as `holdout.<name>` tags (what `distillguard models` lists).
HEADLINE: tuple[str, ...] = (
    "oot.roc_auc", "oot.pr_auc", "oot.recall_at_1pct_fpr", "oot.recall_at_0.1pct_fpr", "oot.organic_flagged",
    "oot.organic_blocked", "adaptive.recall_at_1pct_fpr", "adaptive.organic_blocked", "cold_start.organic_allowed",
    "in_period.recall_at_1pct_fpr", "ttd_median_prompts",
)


@contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """MLflow's advice that does not apply here, kept out of every training log: an input example (the
    signature is declared; an example would be scored with the embedder at logging time) and the
    CloudPickle notice (the pickled object is a class of this package, not user code)."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            yield
    finally:
        logger.setLevel(level)


def log_and_register(registry: Registry, bundle: DetectorBundle, config: TrainConfig, holdout: Holdout,
                     report: dict, metrics: dict[str, float], tables: dict[str, pd.DataFrame],
                     evaluation: HoldoutEvaluation, baselines: dict[str, np.ndarray],
                     champion_metrics: dict[str, float] | None) -> tuple[str, str]:
    """Log the run and register the bundle as a new version; returns (version, run id)."""
    import mlflow

    from distillguard.training.pyfunc_model import DetectorPyfunc, model_signature

    oot = evaluation.populations["out_of_time"]
    hold = holdout.evaluated.set_index("account_id")
    y = hold["label"].to_numpy()
    s = oot.scores.reindex(hold.index).to_numpy()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        out = Path(tmp)
        mlflow.log_params({
            "seed": config.seed, "profile": config.profile,
            "holdout_campaigns": ",".join(config.holdout_campaigns) or "-",
            "holdout_kind": holdout.kind, "holdout_cutoff": str(holdout.cutoff) if holdout.cutoff is not None else "-",
            "holdout_days": config.holdout.holdout_days,
            "lgb_params": json.dumps(config.lgb_params, sort_keys=True),
            "feature_config": json.dumps(bundle.state.config.to_dict(), sort_keys=True),
            "embedder_fingerprint": bundle.state.identity.fingerprint,
            "baseline_index": bundle.state.baseline.index_kind_})
        mlflow.set_tag("holdout_note", holdout.note[:4000])
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        if champion_metrics:
            mlflow.log_metrics({f"champion.{k}": v for k, v in champion_metrics.items() if np.isfinite(v)})
        for name, row in tables["comparison"].iterrows():
            key = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            mlflow.log_metric(f"baseline.{key}.recall_at_1pct_fpr", float(row["recall_at_1pct_fpr"]))
        for name, t in tables.items():
            t.to_csv(out / f"{name}.csv")
        (out / "holdout_report.json").write_text(json.dumps({"holdout": {"kind": holdout.kind, "note": holdout.note,
                                                                         "cutoff": str(holdout.cutoff)},
                                                             **report}, indent=2, default=float))
        plots.pr_curve(y, {"distillguard (LightGBM)": s, **baselines}, out / "pr_curve.png")
        t = bundle.detector.thresholds
        plots.score_histograms(s, hold["campaign"], (t.review, t.block), out / "score_histograms.png")
        plots.feature_importance(bundle.detector.importance(), out / "feature_importance.png")
        plots.holdout_summary(report, out / "holdout_summary.png")
        mlflow.log_artifacts(str(out), artifact_path="evaluation")
        bundle.save(out / "bundle")
        with _quiet_model_logging():
            info = mlflow.pyfunc.log_model(name="model", python_model=DetectorPyfunc(),
                                           artifacts={"bundle": str(out / "bundle")}, signature=model_signature(),
                                           registered_model_name=MODEL_NAME, pip_requirements=["distillguard"])
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    for k in HEADLINE:
        if k in metrics and np.isfinite(metrics[k]):
            registry.client.set_model_version_tag(MODEL_NAME, version, f"holdout.{k}", f"{metrics[k]:.6f}")
    registry.client.set_model_version_tag(MODEL_NAME, version, "holdout_kind", holdout.kind)
    return version, run_id

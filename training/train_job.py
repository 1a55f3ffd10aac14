"""The training job: split, fit the baseline, build features, train, evaluate, log to MLflow,
register, and promote only a model that beats the champion on the frozen hold-out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.features.account_features import FeatureConfig
from distillguard.features.pipeline import EmbeddingContext, build_features, fit_feature_state
from distillguard.training import plots
from distillguard.training.bundle import DetectorBundle, score_events
from distillguard.training.dataset import TrainingDataError, check_labels, stratified_split
from distillguard.training.evaluation import (
    baseline_scores, comparison_table, leave_one_style_out, operating_point_report, time_to_detection,
)
from distillguard.training.metrics import headline_metrics
from distillguard.training.model import Detector, train_booster
from distillguard.training.registry import CHAMPION, Registry

PRIMARY = "recall_at_1pct_fpr"
TIEBREAK = "pr_auc"


@dataclass
class TrainConfig:
    seed: int = 0
    profile: str = "static"
    holdout_campaigns: tuple[str, ...] = ()
    lgb_params: dict = field(default_factory=dict)
    time_to_detection: bool = True
    store_dir: Path = Path("runs/embeddings")


@dataclass
class TrainResult:
    version: str
    promoted: bool
    verdict: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    tables: dict[str, pd.DataFrame]
    run_id: str
    seconds: float


def _frozen_holdout(root: Path, events: pd.DataFrame, labels: pd.DataFrame, seed: int,
                    exclude: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The hold-out every candidate and champion is compared on: made from the first training data
    and kept under `<root>/holdout/`, never trained on afterwards."""
    folder = root / "holdout"
    if (folder / "labels.csv").exists():
        return pd.read_parquet(folder / "events.parquet"), pd.read_csv(folder / "labels.csv", dtype={"account_id": str}), False
    split = stratified_split(labels[~labels["account_id"].isin(exclude)], seed=seed)
    hold_labels = labels[labels["account_id"].isin(split.holdout)].reset_index(drop=True)
    hold_events = events[events["account_id"].isin(split.holdout)].reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    hold_events.to_parquet(folder / "events.parquet")
    hold_labels.to_csv(folder / "labels.csv", index=False)
    return hold_events, hold_labels, True


def _beats(candidate: dict[str, float], champion: dict[str, float]) -> bool:
    c, h = candidate[PRIMARY], champion[PRIMARY]
    if not np.isclose(c, h):
        return c > h
    return candidate[TIEBREAK] > champion[TIEBREAK] + 1e-9


def _holdout_metrics(bundle: DetectorBundle, hold_events: pd.DataFrame, hold_labels: pd.DataFrame,
                     ctx: EmbeddingContext) -> dict[str, float]:
    feats = build_features(hold_events, bundle.state, ctx)
    y = hold_labels.set_index("account_id").loc[feats.index, "label"].to_numpy()
    return headline_metrics(y, bundle.detector.score(feats))


def run_training(events: pd.DataFrame, labels: pd.DataFrame, registry: Registry, config: TrainConfig,
                 *, log: Callable[[str], None] = print) -> TrainResult:
    t0 = time.perf_counter()
    labels = check_labels(events, labels)
    held_campaigns = set(config.holdout_campaigns)
    unknown = held_campaigns - set(labels["campaign"])
    if unknown:
        raise TrainingDataError(f"--holdout-campaigns names campaigns not in the labels: {sorted(unknown)}")
    unseen_ids = set(labels.loc[labels["campaign"].isin(held_campaigns), "account_id"])

    hold_events, hold_labels, created = _frozen_holdout(registry.root, events, labels, config.seed, unseen_ids)
    log(f"hold-out: {len(hold_labels):,} accounts ({'created and frozen' if created else 'frozen earlier'})")
    pool = labels[~labels["account_id"].isin(set(hold_labels["account_id"]) | unseen_ids)]
    split = stratified_split(pool, seed=config.seed, frozen_holdout=set())
    lab = pool.set_index("account_id")
    if set(lab.loc[split.train, "label"]) != {0, 1}:
        raise TrainingDataError("the training split needs both classes; add labelled accounts")

    ctx = EmbeddingContext.open(config.profile, config.store_dir)
    organic_train = lab.loc[split.train].query("label == 0").index
    log(f"fitting the organic baseline on {len(organic_train):,} organic training accounts")
    state = fit_feature_state(events[events["account_id"].isin(organic_train)], ctx, config=FeatureConfig(),
                              show_progress=True)

    log("building features (train + validation)")
    dev_events = events[events["account_id"].isin(set(split.train) | set(split.validation))]
    X = build_features(dev_events, state, ctx, show_progress=True)
    log("building features (hold-out)")
    X_hold = build_features(hold_events, state, ctx, show_progress=True)
    hold_lab = hold_labels.set_index("account_id").loc[X_hold.index]
    y_hold = hold_lab["label"].to_numpy()

    booster = train_booster(X.loc[split.train], lab.loc[split.train, "label"].to_numpy(), seed=config.seed,
                            params=config.lgb_params)
    detector = Detector(booster, list(X.columns))
    detector.calibrate(X.loc[split.validation], lab.loc[split.validation, "label"].to_numpy())
    detector.set_thresholds(X.loc[lab.loc[split.validation].query("label == 0").index])

    s_hold = detector.score(X_hold)
    metrics = headline_metrics(y_hold, s_hold)
    op = operating_point_report(hold_lab.reset_index(), s_hold, detector)
    base = baseline_scores(X.loc[split.train], lab.loc[split.train, "label"].to_numpy(), X_hold, hold_events,
                           config.seed)
    table = comparison_table(y_hold, {"distillguard (LightGBM)": s_hold, **base})
    log("leave-one-style-out")
    all_X = pd.concat([X, X_hold])
    all_lab = pd.concat([pool, hold_labels]).drop_duplicates("account_id")
    loso = leave_one_style_out(all_X, all_lab, split.train, list(hold_lab.query("label == 0").index),
                               seed=config.seed, params=config.lgb_params)
    tables = {"comparison": table, "leave_one_style_out": loso}

    unseen_metrics: dict[str, float] = {}
    if unseen_ids:
        unseen_events = pd.concat([events[events["account_id"].isin(unseen_ids)],
                                   hold_events[hold_events["account_id"].isin(hold_lab.query("label == 0").index)]])
        X_un = build_features(unseen_events, state, ctx)
        s_un = detector.score(X_un)
        y_un = np.where(X_un.index.isin(list(unseen_ids)), 1, 0)
        unseen_metrics = {f"unseen_campaigns.{k}": v for k, v in headline_metrics(y_un, s_un).items()}
        metrics.update(unseen_metrics)

    if config.time_to_detection:
        log("time to detection (scoring growing prefixes of each hold-out harvesting stream)")
        harvest_ids = list(hold_lab.query("label == 1").index)

        def score_prefix(prefix: pd.DataFrame) -> pd.Series:
            f = build_features(prefix, state, ctx)
            return pd.Series(detector.score(f), index=f.index)

        ttd = time_to_detection(hold_events, harvest_ids, score_prefix, detector.thresholds.review)
        tables["time_to_detection"] = ttd
        crossed = ttd["prompts_to_detection"].dropna()
        metrics["ttd_detected_share"] = float(len(crossed) / max(len(ttd), 1))
        metrics["ttd_median_prompts"] = float(crossed.median()) if len(crossed) else float("nan")
        metrics["ttd_p90_prompts"] = float(crossed.quantile(0.9)) if len(crossed) else float("nan")

    bundle = DetectorBundle(detector, state, {"seed": config.seed, "trained_accounts": len(split.train),
                                              "holdout_metrics": metrics})
    verdict, promoted, champion_metrics = _register_and_promote(
        registry, bundle, metrics, op, tables, config, hold_events, hold_labels, ctx,
        y_hold, s_hold, base, hold_lab, X_hold, log)
    return TrainResult(verdict["version"], promoted, verdict["text"], metrics, champion_metrics, tables,
                       verdict["run_id"], time.perf_counter() - t0)


def _register_and_promote(registry, bundle, metrics, op, tables, config, hold_events, hold_labels, ctx,
                          y_hold, s_hold, base, hold_lab, X_hold, log):
    import tempfile

    import mlflow

    from distillguard.training.pyfunc_model import DetectorPyfunc

    champion_version = registry.alias_version(CHAMPION)
    champion_metrics = None
    if champion_version is not None:
        log(f"scoring champion v{champion_version} on the frozen hold-out")
        champ = load_bundle(registry, f"models:/distillguard/{champion_version}")
        champion_metrics = _holdout_metrics(champ, hold_events, hold_labels, champ.open_embeddings(config.store_dir))

    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        out = Path(tmp)
        mlflow.log_params({"seed": config.seed, "profile": config.profile,
                           "holdout_campaigns": ",".join(config.holdout_campaigns) or "-",
                           "lgb_params": json.dumps(config.lgb_params, sort_keys=True),
                           "feature_config": json.dumps(bundle.state.config.to_dict(), sort_keys=True),
                           "embedder_fingerprint": bundle.state.identity.fingerprint,
                           "baseline_index": bundle.state.baseline.index_kind_})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({f"recall.{k}": v for k, v in op["recall_by_campaign"].items()})
        mlflow.log_metrics({f"fpr.{k}": v for k, v in op["fpr_by_archetype"].items()})
        for style, row in tables["leave_one_style_out"].iterrows():
            mlflow.log_metric(f"loso.{style}.recall_at_1pct_fpr", float(row["recall_at_1pct_fpr"]))
        for name, row in tables["comparison"].iterrows():
            key = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            mlflow.log_metric(f"baseline.{key}.recall_at_1pct_fpr", float(row["recall_at_1pct_fpr"]))
        for name, t in tables.items():
            t.to_csv(out / f"{name}.csv")
        (out / "operating_point.json").write_text(json.dumps(op, indent=2))
        plots.pr_curve(y_hold, {"distillguard (LightGBM)": s_hold, **base}, out / "pr_curve.png")
        plots.score_histograms(s_hold, hold_lab["campaign"], (bundle.detector.thresholds.review,
                                                               bundle.detector.thresholds.block),
                               out / "score_histograms.png")
        plots.feature_importance(bundle.detector.importance(), out / "feature_importance.png")
        mlflow.log_artifacts(str(out), artifact_path="evaluation")
        bundle.save(out / "bundle")
        info = mlflow.pyfunc.log_model(name="model", python_model=DetectorPyfunc(),
                                       artifacts={"bundle": str(out / "bundle")},
                                       registered_model_name="distillguard", pip_requirements=["distillguard"])
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    for k, v in metrics.items():
        if np.isfinite(v):
            registry.client.set_model_version_tag("distillguard", version, f"holdout.{k}", f"{v:.6f}")
    registry.set_challenger(version)
    if champion_metrics is None:
        registry.set_champion(version, reason="first model")
        text = f"v{version} registered and promoted to champion (there was no champion)"
        promoted = True
    elif _beats(metrics, champion_metrics):
        registry.set_champion(version, reason=f"beat v{champion_version} on the frozen hold-out")
        text = (f"v{version} beats champion v{champion_version} on the frozen hold-out "
                f"({PRIMARY} {metrics[PRIMARY]:.3f} vs {champion_metrics[PRIMARY]:.3f}): promoted to champion")
        promoted = True
    else:
        text = (f"v{version} registered as challenger, NOT promoted: it does not beat champion v{champion_version} "
                f"({PRIMARY} {metrics[PRIMARY]:.3f} vs {champion_metrics[PRIMARY]:.3f}, "
                f"{TIEBREAK} {metrics[TIEBREAK]:.3f} vs {champion_metrics[TIEBREAK]:.3f})")
        promoted = False
    return {"version": version, "text": text, "run_id": run_id}, promoted, champion_metrics


def load_bundle(registry: Registry, model_uri: str) -> DetectorBundle:
    """The bundle a `models:/distillguard@alias` or `/VERSION` URI names, loaded from the local registry."""
    import mlflow.pyfunc

    version = registry.resolve(model_uri)
    model = mlflow.pyfunc.load_model(f"models:/distillguard/{version}")
    bundle = model.unwrap_python_model().bundle
    bundle.info["version"] = version
    return bundle


def score_with(bundle: DetectorBundle, events: pd.DataFrame, store_dir: Path) -> pd.DataFrame:
    """Score `events` with `bundle`, embedding through the store at `store_dir`."""
    return score_events(events, bundle, bundle.open_embeddings(store_dir), show_progress=True)


__all__ = ["TrainConfig", "TrainResult", "run_training", "load_bundle", "score_with"]

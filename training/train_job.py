"""The training job: freeze the out-of-time hold-out, fit the baseline and LightGBM on the earlier
period only, evaluate the candidate and the champion on the same hold-outs (out of time as a whole
population, its adaptive copy, its cold-start cut; an in-period random split as a secondary
figure), log everything to MLflow, register, and promote only through the gate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.features.account_features import FeatureConfig
from distillguard.features.pipeline import EmbeddingContext, build_features, fit_feature_state
from distillguard.training.bundle import DetectorBundle, score_events
from distillguard.training.dataset import TrainingDataError, check_labels, stratified_split
from distillguard.training.evaluation import baseline_scores, comparison_table, leave_one_style_out, time_to_detection
from distillguard.training.holdout_evaluation import HoldoutEvaluation, evaluate_on_holdout
from distillguard.training.holdout_report import flatten, population_figures
from distillguard.training.holdout_store import load_or_freeze
from distillguard.training.holdouts import SINGLE_PERIOD, Holdout, HoldoutRules, training_events
from distillguard.training.model import Detector, train_booster
from distillguard.training.promotion import GateDecision, judge
from distillguard.training.registry import CHAMPION, Registry


@dataclass
class TrainConfig:
    seed: int = 0
    profile: str = "static"
    holdout_campaigns: tuple[str, ...] = ()
    lgb_params: dict = field(default_factory=dict)
    time_to_detection: bool = True
    store_dir: Path = Path("runs/embeddings")
    holdout: HoldoutRules = field(default_factory=HoldoutRules)


@dataclass
class TrainResult:
    version: str
    promoted: bool
    verdict: str
    metrics: dict[str, float]  # flat: oot.*, adaptive.*, cold_start.*, in_period.*, ttd_*
    report: dict[str, dict]  # the same figures, nested by section
    champion_metrics: dict[str, float] | None
    tables: dict[str, pd.DataFrame]
    run_id: str
    seconds: float
    holdout: Holdout
    gate: GateDecision


def _in_period_figures(detector: Detector, X: pd.DataFrame, labels: pd.DataFrame, test_ids: list[str],
                       volumes: pd.Series) -> dict:
    """The secondary figure: a random in-period split, scored within the earlier population."""
    lab = labels[labels["account_id"].isin(set(test_ids))]
    s = pd.Series(detector.score(X.loc[lab["account_id"]]), index=lab["account_id"].to_numpy())
    d = pd.Series(detector.thresholds.decide(s.to_numpy()), index=s.index)
    return population_figures(lab, s, d, volumes)


def _score_champion(registry: Registry, holdout: Holdout, config: TrainConfig,
                    log: Callable[[str], None]) -> tuple[str | None, HoldoutEvaluation | None, str | None]:
    """(champion version, its evaluation on the same hold-outs, why it could not be scored)."""
    version = registry.alias_version(CHAMPION)
    if version is None:
        return None, None, None
    log(f"scoring champion v{version} on the same hold-outs")
    try:
        champ = load_bundle(registry, f"models:/distillguard/{version}")
        return version, evaluate_on_holdout(champ, holdout, champ.open_embeddings(config.store_dir),
                                            seed=config.seed, log=log), None
    except (KeyError, ValueError, OSError) as exc:  # made by a version whose features no longer exist
        problem = f"champion v{version} cannot be scored by this version ({type(exc).__name__}: {exc})"
        log(problem)
        return version, None, problem


def run_training(events: pd.DataFrame, labels: pd.DataFrame, registry: Registry, config: TrainConfig,
                 *, log: Callable[[str], None] = print) -> TrainResult:
    t0 = time.perf_counter()
    labels = check_labels(events, labels)
    held_campaigns = set(config.holdout_campaigns)
    unknown = held_campaigns - set(labels["campaign"])
    if unknown:
        raise TrainingDataError(f"--holdout-campaigns names campaigns not in the labels: {sorted(unknown)}")
    unseen_ids = set(labels.loc[labels["campaign"].isin(held_campaigns), "account_id"])

    holdout, created = load_or_freeze(registry.root, events, labels[~labels["account_id"].isin(unseen_ids)],
                                      config.holdout, seed=config.seed, log=log)
    log(("hold-out created and frozen: " if created else "hold-out frozen earlier: ") + holdout.note)
    if holdout.kind == SINGLE_PERIOD:
        log("WARNING " + "!" * 60)
        log("WARNING: " + holdout.note)
        log("WARNING " + "!" * 60)

    earlier = training_events(events, holdout)
    if earlier.empty:
        raise TrainingDataError(f"no training data outside the frozen hold-out (it starts {holdout.cutoff}); the "
                                "hold-out must stay later than training: give earlier traffic or a new --mlruns")
    pool = labels[labels["account_id"].isin(set(earlier["account_id"])) & ~labels["account_id"].isin(unseen_ids)]
    if set(pool["label"]) != {0, 1}:
        raise TrainingDataError("the training period needs both classes; add labelled accounts")
    split = stratified_split(pool, seed=config.seed)
    lab = pool.set_index("account_id")
    if set(lab.loc[split.train, "label"]) != {0, 1}:
        raise TrainingDataError("the training split needs both classes; add labelled accounts")

    ctx = EmbeddingContext.open(config.profile, config.store_dir)
    organic_train = lab.loc[split.train].query("label == 0").index
    log(f"fitting the organic baseline on {len(organic_train):,} organic training accounts (training period only)")
    state = fit_feature_state(earlier[earlier["account_id"].isin(organic_train)], ctx, config=FeatureConfig(),
                              show_progress=True)
    log(f"building features of the training period as one population ({earlier['account_id'].nunique():,} accounts)")
    X = build_features(earlier, state, ctx, show_progress=True)
    booster = train_booster(X.loc[split.train], lab.loc[split.train, "label"].to_numpy(), seed=config.seed,
                            params=config.lgb_params)
    detector = Detector(booster, list(X.columns))
    detector.calibrate(X.loc[split.validation], lab.loc[split.validation, "label"].to_numpy())
    detector.set_thresholds(X.loc[lab.loc[split.validation].query("label == 0").index])
    bundle = DetectorBundle(detector, state, {"seed": config.seed, "trained_accounts": len(split.train),
                                              "holdout_kind": holdout.kind})

    evaluation = evaluate_on_holdout(bundle, holdout, ctx, seed=config.seed, log=log)
    report = dict(evaluation.report)
    volumes = earlier.groupby("account_id").size()
    report["in_period"] = _in_period_figures(detector, X, pool, split.holdout, volumes)
    if unseen_ids:
        unseen = labels[labels["account_id"].isin(unseen_ids)]
        test_org = pool[pool["account_id"].isin(split.holdout) & (pool["label"] == 0)]
        scored = pd.concat([unseen, test_org])
        s = pd.Series(detector.score(X.loc[scored["account_id"]]), index=scored["account_id"].to_numpy())
        report["unseen_campaigns"] = population_figures(
            scored, s, pd.Series(detector.thresholds.decide(s.to_numpy()), index=s.index), volumes)

    oot = evaluation.populations["out_of_time"]
    hold_lab = holdout.evaluated.set_index("account_id")
    y_hold = hold_lab["label"].to_numpy()
    s_hold = oot.scores.reindex(hold_lab.index).to_numpy()
    X_hold = oot.features.loc[hold_lab.index]
    base = baseline_scores(X.loc[split.train], lab.loc[split.train, "label"].to_numpy(), X_hold,
                           oot.events[oot.events["account_id"].isin(hold_lab.index)], config.seed)
    tables = {"comparison": comparison_table(y_hold, {"distillguard (LightGBM)": s_hold, **base})}
    log("leave-one-style-out (trained on the training period, tested out of time)")
    all_X = pd.concat([X.loc[pool["account_id"]], X_hold])
    all_lab = pd.concat([pool, holdout.evaluated]).drop_duplicates("account_id")
    tables["leave_one_style_out"] = leave_one_style_out(all_X, all_lab, split.train,
                                                        list(hold_lab.query("label == 0").index),
                                                        seed=config.seed, params=config.lgb_params)
    metrics = flatten(report)
    if config.time_to_detection:
        log("time to detection (growing prefixes of each out-of-time harvesting stream, in its population)")
        harvest_ids = list(hold_lab.query("label == 1").index)

        def score_prefix(prefix: pd.DataFrame) -> pd.Series:
            f = build_features(prefix, state, ctx)
            return pd.Series(detector.score(f), index=f.index)

        ttd = time_to_detection(holdout.population, harvest_ids, score_prefix, detector.thresholds.review)
        tables["time_to_detection"] = ttd
        crossed = ttd["prompts_to_detection"].dropna()
        metrics["ttd_detected_share"] = float(len(crossed) / max(len(ttd), 1))
        metrics["ttd_median_prompts"] = float(crossed.median()) if len(crossed) else float("nan")
        metrics["ttd_p90_prompts"] = float(crossed.quantile(0.9)) if len(crossed) else float("nan")
    bundle.info["holdout_metrics"] = {k: v for k, v in metrics.items() if np.isfinite(v)}

    champion_version, champion_eval, champion_problem = _score_champion(registry, holdout, config, log)
    champion_metrics = champion_eval.metrics if champion_eval is not None else None

    from distillguard.training.run_artifacts import log_and_register

    version, run_id = log_and_register(registry, bundle, config, holdout, report, metrics, tables, evaluation, base,
                                       champion_metrics)
    gate = judge(metrics, champion_metrics, version=version, champion_version=champion_version,
                 champion_problem=champion_problem)
    registry.set_challenger(version)
    if gate.promote:
        registry.set_champion(version, reason=gate.text)
    return TrainResult(version, gate.promote, gate.text, metrics, report, champion_metrics, tables, run_id,
                       time.perf_counter() - t0, holdout, gate)


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

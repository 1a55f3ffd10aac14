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
from distillguard.features.catalog import names_of_kind
from distillguard.features.feature_spec import BEHAVIOUR, CONTENT
from distillguard.features.window import account_windows
from distillguard.features.pipeline import (
    EmbeddingContext, FeatureState, build_features, fit_feature_state, prepare_prompts,
)
from distillguard.training.bundle import DetectorBundle
from distillguard.training.dataset import TrainingDataError, check_labels, stratified_split
from distillguard.training.evaluation import baseline_scores, comparison_table, leave_one_style_out, time_to_detection
from distillguard.training.holdout_evaluation import HoldoutEvaluation, evaluate_on_holdout, rescore
from distillguard.training.holdout_report import HEADLINE_FIGURES, ablation_table, flatten, population_figures
from distillguard.training.holdout_extension import (
    NEW_CAMPAIGN_SHARE, extend_holdout, known_campaigns, new_campaign_figures,
)
from distillguard.training.holdout_store import load_or_freeze, save_extension
from distillguard.training.holdouts import (
    SINGLE_PERIOD, Holdout, HoldoutRules, adaptive_copy, arrived_later, cold_start_cut, training_events,
)
from distillguard.training.model import Detector, fit_detector
from distillguard.training.prompt_model_fit import FOLDS, CrossFittedPromptModel, fit_cross_fitted
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
    new_campaign_share: float = NEW_CAMPAIGN_SHARE  # of a newly labelled campaign's accounts, held out


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
    champion_version: str | None = None  # the champion the candidate was compared with


def _in_period_figures(detector: Detector, X: pd.DataFrame, labels: pd.DataFrame, test_ids: list[str],
                       volumes: pd.Series) -> dict:
    """The secondary figure: a random in-period split, scored within the earlier population."""
    lab = labels[labels["account_id"].isin(set(test_ids))]
    s = pd.Series(detector.score(X.loc[lab["account_id"]]), index=lab["account_id"].to_numpy())
    d = pd.Series(detector.decide(X.loc[lab["account_id"]], s.to_numpy()), index=s.index)
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
    except Exception as exc:  # noqa: BLE001 - a champion made by another version may fail in any way
        problem = f"champion v{version} cannot be scored by this version ({type(exc).__name__}: {exc})"
        log(problem)
        return version, None, problem


AUGMENTED = "~adaptive"  # suffix of the adaptive copies' rows in the training table
COLD = "~cold"  # suffix of the cold-start copies' rows


def _training_features(earlier: pd.DataFrame, pool: pd.DataFrame, split, state, ctx: EmbeddingContext,
                       config: TrainConfig, log: Callable[[str], None]):
    """Fit the cross-fitted prompt model and build the training period's features as one population."""
    log("embedding the training period's prompts")
    prepared = prepare_prompts(earlier["prompt"], ctx, state.scorer, keep_inputs=True, show_progress=True)
    log(f"fitting the per-prompt harvest-intent model (cross-fitted over {FOLDS} folds of training accounts)")
    cross = fit_cross_fitted(prepared, earlier["account_id"].to_numpy(), pool, split.train, split.validation,
                             common_text_accounts=state.config.common_text_accounts, seed=config.seed)
    state.prompt_model = cross.full
    prepared.table.harvest_p = cross.row_probabilities(prepared, earlier["account_id"].to_numpy())
    log(f"building features of the training period as one population ({earlier['account_id'].nunique():,} accounts)")
    return build_features(earlier, state, ctx, prompts=prepared.table), state, cross


def _variant_features(variant: pd.DataFrame, state, ctx: EmbeddingContext,
                      cross: CrossFittedPromptModel) -> pd.DataFrame:
    """Features of a rewritten copy of the training population (its accounts keep their cross-fitted
    prompt probabilities)."""
    prepared = prepare_prompts(variant["prompt"], ctx, state.scorer, keep_inputs=True)
    prepared.table.harvest_p = cross.row_probabilities(prepared, variant["account_id"].to_numpy())
    return build_features(variant, state, ctx, prompts=prepared.table)


@dataclass
class TrainingSet:
    """Everything the detector is fitted on, built from the training period only."""

    state: FeatureState  # organic baseline, exemplar thresholds and the prompt intent model
    cross: CrossFittedPromptModel
    X: pd.DataFrame  # features of the whole training population (every account active in it)
    X_fit: pd.DataFrame  # training accounts, their adaptive copies and their cold-start copies
    y_fit: np.ndarray
    groups: np.ndarray  # the account each row of X_fit stands for
    organic_ref: np.ndarray  # rows of X_fit that are real organic accounts (thresholds, medians)
    cold_ref: np.ndarray  # rows of X_fit that are organic accounts cut to their first prompts (cold thresholds)
    X_val: pd.DataFrame
    y_val: np.ndarray
    adaptive_rows: int
    cold_rows: int


def build_training_set(earlier: pd.DataFrame, pool: pd.DataFrame, split, ctx: EmbeddingContext,
                       config: TrainConfig, log: Callable[[str], None]) -> TrainingSet:
    lab = pool.set_index("account_id")
    organic_train = lab.loc[split.train].query("label == 0").index
    log(f"fitting the organic baseline on {len(organic_train):,} organic training accounts (training period only)")
    state = fit_feature_state(earlier[earlier["account_id"].isin(organic_train)], ctx, config=FeatureConfig(),
                              show_progress=True)
    X, state, cross = _training_features(earlier, pool, split, state, ctx, config, log)
    log("adaptive copies of the training harvesters (their timing, conversations, model and metadata taken from "
        "organic donors), so that behaviour can add evidence but its absence cannot hide a harvester")
    X_adaptive = _variant_features(adaptive_copy(earlier, pool, seed=config.seed), state, ctx, cross)
    log("cold-start copies of the organic training accounts (their first 1-3 prompts), so that a newcomer's "
        "first questions are judged as what they are")
    X_cold = _variant_features(cold_start_cut(earlier, seed=config.seed), state, ctx, cross)
    train_harvest = [a for a in split.train if lab.loc[a, "label"] == 1]
    train_organic = [a for a in split.train if lab.loc[a, "label"] == 0]
    adaptive_rows = X_adaptive.loc[train_harvest].rename(index=lambda a: f"{a}{AUGMENTED}")
    cold_rows = X_cold.loc[train_organic].rename(index=lambda a: f"{a}{COLD}")
    X_fit = pd.concat([X.loc[split.train], adaptive_rows, cold_rows])
    y_fit = np.concatenate([lab.loc[split.train, "label"].to_numpy(), np.ones(len(adaptive_rows), dtype=int),
                            np.zeros(len(cold_rows), dtype=int)])
    groups = np.array([a.removesuffix(AUGMENTED).removesuffix(COLD) for a in X_fit.index])
    organic_ref = np.asarray([(y == 0) and not a.endswith((AUGMENTED, COLD)) for a, y in zip(X_fit.index, y_fit)])
    X_val, y_val = X.loc[split.validation], lab.loc[split.validation, "label"].to_numpy()
    cold_ref = np.asarray(X_fit.index.str.endswith(COLD))
    return TrainingSet(state, cross, X, X_fit, y_fit, groups, organic_ref, cold_ref, X_val, y_val,
                       len(adaptive_rows), len(cold_rows))


def _training_period(events: pd.DataFrame, holdout: Holdout, labelled: set[str],
                     log: Callable[[str], None]) -> pd.DataFrame:
    """The events training may see, each account in its scoring window: the period before the hold-out,
    and labelled accounts that came after it was frozen (a new campaign's training share, later verdicts)
    with all their events."""
    window = FeatureConfig()
    later = arrived_later(events, holdout, labelled)
    core = training_events(events, holdout)
    earlier = account_windows(core[~core["account_id"].isin(later)], window.window_events, window.window_days)
    if not later:
        return earlier
    log(f"{len(later):,} labelled accounts active only after the frozen hold-out train with all their events")
    late = account_windows(events[events["account_id"].isin(later)], window.window_events, window.window_days)
    return pd.concat([earlier, late], ignore_index=True)


def run_training(events: pd.DataFrame, labels: pd.DataFrame, registry: Registry, config: TrainConfig,
                 *, log: Callable[[str], None] = print) -> TrainResult:
    t0 = time.perf_counter()
    labels = check_labels(events, labels)
    held_campaigns = set(config.holdout_campaigns)
    unknown = held_campaigns - set(labels["campaign"])
    if unknown:
        raise TrainingDataError(f"--holdout-campaigns names campaigns not in the labels: {sorted(unknown)}")
    unseen_ids = set(labels.loc[labels["campaign"].isin(held_campaigns), "account_id"])

    known_labels = labels[~labels["account_id"].isin(unseen_ids)]
    holdout, created = load_or_freeze(registry.root, events, known_labels, config.holdout, seed=config.seed, log=log)
    log(("hold-out created and frozen: " if created else "hold-out frozen earlier: ") + holdout.note)
    if holdout.kind == SINGLE_PERIOD:
        log("WARNING " + "!" * 60)
        log("WARNING: " + holdout.note)
        log("WARNING " + "!" * 60)
    holdout, added, added_events, added_labels = extend_holdout(
        holdout, events, known_labels, known_campaigns(holdout, events, known_labels), config.new_campaign_share,
        FeatureConfig().window_days)
    for a in added:
        log(f"newly labelled campaign {a.campaign}: {a.held_out} of its {a.held_out + a.trained} accounts join the "
            f"hold-out (chosen by a hash of the account id), {a.trained} train"
            + (f"; its events are scored {a.shift_weeks} weeks earlier, inside the hold-out's window"
               if a.shift_weeks else ""))

    earlier = _training_period(events, holdout, set(known_labels["account_id"]), log)
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
    ts = build_training_set(earlier, pool, split, ctx, config, log)
    state, cross = ts.state, ts.cross
    X, X_fit, y_fit, groups, organic_ref, X_val, y_val = (ts.X, ts.X_fit, ts.y_fit, ts.groups, ts.organic_ref,
                                                          ts.X_val, ts.y_val)
    adaptive_rows, cold_rows = ts.adaptive_rows, ts.cold_rows
    log(f"training LightGBM on {len(split.train):,} accounts, {adaptive_rows:,} adaptive and "
        f"{cold_rows:,} cold-start copies "
        "(thresholds on the out-of-fold scores of every organic training account)")
    detector = fit_detector(X_fit, y_fit, groups, organic_ref, X_val, y_val, seed=config.seed,
                            params=config.lgb_params, cold_reference=ts.cold_ref)
    bundle = DetectorBundle(detector, state, {"seed": config.seed, "trained_accounts": len(split.train),
                                              "adaptive_copies": adaptive_rows, "cold_start_copies": cold_rows,
                                              "holdout_kind": holdout.kind,
                                              "prompt_model": {"positives": cross.full.positives_,
                                                               "hydra_relabelled": cross.full.relabelled_}})

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
            scored, s, pd.Series(detector.decide(X.loc[scored["account_id"]], s.to_numpy()), index=s.index), volumes)

    log("family ablation: detectors on content features only and on behaviour features only, same hold-outs")
    ablation = {"all": report}
    for kind in (CONTENT, BEHAVIOUR):
        cols = names_of_kind(kind)
        det = fit_detector(X_fit[cols], y_fit, groups, organic_ref, X_val[cols], y_val, seed=config.seed,
                           params=config.lgb_params, cold_reference=ts.cold_ref)
        ablation[f"{kind} only"] = rescore(det, evaluation, holdout, cols)
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
    tables["family_ablation"] = ablation_table(ablation)
    metrics = flatten(report)
    for name, rep in ablation.items():
        if name != "all":
            metrics.update({f"ablation.{name.split()[0]}.{k}": v for k, v in flatten(rep).items()
                            if k.split(".", 1)[1] in HEADLINE_FIGURES})
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
    if holdout.info.get("extensions"):
        report["new_campaigns"] = new_campaign_figures(
            holdout.info["extensions"], {a.campaign for a in added}, report["out_of_time"],
            champion_eval.report["out_of_time"] if champion_eval is not None else None, champion_version)
        metrics.update({k: v for k, v in flatten({"new_campaigns": report["new_campaigns"]}).items()
                        if k.endswith(("recall_at_1pct_fpr", "flagged"))})

    from distillguard.training.run_artifacts import log_and_register

    version, run_id = log_and_register(registry, bundle, config, holdout, report, metrics, tables, evaluation, base,
                                       champion_metrics)
    gate = judge(metrics, champion_metrics, version=version, champion_version=champion_version,
                 champion_problem=champion_problem)
    registry.set_challenger(version)
    if added:  # judged on, so kept for every later candidate
        save_extension(registry.root, added_events, added_labels, added)
    if gate.promote:
        registry.set_champion(version, reason=gate.text)
    return TrainResult(version, gate.promote, gate.text, metrics, report, champion_metrics, tables, run_id,
                       time.perf_counter() - t0, holdout, gate, champion_version)


def load_bundle(registry: Registry, model_uri: str) -> DetectorBundle:
    """The bundle a `models:/distillguard@alias` or `/VERSION` URI names, loaded from the local registry."""
    import mlflow.pyfunc

    version = registry.resolve(model_uri)
    model = mlflow.pyfunc.load_model(str(registry.model_path(version)))
    bundle = model.unwrap_python_model().bundle
    bundle.info["version"] = version
    return bundle


__all__ = ["TrainConfig", "TrainResult", "run_training", "load_bundle"]

"""The `distillguard` command line. Each subcommand parses options and calls into the packages;
heavy imports (torch, sentence-transformers, mlflow) happen inside the commands that need them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from typing import Annotated, Optional

import typer

# Never reach for a model hub: everything the system loads ships with its packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(help="Detect distillation harvesting on an LLM API.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

def _print_version(value: bool) -> None:
    if value:
        from distillguard import __version__

        typer.echo(f"distillguard {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                                callback=_print_version)] = False) -> None:
    """Detect distillation harvesting on an LLM API."""


OnBadRows = Annotated[str, typer.Option("--on-bad-rows", help="fail: stop at the first bad row; "
                                        "skip: write each rejected row with its reason to a side file")]
TsNotBefore = Annotated[str, typer.Option("--ts-not-before", help="events dated before this UTC date (ISO-8601) "
                                          "are bad rows")]
TsMaxAheadHours = Annotated[float, typer.Option("--ts-max-ahead-hours", min=0, help="events dated more than this "
                                                "many hours after now are bad rows")]


def _ts_bounds(not_before: str, max_ahead_hours: float):
    """The accepted `ts` range of an events file (`data.time_bounds`), from the command's options."""
    from datetime import datetime, timedelta

    from distillguard.data.time_bounds import TimestampBounds

    try:
        return TimestampBounds(datetime.fromisoformat(not_before),
                               timedelta(hours=max_ahead_hours))
    except ValueError as exc:
        _fail(f"--ts-not-before / --ts-max-ahead-hours: {exc}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _check_policy(value: str) -> str:
    if value not in ("fail", "skip"):
        _fail(f"--on-bad-rows must be 'fail' or 'skip', not '{value}'")
    return value


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="folder for events.parquet and labels.csv")] = Path("runs/sim"),
    accounts: Annotated[Optional[int], typer.Option("--accounts", help="number of accounts [default: 2000]")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="master seed, same seed same traffic [default: 0]")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="JSON file with SimulatorConfig fields")] = None,
    show_schema: Annotated[bool, typer.Option("--show-schema", help="print the config's JSON schema and exit")] = False,
) -> None:
    """Write labelled synthetic traffic: organic users, hard benign scripts and harvesting campaigns."""
    import json

    from pydantic import ValidationError

    from distillguard.data.simulator import write_simulation
    from distillguard.data.simulator_config import SimulatorConfig

    if show_schema:
        typer.echo(json.dumps(SimulatorConfig.model_json_schema(), indent=2, default=str))
        return
    try:
        fields = json.loads(config.read_text()) if config else {}
        fields.update({k: v for k, v in (("accounts", accounts), ("seed", seed)) if v is not None})
        cfg = SimulatorConfig(**fields)
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read config {config}: {exc}")
    except ValidationError as exc:
        _fail(f"invalid simulator config: {exc}")
    t0 = time.perf_counter()
    events, labels, rows = write_simulation(cfg, out, progress=True)
    typer.echo(f"wrote {rows:,} events for {cfg.accounts:,} accounts to {events} and labels to {labels} "
               f"in {time.perf_counter() - t0:.1f} s")


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="events file (.parquet, .jsonl or .csv)")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels file to check against the events")] = None,
    on_bad_rows: OnBadRows = "fail",
    rejects: Annotated[Optional[Path], typer.Option("--rejects", help="side file for rejected rows (skip mode)")] = None,
    ts_not_before: TsNotBefore = "2000-01-01",
    ts_max_ahead_hours: TsMaxAheadHours = 24.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the report (or the first bad row) as JSON")] = False,
) -> None:
    """Check an events file (and optionally its labels) against the traffic contract."""
    import json

    from distillguard.data.errors import ContractError
    from distillguard.data.validation import format_report, validate_files

    try:
        report = validate_files(path, labels, on_bad_rows=_check_policy(on_bad_rows), rejects_path=rejects,
                                ts_bounds=_ts_bounds(ts_not_before, ts_max_ahead_hours))
    except ContractError as exc:
        if json_out:
            typer.echo(json.dumps({"ok": False, "error": {"file": exc.file, "row": exc.row, "field": exc.field,
                                                          "reason": exc.reason}}, indent=2))
        _fail(str(exc))
    if json_out:
        from dataclasses import asdict

        typer.echo(json.dumps({"ok": report.ok, **asdict(report)}, indent=2, default=str))
    else:
        typer.echo(format_report(report))


baseline_app = typer.Typer(help="The organic baseline: fit it on organic traffic.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")

def _a_profile(value: Optional[str]) -> Optional[str]:
    if value is not None:
        from distillguard.features.embedding import PROFILES

        if value not in PROFILES:
            raise typer.BadParameter(f"unknown embedder profile {value!r}; choose one of {', '.join(PROFILES)}")
    return value


Profile = Annotated[Optional[str], typer.Option("--profile", help="embedder profile: minilm, minilm-int8 or static "
                                                 "[default: the measured default]", callback=_a_profile)]


def _a_folder(value: Optional[Path]) -> Optional[Path]:
    """Options naming a folder: an existing file there is a clear error, not a traceback later."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file; give a folder")
    return value


def _a_file(value: Optional[Path]) -> Optional[Path]:
    """Options naming a file to write: an existing folder there is a clear error."""
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give a file path")
    return value


StoreDir = Annotated[Path, typer.Option("--store", help="folder of the persistent embedding store",
                                        callback=_a_folder)]
MlrunsDir = Annotated[Path, typer.Option("--mlruns", help="MLflow folder: sqlite db and artifacts",
                                         callback=_a_folder)]


def _an_engine(value: str) -> str:
    from distillguard.ray_commands import check_engine

    return check_engine(value)


Engine = Annotated[str, typer.Option("--engine", help="local: this process; ray: a Ray cluster (needs the `ray` "
                                     "extra; --events may be a folder of Parquet files)", callback=_an_engine)]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", help="with --engine ray: 'auto' or an address "
                                                   "joins that cluster [default: start a local Ray]")]


def _read_events_or_fail(path: Path, on_bad_rows: str, ts_bounds=None):
    from distillguard.data.errors import ContractError
    from distillguard.data.readers import read_events
    from distillguard.data.time_bounds import DEFAULT_TS_BOUNDS

    try:
        events = read_events(path, on_bad_rows=_check_policy(on_bad_rows), ts_bounds=ts_bounds or DEFAULT_TS_BOUNDS)
    except ContractError as exc:
        _fail(str(exc))
    if events.empty:  # every command that reads events needs some
        _fail(f"{path} holds no events" + (" (every row was skipped as bad)" if on_bad_rows == "skip" else ""))
    return events


def _organic_events(events, labels_path: Optional[Path], organic_path: Optional[Path], on_bad_rows: str):
    from distillguard.data.errors import ContractError
    from distillguard.data.readers import read_labels

    if organic_path is not None:
        return _read_events_or_fail(organic_path, on_bad_rows)
    if labels_path is None:
        _fail("give --labels (accounts labelled 0 are organic) or --organic-events")
    try:
        labels = read_labels(labels_path, on_bad_rows=_check_policy(on_bad_rows))
    except ContractError as exc:
        _fail(str(exc))
    unknown = sorted(set(labels["account_id"]) - set(events["account_id"]))
    if unknown:
        _fail(f"{labels_path.name}: {len(unknown)} labelled accounts have no events, e.g. {unknown[:3]}")
    organic = set(labels.loc[labels["label"] == 0, "account_id"])
    if not organic:
        _fail(f"{labels_path.name}: no account is labelled 0 (organic); the baseline needs organic traffic")
    return events[events["account_id"].isin(organic)]


@baseline_app.command("fit")
def baseline_fit(
    events: Annotated[Path, typer.Option("--events", help="events file")],
    out: Annotated[Path, typer.Option("--out", help="folder to write the feature state (baseline) to")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels: accounts labelled 0 are organic")] = None,
    organic_events: Annotated[Optional[Path], typer.Option("--organic-events", help="a separate organic events file")] = None,
    profile: Profile = None,
    store: StoreDir = Path("runs/embeddings"),
    on_bad_rows: OnBadRows = "fail",
) -> None:
    """Fit the organic baseline (FAISS index, topic clusters, intent thresholds) on organic traffic."""
    from distillguard.features.embedding import DEFAULT_PROFILE
    from distillguard.features.pipeline import EmbeddingContext, fit_feature_state

    ev = _read_events_or_fail(events, on_bad_rows) if organic_events is None else None
    organic = _organic_events(ev, labels, organic_events, on_bad_rows)
    ctx = EmbeddingContext.open(profile or DEFAULT_PROFILE, store)
    state = fit_feature_state(organic, ctx, show_progress=True)
    state.save(out)
    b = state.baseline
    typer.echo(f"baseline fitted on {state.fit_info['organic_events']:,} organic events of "
               f"{state.fit_info['organic_accounts']:,} accounts with profile {state.profile}: index {b.index_kind_} "
               f"(recall@10 {b.index_recall_at_10_:.3f}), {len(b.centroids_)} topic clusters -> {out}")


@baseline_app.command("drift")
def baseline_drift(
    out: Annotated[Path, typer.Option("--out", help="CSV of the per-cluster drift table (a PNG is drawn beside it)",
                                      callback=_a_file)],
    events: Annotated[Optional[Path], typer.Option("--events", help="events of the later period")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="labels: accounts labelled 0 are organic")] = None,
    state: Annotated[Optional[Path], typer.Option("--state", help="a `serve` state folder: the accounts its "
                                                  "gateway answered `allow` are the organic traffic")] = None,
    model_uri: Annotated[str, typer.Option("--model-uri")] = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
) -> None:
    """How far a period's organic traffic moved from the model's organic reference, per topic cluster."""
    import json

    from distillguard.features.drift import drift_report
    from distillguard.training.bundle import BundleError
    from distillguard.training.plots import drift_picture
    from distillguard.training.registry import RegistryError
    from distillguard.training.train_job import load_bundle

    if (events is None) == (state is None):
        _fail("give --events (with --labels) or --state")
    if events is not None:
        from distillguard.data.errors import ContractError
        from distillguard.data.readers import read_labels

        ev = _read_events_or_fail(events, "fail")
        if labels is None:
            _fail("--events needs --labels to know which accounts are organic")
        try:
            lab = read_labels(labels)
        except ContractError as exc:
            _fail(str(exc))
        organic = ev[ev["account_id"].isin(set(lab.loc[lab["label"] == 0, "account_id"]))]
    else:
        from distillguard.workbench.sources import events_from_state, scores_from_state

        frame, stored = events_from_state(state), scores_from_state(state)
        allowed = set(stored.table.loc[stored.table["decision"] == "allow", "account_id"])
        organic = frame[frame["account_id"].isin(allowed)]
    try:
        bundle = load_bundle(_registry(mlruns), model_uri)
        ctx = bundle.open_embeddings(store)
    except (RegistryError, BundleError) as exc:
        _fail(str(exc))
    vectors = ctx.embed(organic["prompt"].tolist(), show_progress=True)
    table, summary = drift_report(bundle.state.baseline, vectors[np.linalg.norm(vectors, axis=1) > 0])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out)
    drift_picture(table, summary, out.with_suffix(".png"))
    typer.echo(json.dumps({"model_version": bundle.info.get("version"), **summary}, indent=2))
    typer.echo(f"per-cluster table -> {out}; picture -> {out.with_suffix('.png')}")


@app.command()
def features(
    events: Annotated[Path, typer.Option("--events", help="events file")],
    out: Annotated[Path, typer.Option("--out", help="account feature table (.parquet or .csv)", callback=_a_file)],
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="a feature state folder (a model bundle's "
                                                     "feature_state) instead of a registered model")] = None,
    model_uri: Annotated[str, typer.Option("--model-uri", help="the registered model whose feature state (baseline, "
                                           "prompt intent model) to use")] = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    on_bad_rows: OnBadRows = "fail",
    engine: Engine = "local",
    ray_address: RayAddress = None,
    ts_not_before: TsNotBefore = "2000-01-01",
    ts_max_ahead_hours: TsMaxAheadHours = 24.0,
) -> None:
    """Build the account feature table: one row per account, all accounts of the file as one population."""
    from distillguard.features.pipeline import EmbeddingContext, FeatureState, FeatureStateError, build_features
    from distillguard.training.bundle import BundleError
    from distillguard.training.registry import RegistryError

    bounds = _ts_bounds(ts_not_before, ts_max_ahead_hours)
    ev = _read_events_or_fail(events, on_bad_rows, bounds) if engine == "local" else None
    try:
        if baseline is not None:
            state = FeatureState.load(baseline)
            ctx = EmbeddingContext.open(state.profile, store)
            state = FeatureState.load(baseline, expected_identity=ctx.embedder.identity)
        else:
            from distillguard.training.train_job import load_bundle

            bundle = load_bundle(_registry(mlruns), model_uri)
            state, ctx = bundle.state, bundle.open_embeddings(store)
        t0 = time.perf_counter()
        if engine == "ray":
            from distillguard.ray_commands import features_on_ray

            features_on_ray(events, out, state, store, ray_address, on_bad_rows, typer.echo)
            return
        table = build_features(ev, state, ctx, show_progress=True)
    except (FeatureStateError, BundleError, RegistryError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out) if out.suffix == ".csv" else table.to_parquet(out)
    typer.echo(f"{len(table):,} accounts x {table.shape[1]} features -> {out} ({time.perf_counter() - t0:.1f} s)")


ModelUri = Annotated[str, typer.Option("--model-uri", help="models:/distillguard@ALIAS or models:/distillguard/VERSION")]


def _registry(mlruns: Path):
    from distillguard.training.registry import Registry, RegistryError

    try:
        return Registry(mlruns)
    except RegistryError as exc:
        _fail(str(exc))


@app.command()
def train(
    events: Annotated[list[Path], typer.Option("--events", help="events file or folder of them; repeat to add "
                                               "more (e.g. the events exported with a new campaign's verdicts)")],
    labels: Annotated[list[Path], typer.Option("--labels", help="labels file or folder of them; repeat to add "
                                               "more (an account labelled twice takes the later file's label)")],
    holdout_campaigns: Annotated[str, typer.Option("--holdout-campaigns", help="comma-separated campaigns kept "
                                                   "out of training and evaluated as unseen")] = "",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    profile: Profile = None,
    lgb_params: Annotated[str, typer.Option("--lgb-params", help="JSON overriding LightGBM parameters")] = "{}",
    time_to_detection: Annotated[bool, typer.Option("--time-to-detection/--no-time-to-detection")] = True,
    holdout_days: Annotated[float, typer.Option("--holdout-days", help="length of the later period held out as "
                                                "the out-of-time population (used when the hold-out is first "
                                                "frozen)")] = 14.0,
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    on_bad_rows: OnBadRows = "fail",
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout (progress goes "
                                           "to stderr)")] = False,
) -> None:
    """Train, evaluate and register a model; promote it only if it beats the champion on the frozen hold-out.

    A newly labelled campaign joins the hold-out with 30% of its accounts; the report shows its recall before/after.

    Exit codes: 0 registered and promoted to champion; 3 registered, not promoted; 1 error.
    """
    import json

    from distillguard.data.errors import ContractError
    from distillguard.data.input_sets import combine_events, combine_labels, expand_paths
    from distillguard.data.readers import read_labels
    from distillguard.features.embedding import DEFAULT_PROFILE
    from distillguard.training.dataset import TrainingDataError
    from distillguard.training.holdouts import HoldoutRules
    from distillguard.training.train_job import TrainConfig, run_training
    from distillguard.training.train_summary import EXIT_NOT_PROMOTED, train_summary

    try:
        params = json.loads(lgb_params)
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        _fail(f"--lgb-params must be a JSON object: {exc}")
    def log(message: str) -> None:
        typer.echo(f"- {message}", err=json_out)

    try:
        event_files, label_files = expand_paths(events), expand_paths(labels)
        lab_set = combine_labels([read_labels(p, on_bad_rows=_check_policy(on_bad_rows)) for p in label_files])
    except ContractError as exc:
        _fail(str(exc))
    ev_set = combine_events([_read_events_or_fail(p, on_bad_rows) for p in event_files])
    if len(event_files) > 1 or len(label_files) > 1:
        log(f"read {len(event_files)} events files ({len(ev_set.frame):,} events; {ev_set.repeated:,} repeated rows "
            f"kept once) and {len(label_files)} labels files ({len(lab_set.frame):,} accounts; {lab_set.repeated:,} "
            "relabelled by a later file)")
    cfg = TrainConfig(seed=seed, profile=profile or DEFAULT_PROFILE,
                      holdout_campaigns=tuple(c for c in holdout_campaigns.split(",") if c),
                      lgb_params=params, time_to_detection=time_to_detection, store_dir=store,
                      holdout=HoldoutRules(holdout_days=holdout_days))
    try:
        result = run_training(ev_set.frame, lab_set.frame, _registry(mlruns), cfg, log=log)
    except TrainingDataError as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(json.dumps(train_summary(result), indent=2))
    else:
        _print_training(result)
    if not result.promoted:
        raise typer.Exit(code=EXIT_NOT_PROMOTED)


def _console():
    """A rich console; when output is not a terminal, wide enough that tables are not squeezed."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.1%}"


def _num(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _print_training(result) -> None:
    from rich.table import Table

    from distillguard.training.holdouts import SINGLE_PERIOD

    console = _console()
    loud = result.holdout.kind == SINGLE_PERIOD
    console.print(("[bold red]" if loud else "[bold]") + result.holdout.note + ("[/bold red]" if loud else "[/bold]"))
    rep = result.report
    t = Table(title="Hold-outs: what a live API will see (decisions at the model's own review/block thresholds)")
    for c in ("hold-out", "organic / harvesting", "ROC-AUC", "recall@1% FPR", "recall@0.1% FPR",
              "organic flagged", "organic blocked", "organic allowed"):
        t.add_column(c, justify="left" if c == "hold-out" else "right")
    names = {"out_of_time": "out of time, whole population", "adaptive": "adaptive copy (tells stripped)",
             "cold_start": "cold start (first 1-3 prompts)", "in_period": "in-period random split (secondary)",
             "unseen_campaigns": "unseen campaigns (--holdout-campaigns)"}
    for key, label in names.items():
        if key not in rep:
            continue
        r = rep[key]
        t.add_row(label, f"{r['organic_accounts']:,} / {r['harvest_accounts']:,}", _num(r["roc_auc"]),
                  _num(r["recall_at_1pct_fpr"]), _num(r["recall_at_0.1pct_fpr"]), _pct(r["organic_flagged"]),
                  _pct(r["organic_blocked"]), _pct(r.get("organic_allowed", float("nan"))))
    console.print(t)
    oot = rep["out_of_time"]
    at = Table(title="Out of time: organic accounts flagged and blocked, by archetype")
    for c in ("archetype", "accounts", "flagged", "blocked"):
        at.add_column(c)
    for arch, row in oot["by_archetype"].items():
        at.add_row(arch, str(row["accounts"]), _pct(row["flagged"]), _pct(row["blocked"]))
    console.print(at)
    st = Table(title="Out of time and adaptive copy: recall at 1% FPR by campaign style and by prompts per account")
    for c in ("group", "accounts", "out of time", "adaptive copy"):
        st.add_column(c)
    for style, row in oot["by_style"].items():
        st.add_row(f"style {style}", str(row["accounts"]), _num(row["recall_at_1pct_fpr"]),
                   _num(rep["adaptive"]["by_style"].get(style, {}).get("recall_at_1pct_fpr", float("nan"))))
    for bucket, row in oot["by_volume"].items():
        st.add_row(f"prompts {bucket.replace('le', '<= ').replace('gt', '> ')}", str(row["harvest_accounts"]),
                   _num(row["recall_at_1pct_fpr"]), _num(rep["adaptive"]["by_volume"][bucket]["recall_at_1pct_fpr"]))
    console.print(st)
    if "largest_component" in oot:
        console.print(f"out of time: largest coordination component {oot['largest_component']:.0f} accounts; "
                      f"organic accounts in a component of more than 5: {_pct(oot['organic_in_component_gt5'])}")
    if "family_ablation" in result.tables:
        ab = Table(title="Family ablation: detectors trained on content only / behaviour only / all features")
        for c in ("features", "oot ROC-AUC", "oot recall@1%", "oot recall@0.1%", "oot organic flagged",
                  "oot organic blocked", "adaptive recall@1%", "cold start allowed"):
            ab.add_column(c, justify="left" if c == "features" else "right")
        for name, row in result.tables["family_ablation"].iterrows():
            v = row.to_numpy()
            ab.add_row(name, _num(v[0]), _num(v[1]), _num(v[2]), _pct(v[3]), _pct(v[4]), _num(v[5]), _pct(v[6]))
        console.print(ab)
    ct = Table(title="Out of time: distillguard and the baselines a user would otherwise reach for")
    for c in ("detector", "ROC-AUC", "PR-AUC", "recall@1% FPR", "recall@0.1% FPR"):
        ct.add_column(c, justify="right" if c != "detector" else "left")
    for name, row in result.tables["comparison"].iterrows():
        ct.add_row(name, *(f"{row[k]:.3f}" for k in ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr")))
    console.print(ct)
    lt = Table(title="Leave one campaign style out (trained without it, tested out of time)")
    for c in ("style", "accounts", "recall@1% FPR", "recall@0.1% FPR"):
        lt.add_column(c)
    for style, row in result.tables["leave_one_style_out"].iterrows():
        lt.add_row(style, str(int(row["accounts"])), f"{row['recall_at_1pct_fpr']:.3f}", f"{row['recall_at_0.1pct_fpr']:.3f}")
    console.print(lt)
    m = result.metrics
    if "ttd_median_prompts" in m:
        console.print(f"time to detection: median {m['ttd_median_prompts']:.0f} prompts, 90th percentile "
                      f"{m['ttd_p90_prompts']:.0f}; {m['ttd_detected_share']:.0%} of out-of-time harvesting accounts "
                      "reach review")
    if rep.get("new_campaigns"):
        nt = Table(title="Newly labelled campaigns in the hold-out: recall at 1% FPR before (champion) and after "
                         "(this model)")
        for c in ("campaign", "held out", "added", "before (champion)", "after", "flagged before", "flagged after"):
            nt.add_column(c, justify="left" if c == "campaign" else "right")
        for name, row in rep["new_campaigns"].items():
            champ = f" (v{row['champion_version']})" if row["champion_version"] else ""
            nt.add_row(name, str(row["held_out"]), "this run" if row["added_this_run"] else "earlier",
                       _num(row["champion_recall_at_1pct_fpr"]) + champ, _num(row["recall_at_1pct_fpr"]),
                       _pct(row["champion_flagged"]), _pct(row["flagged"]))
        console.print(nt)
    if result.champion_metrics:
        from distillguard.training.promotion import GATE_FIGURES

        console.print("candidate vs champion on the same hold-outs: " + ", ".join(
            f"{k} {m.get(k, float('nan')):.3f} vs {result.champion_metrics.get(k, float('nan')):.3f}"
            for k in GATE_FIGURES))
    console.print(f"[bold]{result.verdict}[/bold] (run {result.run_id}, {result.seconds:.0f} s)")


@app.command()
def score(
    events: Annotated[Path, typer.Option("--events", help="events file")],
    out: Annotated[Path, typer.Option("--out", help="CSV: account_id, score, decision, reasons", callback=_a_file)],
    model_uri: ModelUri = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    seed_state: Annotated[Optional[Path], typer.Option("--seed-state", help="a `serve` state folder to seed: the "
                                                       "events join its log and the scores become the accounts' "
                                                       "current ones, so the gateway answers them at once")] = None,
    on_bad_rows: OnBadRows = "fail",
    engine: Engine = "local",
    ray_address: RayAddress = None,
    ts_not_before: TsNotBefore = "2000-01-01",
    ts_max_ahead_hours: TsMaxAheadHours = 24.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary (counts, thresholds) as JSON")] = False,
) -> None:
    """Score every account in an events file with a registered model (the file's scoring window as one population).

    The CSV has account_id, score, decision, review_threshold, block_threshold (what the decision was taken at) and
    reasons."""
    from distillguard.training.bundle import BundleError
    from distillguard.training.inference import Inference
    from distillguard.training.registry import RegistryError
    from distillguard.training.train_job import load_bundle

    if engine == "ray" and seed_state is not None:
        _fail("--seed-state needs the local engine (it appends the events to the state's log)")
    ev = _read_events_or_fail(events, on_bad_rows, _ts_bounds(ts_not_before, ts_max_ahead_hours)) \
        if engine == "local" else None
    try:
        bundle = load_bundle(_registry(mlruns), model_uri)
        if engine == "ray":
            from distillguard.ray_commands import scored_on_ray

            scored = scored_on_ray(events, bundle, store, ray_address, on_bad_rows)
        else:
            scored = Inference.open(bundle, store).score_events(ev, show_progress=True)
    except (RegistryError, BundleError) as exc:
        _fail(str(exc))
    thresholds = bundle.detector.thresholds
    table = scored.table(thresholds)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    counts = table["decision"].value_counts().to_dict()
    if json_out:
        import json

        typer.echo(json.dumps({"model_version": str(bundle.info["version"]), "accounts": len(table),
                               "decisions": {d: int(counts.get(d, 0)) for d in ("allow", "review", "block")},
                               "thresholds": {"review": thresholds.review, "block": thresholds.block,
                                              "cold_review": max(thresholds.review, thresholds.cold_review),
                                              "cold_block": max(thresholds.block, thresholds.cold_block),
                                              "cold_max_prompts": thresholds.cold_max_prompts},
                               "out": str(out)}, indent=2))
    else:
        typer.echo(f"scored {len(table):,} accounts with v{bundle.info['version']}: "
                   + ", ".join(f"{counts.get(d, 0):,} {d}" for d in ("allow", "review", "block")) + f" -> {out} "
                   f"(review above {thresholds.review:.4f}, block above {thresholds.block:.4f})")
    if seed_state is not None:
        from distillguard.serving.seeding import seed_state as seed

        n_events, n_accounts = seed(seed_state, ev, scored, str(bundle.info["version"]))
        typer.echo(f"seeded {seed_state}: {n_events:,} events appended to its log, {n_accounts:,} accounts' scores "
                   "stored")


@app.command()
def models(mlruns: MlrunsDir = Path("mlruns"),
           json_out: Annotated[bool, typer.Option("--json", help="print the versions as JSON")] = False) -> None:
    """List registered versions, their aliases, review/block thresholds and headline hold-out metrics."""
    from rich.table import Table

    reg = _registry(mlruns)
    aliases = reg.aliases()
    columns = {"oot.roc_auc": "ROC-AUC", "oot.recall_at_1pct_fpr": "recall@1% FPR",
               "oot.recall_at_0.1pct_fpr": "recall@0.1% FPR", "oot.organic_blocked": "organic blocked",
               "adaptive.recall_at_1pct_fpr": "adaptive recall@1%", "cold_start.organic_allowed": "cold start allowed"}
    rows = []
    for v in reg.versions():
        version = str(v.version)
        rows.append({"version": version, "aliases": [a for a, ver in aliases.items() if ver == version],
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.creation_timestamp / 1000)),
                     "holdout_kind": v.tags.get("holdout_kind", "legacy"),
                     "thresholds": reg.version_thresholds(version),
                     "holdout": {k: float(v.tags[f"holdout.{k}"]) for k in columns if f"holdout.{k}" in v.tags}})
    if json_out:
        import json

        typer.echo(json.dumps({"mlruns": str(reg.root), "models": rows}, indent=2))
        return
    t = Table(title="distillguard models")
    for c in ("version", "aliases", "created", "hold-out", "review / block above", *columns.values()):
        t.add_column(c)
    for r in rows:
        th = r["thresholds"]
        t.add_row(r["version"], ", ".join(r["aliases"]), r["created"][:16].replace("T", " "), r["holdout_kind"],
                  f"{th['review']:.4f} / {th['block']:.4f}" if th else "-",
                  *(f"{r['holdout'][k]:.3f}" if k in r["holdout"] else "-" for k in columns))
    _console().print(t)


@app.command()
def promote(version: Annotated[str, typer.Argument(help="version to make champion")],
            mlruns: MlrunsDir = Path("mlruns")) -> None:
    """Make VERSION the champion by hand (logged in the champion history)."""
    from distillguard.training.registry import RegistryError

    try:
        _registry(mlruns).set_champion(version, reason="promoted by hand")
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"champion -> v{version}")


@app.command()
def rollback(mlruns: MlrunsDir = Path("mlruns")) -> None:
    """Move the champion back to the version it replaced (logged)."""
    from distillguard.training.registry import RegistryError

    try:
        old, new = _registry(mlruns).rollback()
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"champion v{old} -> v{new}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    state: Annotated[Optional[Path], typer.Option("--state", help="folder of the durable event log and scores "
                                                  "[default: runs/serve]")] = None,
    mlruns: Annotated[Optional[Path], typer.Option("--mlruns", help="MLflow folder [default: mlruns]")] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="embedding store folder")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="DISTILLGUARD_CONFIG",
                                                   help="JSON file of serving settings (each can also be set "
                                                   "as DISTILLGUARD_<FIELD>, which wins over the file)")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve the gateway scoring endpoint (FastAPI on uvicorn) from the champion model."""
    from pydantic import ValidationError

    from distillguard.serving.server import ServeConfigError
    from distillguard.serving.server import serve as run_server

    try:
        run_server(host, port, state, mlruns, store, config, log_level=log_level)
    except (ServeConfigError, ValidationError, OSError, ValueError) as exc:
        _fail(str(exc))


workbench_app = typer.Typer(help="Analyst workbench snapshots (what `inspect`, `neighbours`, `campaigns` "
                              "and the /ui pages read).", no_args_is_help=True)
app.add_typer(workbench_app, name="workbench")

DEFAULT_WORKBENCH = Path("runs/serve/workbench")
EventsOpt = Annotated[Optional[Path], typer.Option("--events", help="events file: score it and build (or reuse) a "
                                                   "snapshot of its accounts")]
WorkbenchOpt = Annotated[Optional[Path], typer.Option("--workbench", help="snapshot folder [default: the one "
                                                      "built for --events, else runs/serve/workbench]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
RedactOpt = Annotated[bool, typer.Option("--redact", help="show prompts as hash and length only")]


def _build_workbench(out: Path, events_df, source: dict, model_uri: str, mlruns: Path, store: Path,
                     stored=None) -> None:
    from distillguard.training.bundle import BundleError
    from distillguard.training.registry import RegistryError
    from distillguard.training.train_job import load_bundle
    from distillguard.workbench.snapshot import SnapshotError, build_snapshot

    try:
        bundle = load_bundle(_registry(mlruns), model_uri)
        ctx = bundle.open_embeddings(store)
        build_snapshot(events_df, bundle, ctx, out, model_version=str(bundle.info.get("version", "?")),
                       source=source, stored=stored, log=lambda m: typer.echo(m, err=True))
    except (RegistryError, BundleError, SnapshotError) as exc:
        _fail(str(exc))


@workbench_app.command("build")
def workbench_build(
    out: Annotated[Path, typer.Option("--out", help="snapshot folder (replaced whole)")] = DEFAULT_WORKBENCH,
    events: Annotated[Optional[Path], typer.Option("--events", help="events file to score")] = None,
    state: Annotated[Optional[Path], typer.Option("--state", help="a `serve` state folder: its event log, "
                                                  "with the scores the service gave")] = None,
    model_uri: ModelUri = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    on_bad_rows: OnBadRows = "fail",
) -> None:
    """Build a workbench snapshot from an events file or a running service's state."""
    from distillguard.workbench.snapshot import SnapshotError, events_digest
    from distillguard.workbench.sources import events_from_state, scores_from_state

    if (events is None) == (state is None):
        _fail("give exactly one of --events FILE or --state FOLDER")
    if events is not None:
        _build_workbench(out, _read_events_or_fail(events, on_bad_rows),
                         {"events": str(events), "digest": events_digest(events), "model_uri": model_uri},
                         model_uri, mlruns, store)
        return
    try:
        frame, stored = events_from_state(state), scores_from_state(state)
    except SnapshotError as exc:
        _fail(str(exc))
    _build_workbench(out, frame, {"state": str(state)}, model_uri, mlruns, store, stored)


def _open_workbench(events: Optional[Path], workbench: Optional[Path], model_uri: str, mlruns: Path, store: Path,
                    redact: bool):
    """The snapshot to read: built for --events when missing or stale, else --workbench's."""
    import json as _json

    from distillguard.workbench.queries import Workbench, WorkbenchError
    from distillguard.workbench.snapshot import events_digest

    if events is not None:
        if not events.exists():
            _fail(f"--events {events}: no such file")
        digest = events_digest(events)
        folder = workbench or Path("runs/workbench") / digest
        try:
            meta = _json.loads((folder / "meta.json").read_text())
            fresh = meta.get("source", {}).get("digest") == digest and meta.get("source", {}).get("model_uri") == model_uri
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            typer.echo(f"building a workbench snapshot of {events} in {folder} (reused next time)", err=True)
            _build_workbench(folder, _read_events_or_fail(events, "fail"),
                             {"events": str(events), "digest": digest, "model_uri": model_uri},
                             model_uri, mlruns, store)
    else:
        folder = workbench or DEFAULT_WORKBENCH
    try:
        return Workbench.open(folder, redact=redact, store_dir=store)
    except WorkbenchError as exc:
        _fail(f"{exc}; or pass --events FILE")


@app.command()
def inspect(
    account_id: Annotated[str, typer.Argument(help="the account to inspect")],
    events: EventsOpt = None,
    workbench: WorkbenchOpt = None,
    model_uri: ModelUri = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    json_out: JsonOpt = False,
    redact: RedactOpt = False,
) -> None:
    """An account's score, reasons, prompt clusters and their nearest organic and other-account prompts."""
    from rich.console import Console

    from distillguard.workbench.terminal import render_account, to_json

    wb = _open_workbench(events, workbench, model_uri, mlruns, store, redact)
    try:
        view = wb.account(account_id)
    except KeyError:
        _fail(f"account {account_id!r} is not in the snapshot {wb.folder} ({wb.info['accounts']:,} accounts)")
    if json_out:
        typer.echo(to_json(view))
    else:
        render_account(view, Console(), wb.info.get("thresholds"), wb.info.get("model_version"))


@app.command()
def neighbours(
    text: Annotated[str, typer.Argument(help="a prompt")],
    k: Annotated[int, typer.Option("--k", help="neighbours among accounts' prompts")] = 10,
    events: EventsOpt = None,
    workbench: WorkbenchOpt = None,
    model_uri: ModelUri = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    json_out: JsonOpt = False,
    redact: RedactOpt = False,
) -> None:
    """The prompts nearest a text, and the accounts that sent them."""
    from rich.console import Console

    from distillguard.workbench.terminal import render_neighbours, to_json

    wb = _open_workbench(events, workbench, model_uri, mlruns, store, redact)
    hits = wb.search(text, k=k)
    if json_out:
        typer.echo(to_json(hits))
    else:
        render_neighbours(text, hits, Console())


@app.command()
def campaigns(
    min_size: Annotated[int, typer.Option("--min-size", help="smallest component shown")] = 2,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    events: EventsOpt = None,
    workbench: WorkbenchOpt = None,
    model_uri: ModelUri = "models:/distillguard@champion",
    mlruns: MlrunsDir = Path("mlruns"),
    store: StoreDir = Path("runs/embeddings"),
    json_out: JsonOpt = False,
) -> None:
    """Campaign groups: accounts linked by shared near-duplicates and wrapper skeletons (communities of the
    coordination graph), with member scores, shared infrastructure and a representative skeleton."""
    from rich.console import Console

    from distillguard.workbench.terminal import render_campaigns, to_json

    wb = _open_workbench(events, workbench, model_uri, mlruns, store, False)
    found = wb.campaigns(min_size=min_size, limit=limit, members=500 if json_out else 10)
    if json_out:
        typer.echo(to_json(found))
    else:
        render_campaigns(found, Console(width=200))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for everything the run writes")] = Path("runs/demo"),
    accounts: Annotated[int, typer.Option("--accounts", help="accounts to simulate for training")] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    mlruns: MlrunsDir = Path("mlruns"),
) -> None:
    """The main job end to end on the embedded defaults: simulate six weeks of labelled traffic,
    validate it, train on the first four weeks and judge the model on the last two as a whole
    population (out of time), on its adaptive copy and on its cold-start cut, register it (promoted
    only through the gate), then score a fresh week after the window with accounts the model never saw."""
    from datetime import timedelta

    from distillguard.data.readers import read_events, read_labels
    from distillguard.data.simulator import write_simulation
    from distillguard.data.simulator_config import SimulatorConfig
    from distillguard.data.validation import format_report, validate_files
    from distillguard.features.embedding import DEFAULT_PROFILE
    from distillguard.training.train_job import TrainConfig, load_bundle, run_training
    from distillguard.workbench.snapshot import build_snapshot, events_digest

    t0 = time.perf_counter()
    world = SimulatorConfig(accounts=accounts, seed=seed)
    events, labels, rows = write_simulation(world, out / "sim", progress=True)
    typer.echo(f"[1/5] simulated {rows:,} events for {accounts:,} accounts -> {events.parent} "
               f"({time.perf_counter() - t0:.0f} s)")
    typer.echo("[2/5] " + format_report(validate_files(events, labels)))
    store = out / "embeddings"
    reg = _registry(mlruns)
    result = run_training(read_events(events), read_labels(labels), reg,
                          TrainConfig(seed=seed, profile=DEFAULT_PROFILE, store_dir=store),
                          log=lambda m: typer.echo(f"      {m}"))
    typer.echo(f"[3/5] trained ({result.seconds:.0f} s):")
    _print_training(result)
    week_after = SimulatorConfig(accounts=max(100, accounts // 5), seed=seed + 1000, days=7, release_day=3,
                                 start=world.start + timedelta(days=world.days))
    fresh, _, _ = write_simulation(week_after, out / "fresh", progress=True)
    bundle = load_bundle(reg, "models:/distillguard@champion")
    # one pass over the fresh accounts gives both their scores and the analyst snapshot
    meta, table = build_snapshot(read_events(fresh), bundle, bundle.open_embeddings(store), out / "workbench",
                                 model_version=str(bundle.info["version"]),
                                 source={"events": str(fresh), "digest": events_digest(fresh),
                                         "model_uri": "models:/distillguard@champion"})
    table.to_csv(out / "scores.csv", index=False)
    counts = table["decision"].value_counts().to_dict()
    typer.echo(f"[4/5] scored {len(table):,} unseen accounts of the week after with champion "
               f"v{bundle.info['version']}: "
               + ", ".join(f"{counts.get(d, 0):,} {d}" for d in ("allow", "review", "block"))
               + f" -> {out / 'scores.csv'}")
    top = table.sort_values("score", ascending=False)["account_id"].iloc[0]
    typer.echo(f"[5/5] analyst snapshot of {meta['accounts']:,} accounts and {meta['components']:,} campaign groups "
               f"-> {out / 'workbench'} (total {time.perf_counter() - t0:.0f} s); look at the top account with\n"
               f"      distillguard inspect {top} --workbench {out / 'workbench'} --store {store}")


labels_app = typer.Typer(help="Labels from analyst verdicts.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("export")
def labels_export(
    state: Annotated[Path, typer.Option("--state", help="a `serve` state folder (its verdicts.sqlite and event log)",
                                        callback=_a_folder)],
    out: Annotated[Path, typer.Option("--out", help="labels file to write (.csv or .parquet)")],
    events_out: Annotated[Optional[Path], typer.Option("--events-out", help="also write the events of the "
                                                       "labelled accounts from the event log (.parquet)")] = None,
) -> None:
    """Write the analyst verdicts in force as labels in the traffic contract (1 harvesting, 0 organic)."""
    from distillguard.serving.verdict_export import ExportError, export_labels

    try:
        r = export_labels(state, out, events_out)
    except ExportError as exc:
        _fail(str(exc))
    if r.no_events:
        shown = ", ".join(r.no_events[:5]) + (" ..." if len(r.no_events) > 5 else "")
        typer.echo(f"warning: {len(r.no_events)} verdicts left out of the labels: the event log holds no event of "
                   f"their accounts ({shown})", err=True)
    typer.echo(f"wrote {r.labels:,} labels ({r.harvesting:,} harvesting, {r.organic:,} organic) to {out}"
               + (f" and {r.events:,} events to {events_out}" if r.events is not None else ""))


@app.command()
def purge(
    account: Annotated[list[str], typer.Option("--account", help="account id to delete (repeat for several)")],
    state: Annotated[Optional[Path], typer.Option("--state", help="a `serve` state folder (stop the server first)",
                                                  callback=_a_folder)] = None,
    workbench: Annotated[Optional[Path], typer.Option("--workbench", help="a workbench snapshot folder",
                                                      callback=_a_folder)] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="embedding store folder: drop the vectors of "
                                                  "texts no remaining account sent", callback=_a_folder)] = None,
) -> None:
    """Delete accounts' prompts (a deletion request) from the state and snapshots, and compact the files."""
    import sqlite3

    from distillguard.purge import PurgeError
    from distillguard.purge import purge as run_purge

    try:
        r = run_purge(account, state=state, workbench=workbench, store=store)
    except (PurgeError, sqlite3.Error, OSError) as exc:
        _fail(str(exc))
    if not r.anything:
        _fail(f"no data of {', '.join(account)} found in the places given")
    typer.echo(f"purged {', '.join(account)}: {r.events:,} events and {r.scores:,} scores from the state, "
               f"{r.snapshot_accounts:,} accounts, {r.snapshot_prompts:,} prompts and {r.snapshot_texts:,} texts "
               f"from the snapshot, {r.store_vectors:,} store vectors; compacted {len(r.compacted)} files")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

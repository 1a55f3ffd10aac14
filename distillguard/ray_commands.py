"""`features` and `score` with `--engine ray`: the same outputs as the local engine, computed by
`features.engine_ray` on a Ray cluster (started locally unless `--ray-address` names one). Ray is an
optional extra (`pip install 'distillguard[ray]'`); it is imported only here."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

ENGINES = ("local", "ray")


def check_engine(value: str) -> str:
    """The `--engine` option: local or ray (ray needs the extra installed)."""
    import typer

    if value not in ENGINES:
        raise typer.BadParameter(f"unknown engine {value!r}; choose local or ray")
    if value == "ray" and importlib.util.find_spec("ray") is None:
        raise typer.BadParameter("the ray engine needs Ray: pip install 'distillguard[ray]'")
    return value


def _one_line(exc: BaseException) -> str:
    """A Ray task's failure as the one line the user needs (the cause, without Ray's traceback)."""
    from distillguard.data.errors import ContractError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ContractError):
            return str(seen).splitlines()[-1]
        seen = seen.__cause__ or seen.__context__
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_input(events: Path) -> None:
    """Refuse what the ray engine cannot read before starting Ray (the footers only are read)."""
    from distillguard.data.parquet_dataset import event_parts

    if not (events.is_dir() or events.suffix.lower() == ".parquet"):
        raise ValueError(f"{events}: the ray engine reads a Parquet file or a folder of Parquet files")
    event_parts(events)


def _stage_log(line: str) -> None:
    print(f"[ray] {line}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 1. Not `typer.Exit`: the commands' own handlers catch RuntimeError,
    which `typer.Exit` is, and would print a second, empty error."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def ray_features_table(events: Path, state, store: Path, ray_address: str | None, on_bad_rows: str):
    """The feature table of `events` on Ray (a `RayFeatureRun`); any failure is one line on stderr, exit 1."""
    try:
        _check_input(events)
        from distillguard.features.engine_ray import ray_feature_table, start_ray, stop_ray
    except ValueError as exc:
        fail(str(exc))
    started = False
    try:
        started = start_ray(ray_address)
        return ray_feature_table(events, state, store, on_bad_rows=on_bad_rows, log=_stage_log)
    except Exception as exc:  # noqa: BLE001 - a Ray task's error arrives wrapped; the user gets its cause
        fail(_one_line(exc))
    finally:
        stop_ray(started)


def features_on_ray(events: Path, out: Path, state, store: Path, ray_address: str | None, on_bad_rows: str,
                    echo: Callable[[str], None]) -> None:
    t0 = time.perf_counter()
    run = ray_features_table(events, state, store, ray_address, on_bad_rows)
    table = run.features
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out) if out.suffix == ".csv" else table.to_parquet(out)
    echo(f"{len(table):,} accounts x {table.shape[1]} features -> {out} ({time.perf_counter() - t0:.1f} s, ray: "
         f"{run.events:,} events, {run.distinct_texts:,} distinct texts)")


def scored_on_ray(events: Path, bundle, store: Path, ray_address: str | None, on_bad_rows: str):
    """Every account of `events` scored with `bundle` (a `ScoredAccounts`, as the local engine returns it):
    the features on Ray, the model on the driver (one row per account)."""
    from distillguard.training.inference import Inference

    run = ray_features_table(events, bundle.state, store, ray_address, on_bad_rows)
    return Inference(bundle, None).score_features(run.features)  # type: ignore[arg-type]  # nothing to embed

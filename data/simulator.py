"""The labelled-traffic simulator: organic users, hard benign scripts and harvesting campaigns.

`plan_accounts` (sim_planning) decides who exists (cheap, all in memory); `iter_simulation_chunks`
turns the plan into events a chunk of accounts at a time (sim_accounts), so memory is bounded by
the chunk, not the run; `write_simulation` streams the chunks to `events.parquet` and writes
`labels.csv`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.data.contract import EVENTS_SCHEMA, LABELS_SCHEMA
from distillguard.data.sim_accounts import INTENT, simulate_account
from distillguard.data.sim_infrastructure import campaign_pools
from distillguard.data.sim_planning import HARVEST, AccountPlan, plan_accounts
from distillguard.data.simulator_config import SimulatorConfig

__all__ = ["HARVEST", "INTENT", "AccountPlan", "Simulation", "SimulatorConfig", "iter_simulation_chunks",
           "labels_frame", "plan_accounts", "simulate", "simulate_account", "write_simulation"]


@dataclass(frozen=True)
class Simulation:
    events: pd.DataFrame  # contract columns only
    labels: pd.DataFrame
    intent: pd.Series  # aligned with events: capability / hydra / follow_up / organic / popular / ...


def labels_frame(plans: list[AccountPlan]) -> pd.DataFrame:
    return pd.DataFrame({"account_id": [p.account_id for p in plans],
                         "label": np.array([p.label for p in plans], dtype="int8"),
                         "campaign": [p.campaign_label for p in plans]})


def iter_simulation_chunks(config: SimulatorConfig, plans: list[AccountPlan] | None = None,
                           on_account: Callable[[], None] | None = None) -> Iterator[pd.DataFrame]:
    """Events of consecutive accounts, about `config.chunk_rows` rows at a time, each chunk sorted by time."""
    if plans is None:
        plans, _ = plan_accounts(config)
    group_sizes: dict[str, int] = {}
    for p in plans:
        if p.campaign:
            group_sizes[p.campaign.name] = p.group_size
    pools = {p.campaign.name: campaign_pools(config.seed, p.campaign, group_sizes[p.campaign.name])
             for p in plans if p.campaign}
    frames: list[pd.DataFrame] = []
    rows = 0
    for p in plans:
        frames.append(simulate_account(p, config, pools.get(p.campaign.name) if p.campaign else None))
        rows += len(frames[-1])
        if on_account:
            on_account()
        if rows >= config.chunk_rows:
            yield pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)
            frames, rows = [], 0
    if frames:
        yield pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)


def simulate(config: SimulatorConfig) -> Simulation:
    """The whole simulation in memory (for tests and small benchmarks)."""
    plans, _ = plan_accounts(config)
    events = pd.concat(list(iter_simulation_chunks(config, plans)), ignore_index=True)
    return Simulation(events.drop(columns=[INTENT]), labels_frame(plans), events[INTENT])


def write_simulation(config: SimulatorConfig, out_dir: Path, *, progress: bool = False) -> tuple[Path, Path, int]:
    """Stream the simulation to `out_dir/events.parquet` and `out_dir/labels.csv`; return paths and row count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plans, _ = plan_accounts(config)
    events_path, labels_path = out_dir / "events.parquet", out_dir / "labels.csv"
    tmp = events_path.with_suffix(".parquet.tmp")
    rows = 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # a bar only on a terminal: even a disabled rich bar leaves a blank line in a log
    bar = (Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True) if progress and sys.stdout.isatty() else None)
    with bar or nullcontext():
        task = bar.add_task("accounts", total=len(plans)) if bar else None
        with pq.ParquetWriter(tmp, EVENTS_SCHEMA, compression="zstd") as writer:
            for chunk in iter_simulation_chunks(config, plans,
                                                on_account=(lambda: bar.advance(task)) if bar else None):
                writer.write_table(pa.Table.from_pandas(chunk.drop(columns=[INTENT]), schema=EVENTS_SCHEMA,
                                                        preserve_index=False))
                rows += len(chunk)
    tmp.replace(events_path)
    labels = pa.Table.from_pandas(labels_frame(plans), schema=LABELS_SCHEMA, preserve_index=False)
    labels.to_pandas().to_csv(labels_path, index=False)
    return events_path, labels_path, rows


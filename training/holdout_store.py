"""The frozen hold-out on disk, under `<mlruns>/holdout/`: made from the first training data and
kept, so that every later candidate and the champion are judged on the same population.

Files: `events.parquet` (the population, scored together), `labels.csv` (its labelled accounts with
the `evaluated` flag) and `holdout.json` (kind, cutoff, note). A hold-out left by an older version
(a random in-period split, no `holdout.json`) is moved aside to `holdout.legacy-N/` and replaced.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from distillguard.training.holdouts import Holdout, HoldoutRules, out_of_time_holdout

HOLDOUT_FORMAT = "distillguard-holdout/v2"


def _save(holdout: Holdout, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    holdout.population.to_parquet(tmp / "events.parquet")
    holdout.labels.to_csv(tmp / "labels.csv", index=False)
    (tmp / "holdout.json").write_text(json.dumps({
        "format": HOLDOUT_FORMAT, "kind": holdout.kind, "note": holdout.note, "info": holdout.info,
        "cutoff": holdout.cutoff.isoformat() if holdout.cutoff is not None else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    tmp.rename(folder)


def _load(folder: Path) -> Holdout:
    meta = json.loads((folder / "holdout.json").read_text())
    if meta.get("format") != HOLDOUT_FORMAT:
        raise ValueError(f"{folder}: unknown hold-out format {meta.get('format')!r}")
    labels = pd.read_csv(folder / "labels.csv", dtype={"account_id": str, "campaign": str})
    labels["evaluated"] = labels["evaluated"].astype(bool)
    cutoff = pd.Timestamp(meta["cutoff"]) if meta.get("cutoff") else None
    return Holdout(meta["kind"], pd.read_parquet(folder / "events.parquet"), labels, cutoff, meta["note"],
                   meta.get("info", {}))


def load_or_freeze(root: Path, events: pd.DataFrame, labels: pd.DataFrame, rules: HoldoutRules, *, seed: int,
                   log: Callable[[str], None] = print) -> tuple[Holdout, bool]:
    """The frozen hold-out under `root/holdout`, made from `events`/`labels` on first use.
    Returns (hold-out, created now)."""
    folder = Path(root) / "holdout"
    if (folder / "holdout.json").exists():
        return _load(folder), False
    if folder.exists():  # an older version's random split: keep it, out of the way
        n = 1
        while folder.with_name(f"holdout.legacy-{n}").exists():
            n += 1
        folder.rename(folder.with_name(f"holdout.legacy-{n}"))
        log(f"the hold-out frozen by an older version (a random in-period split) moved to holdout.legacy-{n}; "
            "a new one is frozen and the champion is re-scored on it")
    holdout = out_of_time_holdout(events, labels, rules, seed=seed)
    _save(holdout, folder)
    return holdout, True

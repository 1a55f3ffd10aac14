"""The frozen hold-out on disk, under `<mlruns>/holdout/`: made from the first training data and
kept, so that every later candidate and the champion are judged on the same population.

Files: `events.parquet` (the population, scored together), `labels.csv` (its labelled accounts with
the `evaluated` flag) and `holdout.json` (kind, cutoff, note, the campaigns of the data it was frozen
from). The core never changes; newly labelled campaigns' held-out accounts are kept beside it in
`extension/` (the same two files and `extension.json`) and join it on load (`holdout_extension`).
A hold-out left by an older version (a random in-period split, no `holdout.json`) is moved aside to
`holdout.legacy-N/` and replaced.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from distillguard.training.holdout_extension import CampaignExtension, with_extension
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


def _read_labels(path: Path) -> pd.DataFrame:
    labels = pd.read_csv(path, dtype={"account_id": str, "campaign": str})
    labels["evaluated"] = labels["evaluated"].astype(bool)
    return labels


def _load(folder: Path) -> Holdout:
    meta = json.loads((folder / "holdout.json").read_text())
    if meta.get("format") != HOLDOUT_FORMAT:
        raise ValueError(f"{folder}: unknown hold-out format {meta.get('format')!r}")
    cutoff = pd.Timestamp(meta["cutoff"]) if meta.get("cutoff") else None
    core = Holdout(meta["kind"], pd.read_parquet(folder / "events.parquet"), _read_labels(folder / "labels.csv"),
                   cutoff, meta["note"], meta.get("info", {}))
    ext = folder / "extension"
    if not (ext / "extension.json").exists():
        return core
    added = [CampaignExtension(**e) for e in json.loads((ext / "extension.json").read_text())["campaigns"]]
    return with_extension(core, pd.read_parquet(ext / "events.parquet"), _read_labels(ext / "labels.csv"), added)


def save_extension(root: Path, events: pd.DataFrame, labels: pd.DataFrame, added: list[CampaignExtension]) -> None:
    """Add newly labelled campaigns' held-out accounts (`events`, `labels` with `evaluated`) to the frozen
    hold-out under `root/holdout`, beside the campaigns added before (the core is left as it is)."""
    folder = Path(root) / "holdout" / "extension"
    campaigns = []
    if (folder / "extension.json").exists():
        campaigns = json.loads((folder / "extension.json").read_text())["campaigns"]
        events = pd.concat([pd.read_parquet(folder / "events.parquet"), events], ignore_index=True)
        labels = pd.concat([_read_labels(folder / "labels.csv"), labels], ignore_index=True)
    tmp = folder.with_name("extension.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    events.to_parquet(tmp / "events.parquet")
    labels.to_csv(tmp / "labels.csv", index=False)
    (tmp / "extension.json").write_text(json.dumps({
        "format": HOLDOUT_FORMAT, "campaigns": campaigns + [a.to_dict() for a in added],
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    if folder.exists():
        old = folder.with_name("extension.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)


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
    # what a later run compares its labels with to tell a newly labelled campaign
    holdout.info["known_campaigns"] = sorted(set(labels["campaign"].astype(str)))
    _save(holdout, folder)
    return holdout, True

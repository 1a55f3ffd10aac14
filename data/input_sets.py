"""Several events or labels files, or folders of them, read as one set (e.g. the first campaign data
and the verdicts exported from the gateway later).

Events: the files' rows together; a row repeated in two files (same account, time and prompt) is
kept once and counted. Labels: an account labelled in two files takes the label of the later file
(a verdict corrects an older label) and is counted; within one file a repeat stays a bad row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .contract import SUPPORTED_SUFFIXES
from .errors import ContractError


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders as their contract files (sorted by name; rejects side files skipped)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUPPORTED_SUFFIXES
                           and not p.name.endswith(".rejected.jsonl"))
            if not found:
                raise ContractError(str(path), f"the folder holds no {', '.join(SUPPORTED_SUFFIXES)} file")
            out.extend(found)
        else:
            out.append(path)
    return out


@dataclass(frozen=True)
class Combined:
    frame: pd.DataFrame
    repeated: int  # events kept once / accounts relabelled by a later file


def combine_events(frames: Sequence[pd.DataFrame]) -> Combined:
    if len(frames) == 1:
        return Combined(frames[0], 0)
    both = pd.concat(frames, ignore_index=True)
    kept = both.drop_duplicates(["account_id", "ts", "prompt"], ignore_index=True)
    return Combined(kept, len(both) - len(kept))


def combine_labels(frames: Sequence[pd.DataFrame]) -> Combined:
    if len(frames) == 1:
        return Combined(frames[0], 0)
    both = pd.concat(frames, ignore_index=True)
    kept = both.drop_duplicates("account_id", keep="last", ignore_index=True)
    return Combined(kept, len(both) - len(kept))

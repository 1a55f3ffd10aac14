"""`distillguard labels export`: the analyst verdicts of a serve state folder as a labels file in
the traffic contract, and the events of those accounts from the state's event log as an events
file, ready for `distillguard validate` and `train`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.data.contract import EVENT_COLUMNS, EVENTS_SCHEMA, LABELS_SCHEMA
from distillguard.serving.verdicts import VERDICT_LABEL, VerdictEntry, current_verdicts, read_verdicts

_EVENT_SQL = ("SELECT account_id, ts_us, prompt, conversation_id, model, ip, asn, payment_fingerprint, user_agent "
              "FROM events WHERE account_id IN ({}) ORDER BY id")
_CHUNK = 500  # accounts per query (SQLite's bound-parameter limit is far above)


class ExportError(ValueError):
    """A state folder or output path that cannot be exported (one-line message)."""


@dataclass
class ExportResult:
    labels: int  # rows written
    harvesting: int
    organic: int
    events: int | None = None  # rows written to --events-out (None: not asked)
    no_events: list[str] = field(default_factory=list)  # verdicts left out: their accounts have no logged events


def labels_from_verdicts(entries: Sequence[VerdictEntry]) -> pd.DataFrame:
    """The verdicts in force after `entries` as a labels frame (account_id, label 1 harvesting / 0
    organic, campaign), in the order they were set."""
    active = sorted(current_verdicts(entries).values(), key=lambda e: e.id)
    frame = pd.DataFrame({"account_id": [e.account_id for e in active],
                          "label": pd.array([VERDICT_LABEL[e.verdict] for e in active], dtype="int8"),
                          "campaign": [e.campaign for e in active]})
    return pa.Table.from_pandas(frame, schema=LABELS_SCHEMA, preserve_index=False).to_pandas()


def events_of(state: Path, accounts: Sequence[str]) -> pd.DataFrame:
    """The logged events of `accounts` (read-only, in arrival order) as a contract-shaped frame."""
    path = Path(state) / "events.sqlite"
    if not path.exists():
        raise ExportError(f"{path}: not found (is --state the folder `distillguard serve` writes?)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        parts = [pd.read_sql_query(_EVENT_SQL.format(",".join("?" * len(chunk))), conn, params=list(chunk))
                 for chunk in (accounts[i:i + _CHUNK] for i in range(0, len(accounts), _CHUNK))]
    finally:
        conn.close()
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["account_id", "ts_us", *EVENT_COLUMNS[2:]])
    frame.insert(1, "ts", pd.to_datetime(frame.pop("ts_us").astype("int64"), unit="us", utc=True))
    frame["asn"] = frame["asn"].astype("Int64")
    return frame[list(EVENT_COLUMNS)]


def _check_out(path: Path, option: str, suffixes: tuple[str, ...]) -> None:
    if path.is_dir():
        raise ExportError(f"{option} {path} is a folder; give a file path")
    if path.suffix not in suffixes:
        raise ExportError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")


def export_labels(state: Path, out: Path, events_out: Path | None = None) -> ExportResult:
    """Write the verdicts in force to `out` (.csv or .parquet) and, when `events_out` is given, the
    events of those accounts to it (.parquet). With events, a verdict on an account the log holds no
    event of is left out of the labels (the contract refuses a label without events) and reported."""
    _check_out(out, "--out", (".csv", ".parquet"))
    if events_out is not None:
        _check_out(events_out, "--events-out", (".parquet",))
    try:
        labels = labels_from_verdicts(read_verdicts(state))
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from None
    except sqlite3.Error as exc:
        raise ExportError(f"{state}/verdicts.sqlite: {exc}") from None
    result = ExportResult(labels=0, harvesting=0, organic=0)
    if events_out is not None:
        events = events_of(state, list(labels["account_id"]))
        seen = set(events["account_id"])
        result.no_events = [a for a in labels["account_id"] if a not in seen]
        labels = labels[labels["account_id"].isin(seen)]
        events_out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(events, schema=EVENTS_SCHEMA, preserve_index=False), events_out,
                       compression="zstd")
        result.events = len(events)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        labels.to_csv(out, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(labels, schema=LABELS_SCHEMA, preserve_index=False), out)
    result.labels = len(labels)
    result.harvesting = int((labels["label"] == 1).sum())
    result.organic = result.labels - result.harvesting
    return result

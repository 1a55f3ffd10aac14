"""Where a snapshot's accounts come from: an events file (scored at build time), or the durable
state of a running `distillguard serve` (its event log, and the scores its worker gave)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from distillguard.workbench.snapshot import SnapshotError, StoredScores

_EVENT_COLUMNS = "account_id, ts_us, prompt, conversation_id, model, ip, asn, payment_fingerprint, user_agent"


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise SnapshotError(f"{path}: not found (is --state the folder `distillguard serve` writes?)")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def events_from_state(state: Path) -> pd.DataFrame:
    """Every acknowledged event of a serve state folder, as a contract-shaped frame."""
    conn = _connect_ro(Path(state) / "events.sqlite")
    try:
        frame = pd.read_sql_query(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY id", conn)
    finally:
        conn.close()
    if frame.empty:
        raise SnapshotError(f"{state}: the event log holds no events yet")
    frame.insert(1, "ts", pd.to_datetime(frame.pop("ts_us"), unit="us", utc=True))
    frame["asn"] = frame["asn"].astype("Int64")
    return frame


def scores_from_state(state: Path) -> StoredScores:
    """The scores the service's worker stored (accounts it has not scored yet are absent)."""
    path = Path(state) / "scores.sqlite"
    if not path.exists():
        return StoredScores(pd.DataFrame(columns=["account_id", "score", "decision", "reasons", "model_version"]))
    conn = _connect_ro(path)
    try:
        frame = pd.read_sql_query("SELECT account_id, score, decision, reasons, model_version FROM scores "
                                  "WHERE score IS NOT NULL", conn)
    finally:
        conn.close()
    frame["reasons"] = [json.loads(r) if r else [] for r in frame["reasons"]]
    frame["model_version"] = frame["model_version"].astype(str)
    return StoredScores(frame)

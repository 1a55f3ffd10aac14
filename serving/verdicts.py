"""Analyst verdicts: an analyst confirms an account as harvesting or clears it as organic, and the
gateway answers by the verdict at once.

The verdicts live in `verdicts.sqlite` in the state folder, written only by the server process (the
one that answers the gateway), as an append-only log: each entry sets a verdict or undoes the
account's current one, with who (the analyst key's name, never the key) and when. The server keeps
the current verdict of every account in a dict mirrored from that log (read once at start, updated
after each commit), so the hot path pays one dict lookup. `apply_verdict` is the pure overlay of a
verdict on the model's answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from distillguard.serving.schemas import AnalystVerdictInfo, Verdict
from distillguard.serving.state_store import _Db

VerdictKind = Literal["harvesting", "organic"]
VERDICT_DECISION = {"harvesting": "block", "organic": "allow"}
VERDICT_LABEL = {"harvesting": 1, "organic": 0}
REASON = "analyst verdict"
ORGANIC_CAMPAIGN = "organic"  # the labels contract's campaign of a cleared account when none is given

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdict_log(
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, action TEXT NOT NULL CHECK (action IN ('set', 'undo')),
    verdict TEXT CHECK (verdict IN ('harvesting', 'organic')), campaign TEXT, note TEXT,
    by TEXT NOT NULL, at REAL NOT NULL, via TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verdict_log_by_account ON verdict_log(account_id, id);
"""
_COLUMNS = "id, account_id, action, verdict, campaign, note, by, at, via"


@dataclass(frozen=True)
class VerdictEntry:
    """One entry of the log. `action` "set" records `verdict`; "undo" withdraws the account's
    current verdict (its `verdict` and `campaign` repeat the one withdrawn)."""

    id: int
    account_id: str
    action: Literal["set", "undo"]
    verdict: VerdictKind | None
    campaign: str | None
    note: str | None
    by: str
    at: float
    via: str  # "api" or "ui"

    def as_dict(self) -> dict:
        """JSON-ready: `at` as ISO 8601 UTC."""
        return {**asdict(self), "at": datetime.fromtimestamp(self.at, UTC).isoformat()}


def apply_verdict(model: Verdict, active: VerdictEntry | None) -> Verdict:
    """The gateway's answer: the model's, or, when an analyst verdict is in force, the verdict's
    decision with the reason "analyst verdict" first, the model's score, decision and reasons beside it."""
    if active is None:
        return model
    return model.model_copy(update={
        "decision": VERDICT_DECISION[active.verdict], "model_decision": model.decision,
        "reasons": [REASON, *model.reasons],
        "analyst_verdict": AnalystVerdictInfo(verdict=active.verdict, campaign=active.campaign, by=active.by,
                                              at=datetime.fromtimestamp(active.at, UTC))})


def current_verdicts(entries: Sequence[VerdictEntry]) -> dict[str, VerdictEntry]:
    """Each account's verdict in force after `entries` (in log order): its last "set", unless undone since."""
    active: dict[str, VerdictEntry] = {}
    for e in entries:
        if e.action == "set":
            active[e.account_id] = e
        else:
            active.pop(e.account_id, None)
    return active


class VerdictStore(_Db):
    """The verdict log and its in-memory mirror. One writing process: the server."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        super().__init__(Path(folder) / "verdicts.sqlite", _SCHEMA, synchronous=synchronous, autocheckpoint=True)
        self._lock = threading.Lock()
        self._active = current_verdicts(self.history())

    # -- reads (the hot path: a dict lookup) ---------------------------------------------------------

    def active(self, account_id: str) -> VerdictEntry | None:
        return self._active.get(account_id)

    def all_active(self) -> list[VerdictEntry]:
        return sorted(self._active.values(), key=lambda e: e.id)

    def history(self, account_id: str | None = None, limit: int | None = None) -> list[VerdictEntry]:
        """Log entries in order (all, or one account's); `limit`: the newest that many."""
        where, args = ("WHERE account_id = ?", [account_id]) if account_id is not None else ("", [])
        if limit is None:
            sql = f"SELECT {_COLUMNS} FROM verdict_log {where} ORDER BY id"
        else:
            sql = (f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM verdict_log {where} ORDER BY id DESC LIMIT ?) "
                   "ORDER BY id")
            args.append(limit)
        return [VerdictEntry(*row) for row in self.conn().execute(sql, args)]

    # -- writes --------------------------------------------------------------------------------------

    def set_many(self, account_ids: Sequence[str], verdict: VerdictKind, campaign: str | None, note: str | None,
                 *, by: str, via: str) -> list[VerdictEntry]:
        """Record `verdict` for every account (one transaction); in force once this returns."""
        if verdict == "organic" and not campaign:
            campaign = ORGANIC_CAMPAIGN
        if not campaign:
            raise ValueError("a harvesting verdict needs a campaign name")
        now = time.time()
        ids = list(dict.fromkeys(account_ids))
        with self._lock:
            with self.transaction() as c:
                entries = []
                for acc in ids:
                    cur = c.execute("INSERT INTO verdict_log(account_id, action, verdict, campaign, note, by, at, via) "
                                    "VALUES (?, 'set', ?, ?, ?, ?, ?, ?)", (acc, verdict, campaign, note, by, now, via))
                    entries.append(VerdictEntry(cur.lastrowid, acc, "set", verdict, campaign, note, by, now, via))
            for e in entries:
                self._active[e.account_id] = e
        return entries

    def undo_many(self, account_ids: Sequence[str], note: str | None, *, by: str, via: str) -> list[VerdictEntry]:
        """Withdraw the verdict in force of each account that has one (the others are left as they are);
        returns the undo entries written."""
        now = time.time()
        with self._lock:
            undone = [self._active[a] for a in dict.fromkeys(account_ids) if a in self._active]
            if not undone:
                return []
            with self.transaction() as c:
                entries = []
                for old in undone:
                    cur = c.execute("INSERT INTO verdict_log(account_id, action, verdict, campaign, note, by, at, via) "
                                    "VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                                    (old.account_id, old.verdict, old.campaign, note, by, now, via))
                    entries.append(VerdictEntry(cur.lastrowid, old.account_id, "undo", old.verdict, old.campaign,
                                                note, by, now, via))
            for e in entries:
                self._active.pop(e.account_id, None)
        return entries


def verdict_views(state: Path, accounts: Sequence[str], history: int = 20) -> dict:
    """For a page about `accounts`: the verdict in force of each that has one, and the newest
    `history` log entries about them (read-only; none before the first verdict)."""
    try:
        log = read_verdicts(state)
    except FileNotFoundError:
        log = []
    wanted = set(accounts)
    mine = [e for e in log if e.account_id in wanted]
    return {"verdicts": current_verdicts(mine), "verdict_history": mine[-history:][::-1]}


def read_verdicts(state: Path) -> list[VerdictEntry]:
    """The verdict log of a state folder, read-only (for `labels export`; the server may be running)."""
    import sqlite3

    path = Path(state) / "verdicts.sqlite"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (no verdict was ever set, or --state is not the folder "
                                "`distillguard serve` writes)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [VerdictEntry(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM verdict_log ORDER BY id")]
    finally:
        conn.close()

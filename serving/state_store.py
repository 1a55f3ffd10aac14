"""The durable serving state, in two SQLite files (WAL) under the state folder, each with ONE
writing process so that a request never waits for another process's write lock:

- `events.sqlite`, written only by the server: the append-only event log (committed before a
  request is acknowledged), per-account counters, and control rows (reload requests).
- `scores.sqlite`, written only by the refresh worker: per-account score, decision, reasons,
  features, the dirty queue, and the worker's cursor into the event log (its durable offset).

A restart, or a kill -9 of either process, resumes from the log and the cursor: no acknowledged
event is lost, and every event past the cursor is queued again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

EVENT_FIELDS = ("account_id", "ts_us", "prompt", "conversation_id", "model", "ip", "asn",
                "payment_fingerprint", "user_agent")

_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, ts_us INTEGER NOT NULL, prompt TEXT NOT NULL,
    conversation_id TEXT, model TEXT, ip TEXT, asn INTEGER, payment_fingerprint TEXT, user_agent TEXT,
    received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_account ON events(account_id, id);
CREATE INDEX IF NOT EXISTS events_by_account_time ON events(account_id, ts_us);
CREATE TABLE IF NOT EXISTS control(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SCORES_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores(
    account_id TEXT PRIMARY KEY, score REAL, decision TEXT, reasons TEXT, features TEXT, model_version TEXT,
    last_refresh REAL, window_size INTEGER, refreshed_through INTEGER NOT NULL DEFAULT 0,
    dirty INTEGER NOT NULL DEFAULT 0, dirty_since REAL, pending_events INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS scores_dirty ON scores(dirty_since) WHERE dirty = 1;
CREATE INDEX IF NOT EXISTS scores_refreshed ON scores(last_refresh);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredScore:
    score: float | None
    decision: str | None
    reasons: list[str]
    model_version: str | None
    last_refresh: float | None


@dataclass(frozen=True)
class Backlog:
    accounts: int
    events: int
    oldest_dirty_since: float | None


class _Db:
    """One SQLite file; a connection per thread (autocommit; explicit BEGIN where it matters)."""

    def __init__(self, path: Path, schema: str, *, synchronous: str, autocheckpoint: bool) -> None:
        self.path = Path(path)
        self._schema, self._synchronous, self._autocheckpoint = schema, synchronous, autocheckpoint
        self._local = threading.local()
        try:
            self.conn()
        except (sqlite3.Error, OSError):
            pass  # a full or read-only disk: every use retries the opening, and fails as a storage fault

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                c.execute("PRAGMA journal_mode=WAL")
                c.execute(f"PRAGMA synchronous={self._synchronous}")
                c.execute("PRAGMA journal_size_limit=67108864")  # a WAL that grew under a burst shrinks again
                if not self._autocheckpoint:
                    c.execute("PRAGMA wal_autocheckpoint=0")
                c.executescript(self._schema)
            except BaseException:
                c.close()
                raise
            self._local.conn = c
        return c

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so a writer never waits half-way): committed when
        the block ends, rolled back if it raises."""
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:  # SQLite already rolled back after a full disk or an I/O error
                c.execute("ROLLBACK")
            raise

    def get(self, table: str, key: str) -> str | None:
        row = self.conn().execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, table: str, key: str, value: str) -> None:
        self.conn().execute(f"INSERT INTO {table}(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                            "value = excluded.value", (key, value))

    def checkpoint(self) -> None:
        self.conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def size_bytes(self) -> tuple[int, int]:
        """(database file, its WAL) on disk, in bytes. The WAL holds whole pages per commit until a
        checkpoint can reset it, so under load it says more about the write rate than about the data."""
        wal = self.path.with_name(self.path.name + "-wal")
        return (self.path.stat().st_size if self.path.exists() else 0), (wal.stat().st_size if wal.exists() else 0)


class EventLog(_Db):
    """The event log. The server appends; the worker reads windows and new events."""

    def __init__(self, folder: Path, *, synchronous: str = "NORMAL", autocheckpoint: bool = True) -> None:
        super().__init__(Path(folder) / "events.sqlite", _EVENTS_SCHEMA, synchronous=synchronous,
                         autocheckpoint=autocheckpoint)

    _INSERT = ("INSERT INTO events(account_id, ts_us, prompt, conversation_id, model, ip, asn, payment_fingerprint, "
               "user_agent, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)")

    def append(self, rows: Sequence[tuple]) -> int:
        """Commit events (tuples in `EVENT_FIELDS` order); returns only after the commit. The log is
        all a request writes (two pages: the row and its index entry), to keep the WAL small."""
        now = time.time()
        c = self.conn()
        if len(rows) == 1:
            c.execute(self._INSERT, (*rows[0], now))  # autocommit: one implicit transaction
            return 1
        with self.transaction() as c:
            c.executemany(self._INSERT, [(*r, now) for r in rows])
        return len(rows)

    def delete_received_before(self, before: float, limit: int) -> int:
        """Delete up to `limit` of the oldest events received before `before` (epoch seconds)."""
        c = self.conn()
        cur = c.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE received_at < ? ORDER BY id "
                        "LIMIT ?)", (before, limit))
        return cur.rowcount

    def account(self, account_id: str) -> dict | None:
        n, last_id, last_seen = self.conn().execute(
            "SELECT COUNT(*), MAX(id), MAX(received_at) FROM events WHERE account_id = ?", (account_id,)).fetchone()
        if not n:
            return None
        return {"n_events": n, "last_event_id": last_id, "last_seen": last_seen}

    def new_events(self, after_id: int, limit: int) -> list[tuple[int, str, float]]:
        return self.conn().execute("SELECT id, account_id, received_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                   (after_id, limit)).fetchall()

    def max_id(self) -> int:
        return self.conn().execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]

    def active_accounts(self, max_age_us: int, now: float | None = None) -> list[str]:
        """Accounts with an event received in the last `max_age_us` (by the server's clock, which a
        client cannot set): the population of the scoring window."""
        since = (time.time() if now is None else now) - max_age_us / 1e6
        return [r[0] for r in self.conn().execute(
            "SELECT account_id FROM events GROUP BY account_id HAVING MAX(received_at) >= ? ORDER BY account_id",
            (since,))]

    def windows(self, account_ids: Sequence[str], max_events: int, max_age_us: int,
                now: float | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
        """The scoring window of each account (`features.window`): of its events *received* in the last
        `max_age_us` (by the server's clock, which a client cannot set), the newest `max_events` by
        time (then arrival), as a contract-shaped events frame; and per account its newest event id.

        Arrival, not `ts`, bounds the window: a `ts` is the client's word (clamped on the way in,
        `serving.client_time`), and an account's own newest `ts` as the window's anchor let one event
        dated far ahead take every other event out of it. A backdated event stays in the window (the
        oldest by time, so it pushes nothing out); a batch file, which has no arrival clock, bounds its
        windows by time (`features.window`). On a replay of traffic whose spans fit the window both
        rules read the same events."""
        since = (time.time() if now is None else now) - max_age_us / 1e6
        c = self.conn()
        rows: list[tuple] = []
        through: dict[str, int] = {}
        c.execute("BEGIN")  # one snapshot for all accounts
        try:
            for acc in account_ids:
                rows.extend(c.execute(
                    "SELECT id, account_id, ts_us, prompt, conversation_id, model, ip, asn, payment_fingerprint, "
                    "user_agent FROM events WHERE account_id = ? AND received_at >= ? ORDER BY ts_us DESC, id DESC "
                    "LIMIT ?", (acc, since, max_events)))
                last = c.execute("SELECT MAX(id) FROM events WHERE account_id = ?", (acc,)).fetchone()[0]
                if last is not None:  # read up to here, even where the newest event is not in the window
                    through[acc] = int(last)
        finally:
            c.execute("COMMIT")
        frame = pd.DataFrame(rows, columns=["id", *EVENT_FIELDS])
        if frame.empty:
            return frame, through
        frame["ts"] = pd.to_datetime(frame["ts_us"].to_numpy(dtype=np.int64), unit="us", utc=True)
        frame["asn"] = frame["asn"].astype("Int64")
        frame = frame.sort_values(["account_id", "ts_us", "id"], kind="stable").drop(columns=["ts_us", "id"])
        return frame.reset_index(drop=True), through


class ScoreBoard(_Db):
    """Scores and the refresh queue. The worker writes; the server reads."""

    def __init__(self, folder: Path, *, synchronous: str = "NORMAL", autocheckpoint: bool = True) -> None:
        super().__init__(Path(folder) / "scores.sqlite", _SCORES_SCHEMA, synchronous=synchronous,
                         autocheckpoint=autocheckpoint)

    def score(self, account_id: str) -> StoredScore | None:
        row = self.conn().execute("SELECT score, decision, reasons, model_version, last_refresh FROM scores "
                                  "WHERE account_id = ?", (account_id,)).fetchone()
        if row is None:
            return None
        return StoredScore(row[0], row[1], json.loads(row[2]) if row[2] else [], row[3], row[4])

    def account(self, account_id: str) -> dict | None:
        row = self.conn().execute(
            "SELECT score, decision, reasons, features, model_version, last_refresh, window_size, dirty, "
            "pending_events, refreshed_through FROM scores WHERE account_id = ?", (account_id,)).fetchone()
        if row is None:
            return None
        return {"score": row[0], "decision": row[1], "reasons": json.loads(row[2]) if row[2] else [],
                "features": json.loads(row[3]) if row[3] else None, "model_version": row[4], "last_refresh": row[5],
                "window_size": row[6], "dirty": bool(row[7]), "pending_events": row[8],
                "refreshed_through": row[9]}

    # -- the worker's side ----------------------------------------------------------------------

    def cursor(self) -> int:
        return int(self.get("meta", "cursor") or 0)

    def enqueue(self, new_events: Sequence[tuple[int, str, float]]) -> None:
        """Mark the accounts of events read from the log dirty and move the cursor past them, in one
        transaction (so a crash re-reads them rather than losing them)."""
        if not new_events:
            return
        per: dict[str, list] = {}
        for eid, acc, received in new_events:
            p = per.setdefault(acc, [0, received])
            p[0] += 1
        with self.transaction() as c:
            c.executemany("INSERT INTO scores(account_id, dirty, dirty_since, pending_events) VALUES (?, 1, ?, ?) "
                          "ON CONFLICT(account_id) DO UPDATE SET dirty = 1, "
                          "dirty_since = COALESCE(dirty_since, excluded.dirty_since), "
                          "pending_events = pending_events + excluded.pending_events",
                          [(acc, p[1], p[0]) for acc, p in per.items()])
            c.execute("INSERT INTO meta(key, value) VALUES ('cursor', ?) ON CONFLICT(key) DO UPDATE SET "
                      "value = excluded.value", (str(new_events[-1][0]),))

    def dirty_accounts(self, limit: int) -> list[str]:
        return [r[0] for r in self.conn().execute(
            "SELECT account_id FROM scores WHERE dirty = 1 ORDER BY dirty_since LIMIT ?", (limit,))]

    def store(self, results: Sequence[dict]) -> None:
        """Write refresh results ({account_id, score, decision, reasons, features, model_version,
        window_size, through}) and take the accounts off the queue (new events re-queue them)."""
        now = time.time()
        with self.transaction() as c:
            c.executemany(
                "UPDATE scores SET score = ?, decision = ?, reasons = ?, features = ?, model_version = ?, "
                "last_refresh = ?, window_size = ?, refreshed_through = ?, dirty = 0, dirty_since = NULL, "
                "pending_events = 0 WHERE account_id = ?",
                [(r["score"], r["decision"], json.dumps(r["reasons"]), json.dumps(r["features"]), r["model_version"],
                  now, r["window_size"], r["through"], r["account_id"]) for r in results])

    def seed(self, results: Sequence[dict]) -> None:
        """Store scores computed elsewhere (a batch run) as the accounts' current scores, creating their
        rows; the worker rescores them when it reads their events."""
        now = time.time()
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO scores(account_id, score, decision, reasons, features, model_version, last_refresh, "
                "window_size, refreshed_through) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(account_id) DO UPDATE SET "
                "score = excluded.score, decision = excluded.decision, reasons = excluded.reasons, "
                "features = excluded.features, model_version = excluded.model_version, "
                "last_refresh = excluded.last_refresh, window_size = excluded.window_size, "
                "refreshed_through = excluded.refreshed_through",
                [(r["account_id"], r["score"], r["decision"], json.dumps(r["reasons"]), json.dumps(r["features"]),
                  r["model_version"], now, r["window_size"], r["through"]) for r in results])

    def refreshed_before(self, before: float, limit: int) -> list[str]:
        """Accounts not dirty, last refreshed before `before` (epoch seconds), longest ago first."""
        return [r[0] for r in self.conn().execute(
            "SELECT account_id FROM scores WHERE dirty = 0 AND last_refresh < ? ORDER BY last_refresh LIMIT ?",
            (before, limit))]

    def scored_accounts(self) -> set[str]:
        return {r[0] for r in self.conn().execute("SELECT account_id FROM scores WHERE dirty = 0")}

    def forget(self, accounts: set[str]) -> None:
        """Drop the scores of accounts that left the window (new events bring them back)."""
        if accounts:
            self.conn().executemany("DELETE FROM scores WHERE account_id = ? AND dirty = 0",
                                    [(a,) for a in sorted(accounts)])

    def backlog(self) -> Backlog:
        n, events, oldest = self.conn().execute(
            "SELECT COUNT(*), COALESCE(SUM(pending_events), 0), MIN(dirty_since) FROM scores WHERE dirty = 1"
        ).fetchone()
        return Backlog(int(n), int(events), oldest)

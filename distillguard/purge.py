"""Honouring a deletion request: remove accounts' prompts from the serve state, workbench snapshots
and the embedding store, then compact every file touched so the text is gone from its bytes.

Where prompt text lives (README "Where prompt text is stored"):
- `<state>/events.sqlite`: the event log (every acknowledged prompt, until retention removes it);
- `<state>/scores.sqlite`: per account score, reasons and features (no prompt text, but the account's row);
- a workbench snapshot's `workbench.sqlite` (`texts`, `prompts`), and its texts' embeddings in
  `vectors.npy` and `texts.faiss`;
- the embedding store `embeddings-<profile>.sqlite`: no text, only a hash of the normalised prompt
  and its vector.

SQLite keeps deleted rows in free pages and old versions in the write-ahead log, so a DELETE alone
leaves the text readable in the files: every database touched is VACUUMed and its log truncated.
Run it with `distillguard serve` stopped (the refresh worker also holds windows in memory); a state
still in use is reported and nothing is claimed compacted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PURGED_TEXT = "[purged]"


class PurgeError(ValueError):
    """A purge that could not be completed as asked (one line for the CLI)."""


@dataclass
class PurgeReport:
    events: int = 0
    scores: int = 0
    snapshot_prompts: int = 0
    snapshot_texts: int = 0
    snapshot_accounts: int = 0
    store_vectors: int = 0
    compacted: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.events or self.scores or self.snapshot_prompts or self.snapshot_accounts)


def _marks(items: Iterable) -> str:
    return ",".join("?" * len(list(items)))


def _compact(path: Path) -> None:
    """VACUUM `path` (every page rewritten, no free page keeps old rows) and truncate its WAL."""
    c = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        wal = c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal and c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            raise PurgeError(f"{path} is in use (is `distillguard serve` running on it?): stop it and purge again")
        c.execute("VACUUM")
        if wal and c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            raise PurgeError(f"{path} is in use (is `distillguard serve` running on it?): stop it and purge again")
    finally:
        c.close()


def _keys(prompts: Iterable[str]) -> set[bytes]:
    from distillguard.features.text_normalization import prompt_key

    return {prompt_key(p) for p in prompts}


def purge_state(state: Path, accounts: list[str], report: PurgeReport) -> tuple[set[bytes], set[bytes]]:
    """Delete the accounts' events and scores; returns (their prompts' store keys, the keys other
    accounts' remaining prompts still use)."""
    events_db = state / "events.sqlite"
    if not events_db.exists():
        raise PurgeError(f"--state {state}: no events.sqlite (is it the folder `distillguard serve` writes?)")
    c = sqlite3.connect(events_db, isolation_level=None, timeout=30.0)
    try:
        c.execute("PRAGMA secure_delete=ON")
        m = _marks(accounts)
        theirs = _keys(r[0] for r in c.execute(f"SELECT DISTINCT prompt FROM events WHERE account_id IN ({m})",
                                                accounts))
        c.execute("BEGIN IMMEDIATE")
        report.events += c.execute(f"DELETE FROM events WHERE account_id IN ({m})", accounts).rowcount
        c.execute("COMMIT")
        others = _keys(r[0] for r in c.execute("SELECT DISTINCT prompt FROM events"))
    finally:
        c.close()
    _compact(events_db)
    report.compacted.append(str(events_db))
    scores_db = state / "scores.sqlite"
    if scores_db.exists():
        c = sqlite3.connect(scores_db, isolation_level=None, timeout=30.0)
        try:
            report.scores += c.execute(f"DELETE FROM scores WHERE account_id IN ({_marks(accounts)})",
                                       accounts).rowcount
        finally:
            c.close()
        _compact(scores_db)
        report.compacted.append(str(scores_db))
    return theirs, others


def purge_snapshot(folder: Path, accounts: list[str], report: PurgeReport) -> tuple[set[bytes], set[bytes]]:
    """Delete the accounts from a workbench snapshot. Texts only they sent become PURGED_TEXT (rows kept:
    row numbers index the vectors) and their vectors are zeroed in `vectors.npy` and `texts.faiss`."""
    db_path = folder / "workbench.sqlite"
    if not db_path.exists():
        raise PurgeError(f"--workbench {folder}: no workbench.sqlite (is it a `workbench build --out` folder?)")
    m = _marks(accounts)
    c = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
    try:
        c.execute("PRAGMA secure_delete=ON")
        c.execute("BEGIN IMMEDIATE")
        used = c.execute(f"SELECT text_id, COUNT(DISTINCT account_id) FROM prompts WHERE account_id IN ({m}) "
                         "GROUP BY text_id", accounts).fetchall()
        theirs = _keys(r[0] for r in c.execute(
            f"SELECT text FROM texts WHERE text_id IN (SELECT text_id FROM prompts WHERE account_id IN ({m}))",
            accounts))
        report.snapshot_prompts += c.execute(f"DELETE FROM prompts WHERE account_id IN ({m})", accounts).rowcount
        c.executemany("UPDATE texts SET accounts = MAX(accounts - ?, 0) WHERE text_id = ?", [(n, t) for t, n in used])
        orphans = [r[0] for r in c.execute(
            f"SELECT text_id FROM texts WHERE text_id IN ({_marks(used)}) AND text_id NOT IN "
            "(SELECT text_id FROM prompts)", [t for t, _ in used])] if used else []
        c.executemany("UPDATE texts SET text = ?, skeleton = NULL WHERE text_id = ?",
                      [(PURGED_TEXT, t) for t in orphans])
        report.snapshot_texts += len(orphans)
        comps = c.execute(f"SELECT component, COUNT(*) FROM accounts WHERE account_id IN ({m}) GROUP BY component",
                          accounts).fetchall()
        c.executemany("UPDATE components SET size = MAX(size - ?, 0) WHERE component = ?", [(n, k) for k, n in comps])
        c.execute(f"UPDATE infra_counts SET accounts = accounts - (SELECT COUNT(DISTINCT i.account_id) FROM infra i "
                  f"WHERE i.field = infra_counts.field AND i.value = infra_counts.value AND i.account_id IN ({m}))",
                  accounts)
        c.execute("DELETE FROM infra_counts WHERE accounts <= 0")
        report.snapshot_accounts += c.execute(f"DELETE FROM accounts WHERE account_id IN ({m})", accounts).rowcount
        for table, cond in (("edges", f"a IN ({m}) OR b IN ({m})"), ("infra", f"account_id IN ({m})"),
                            ("cluster_accounts", f"account_id IN ({m})")):
            args = accounts * cond.count("IN (")
            c.execute(f"DELETE FROM {table} WHERE {cond}", args)
        # a campaign skeleton no remaining text carries was the purged accounts' wording
        c.execute("UPDATE components SET skeleton = NULL, skeleton_accounts = 0 WHERE skeleton IS NOT NULL AND "
                  "skeleton NOT IN (SELECT skeleton FROM texts WHERE skeleton IS NOT NULL)")
        c.execute("COMMIT")
        others = _keys(r[0] for r in c.execute("SELECT text FROM texts WHERE text != ?", (PURGED_TEXT,)))
    finally:
        c.close()
    _compact(db_path)
    report.compacted.append(str(db_path))
    if orphans:
        _zero_vectors(folder, orphans)
    _new_generation(folder, report)
    return theirs, others


def _zero_vectors(folder: Path, text_ids: list[int]) -> None:
    import faiss

    from distillguard.features.coordination import build_text_index

    vectors = np.load(folder / "vectors.npy")
    vectors[np.asarray(text_ids, dtype=np.int64)] = 0
    tmp = folder / "vectors.npy.purging.npy"
    np.save(tmp, vectors)
    os.replace(tmp, folder / "vectors.npy")
    faiss.write_index(build_text_index(vectors.astype(np.float32)), str(folder / "texts.faiss.purging"))
    os.replace(folder / "texts.faiss.purging", folder / "texts.faiss")


def _new_generation(folder: Path, report: PurgeReport) -> None:
    """A new generation id, so that running /ui pages reopen the snapshot."""
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["generation"] = uuid.uuid4().hex
    meta["accounts"] = max(0, int(meta.get("accounts", 0)) - report.snapshot_accounts)
    meta["prompts"] = max(0, int(meta.get("prompts", 0)) - report.snapshot_prompts)
    meta["purged_accounts"] = int(meta.get("purged_accounts", 0)) + report.snapshot_accounts
    tmp = meta_path.with_name("meta.json.purging")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)


def purge_store(store: Path, keys: set[bytes], report: PurgeReport) -> None:
    """Delete `keys` from every embedding store file in the folder `store`."""
    files = sorted(store.glob("embeddings-*.sqlite"))
    if not files:
        raise PurgeError(f"--store {store}: no embeddings-*.sqlite (is it the folder `--store` names elsewhere?)")
    for path in files:
        c = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            c.execute("PRAGMA secure_delete=ON")
            c.execute("BEGIN IMMEDIATE")
            ordered = sorted(keys)
            for lo in range(0, len(ordered), 900):
                chunk = ordered[lo:lo + 900]
                report.store_vectors += c.execute(f"DELETE FROM vectors WHERE key IN ({_marks(chunk)})",
                                                  chunk).rowcount
            c.execute("COMMIT")
        finally:
            c.close()
        _compact(path)
        report.compacted.append(str(path))


def purge(accounts: list[str], *, state: Path | None, workbench: Path | None, store: Path | None) -> PurgeReport:
    """Remove `accounts` from the places given (with a state, also its default snapshot folder
    `<state>/workbench`); store vectors go only where no other account's remaining prompt (in the
    state or snapshot) has the same normalised text."""
    if not accounts or any(not a for a in accounts):
        raise PurgeError("--account: give at least one non-empty account id")
    if state is None and workbench is None:
        raise PurgeError("give --state and/or --workbench: the places to purge")
    if workbench is None and state is not None and (Path(state) / "workbench" / "workbench.sqlite").exists():
        workbench = Path(state) / "workbench"  # the snapshot `serve`'s /ui reads by default
    report = PurgeReport()
    theirs: set[bytes] = set()
    others: set[bytes] = set()
    for folder, step in ((state, purge_state), (workbench, purge_snapshot)):
        if folder is not None:
            t, o = step(Path(folder), accounts, report)
            theirs |= t
            others |= o
    if store is not None:
        purge_store(Path(store), theirs - others, report)
    return report

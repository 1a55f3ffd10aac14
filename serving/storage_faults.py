"""Faults of the state disk (full, read-only, failing): recognise them, say why in words an operator
acts on, and remember the latest so that `/readyz` reports it.

A write the state cannot take is a fault of the deployment, not of the request: the gateway paths
answer by `fail_mode`, bulk ingestion answers 503 (the shipper retries; nothing is acknowledged that
was not stored), and readiness goes red with the reason until a write succeeds again.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("distillguard.serving")

# primary SQLite result codes that mean "the storage cannot serve this", not "the statement is wrong"
_SQLITE_STORAGE_CODES = {
    3,   # SQLITE_PERM
    5,   # SQLITE_BUSY (a lock held past the 30 s timeout)
    6,   # SQLITE_LOCKED
    8,   # SQLITE_READONLY ("attempt to write a readonly database")
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL ("database or disk is full")
    14,  # SQLITE_CANTOPEN
    26,  # SQLITE_NOTADB
}
_OS_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EACCES, errno.EPERM}
PROBE_EVERY_S = 1.0


class StateUnavailable(RuntimeError):
    """The state could not take a write; `reason` says why (no prompt text in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_storage_fault(exc: BaseException) -> bool:
    """True for errors of the disk or database file rather than of the statement or data."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_STORAGE_CODES
    return isinstance(exc, OSError) and exc.errno in _OS_STORAGE_ERRNOS


def disk_condition(folder: Path) -> str | None:
    """'read-only file system' or 'no space left on device' when the folder's file system says so."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if st.f_bavail == 0:
        return "no space left on device"
    return None


def describe(exc: BaseException, folder: Path) -> str:
    """One line for logs and /readyz: the error, the folder and what its file system reports."""
    text = str(exc) if isinstance(exc, sqlite3.Error) else (exc.strerror or type(exc).__name__)
    cond = disk_condition(folder)
    return f"state storage unavailable: {text} ({folder}{'; ' + cond if cond else ''})"


class StorageHealth:
    """The outcome of the latest write to the state: the last failure's reason until a write succeeds.

    `probe` is a tiny real write (a control row), tried at most every PROBE_EVERY_S by `current()` so
    that readiness follows the disk even without traffic."""

    def __init__(self, folder: Path, probe: Callable[[], None], on_failure: Callable[[], None] = lambda: None) -> None:
        self.folder, self._probe, self._on_failure = Path(folder), probe, on_failure
        self.error: str | None = None
        self.since: float | None = None
        self.failures = 0
        self._probed_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> str:
        reason = describe(exc, self.folder)
        with self._lock:
            first = self.error is None
            self.error, self.failures = reason, self.failures + 1
            self.since = self.since or time.time()
        self._on_failure()
        if first:  # once per outage, not once per request
            log.error("%s; the gateway paths answer by fail_mode until a write succeeds", reason)
        return reason

    def ok(self) -> None:
        if self.error is not None:
            with self._lock:
                self.error, self.since = None, None
            log.warning("state storage writable again (%s)", self.folder)

    def current(self) -> str | None:
        """The standing fault, after a probe write if none was tried in the last PROBE_EVERY_S; a full
        or read-only file system counts even while a small write still fits in the write-ahead log."""
        now = time.monotonic()
        if now - self._probed_at >= PROBE_EVERY_S:
            self._probed_at = now
            try:
                self._probe()
            except Exception as exc:
                if not is_storage_fault(exc):
                    raise
                self.failed(exc)
            else:
                self.ok()
        if self.error is None and (cond := disk_condition(self.folder)):
            return f"state storage unavailable: {cond} ({self.folder})"
        return self.error

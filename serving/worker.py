"""The refresh worker process: holds the model (loading, alias polling, reloads on request) and
refreshes dirty accounts. A separate process so that feature building never holds the server's
GIL; it talks to the server only through the state store (scores, and a `meta` table for its
status and reload requests). It exits when the server process dies, even by kill -9.

    python -m distillguard.serving.worker   (settings in $DISTILLGUARD_WORKER_SETTINGS; started by the server)
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from distillguard.serving.config import ServeSettings
from distillguard.serving.log_privacy import withhold_exception_messages
from distillguard.serving.models import ModelHolder
from distillguard.serving.refresh import RefreshWorker
from distillguard.serving.state_store import EventLog, ScoreBoard
from distillguard.serving.storage_faults import describe, is_storage_fault

SETTINGS_ENV = "DISTILLGUARD_WORKER_SETTINGS"
STATUS_KEY = "worker_status"
RELOAD_KEY = "reload_requested"
CHECKPOINT_EVERY_S = 0.25  # often, so each is small and completes, and the WAL restarts from its start
STORAGE_RETRY_S, STORAGE_RETRY_MAX_S = 0.5, 30.0  # the worker's waits after a state fault: 0.5, 1, 2, ... 30 s

log = logging.getLogger("distillguard.serving")


def _die_with_parent() -> None:
    try:  # Linux: SIGTERM when the parent dies; the getppid() check below covers the rest
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _checkpoint_loop(events: EventLog, board: ScoreBoard) -> None:
    # the server's connections leave checkpoints (an fsync) to this process, off the request path
    failing: set[str] = set()
    while True:
        for db in (events, board):
            try:
                db.checkpoint()
            except Exception:
                if db.path.name not in failing:  # once per outage, not four times a second
                    log.exception("WAL checkpoint of %s failed", db.path.name)
                failing.add(db.path.name)
            else:
                failing.discard(db.path.name)
        time.sleep(CHECKPOINT_EVERY_S)


def _storage_backoff(delay: float, exc: BaseException, folder: Path) -> float:
    """Wait after a state fault (full or read-only disk), doubling the wait each time (capped): the
    worker keeps its model and retries rather than exiting into a restart loop."""
    delay = min(max(2 * delay, STORAGE_RETRY_S), STORAGE_RETRY_MAX_S)
    log.warning("%s; the refresh worker retries in %.1f s", describe(exc, folder), delay)
    time.sleep(delay)
    return delay


def run(settings: ServeSettings, parent_pid: int) -> None:
    # the worker yields the CPU to the server: answers matter more than fresh scores
    os.nice(10)
    events = EventLog(settings.state_path, synchronous=settings.sqlite_synchronous)
    board = ScoreBoard(settings.state_path, synchronous=settings.sqlite_synchronous)

    # a new champion rebuilds the population state and rescores every account of the window with it
    # (RefreshWorker.ensure_population), so nothing needs queueing here
    models = ModelHolder(settings.mlruns, settings.store, settings.model_uri)
    models.start(settings.champion_poll_s)
    worker = RefreshWorker(events, board, models, settings)
    reload_done: int | None = None
    threading.Thread(target=_checkpoint_loop, args=(events, board), name="wal-checkpoint", daemon=True).start()
    backoff = 0.0
    while os.getppid() == parent_pid:
        try:
            requested = int(events.get("control", RELOAD_KEY) or 0)
            if reload_done is None:
                reload_done = requested  # requests from before this worker started were answered by loading
            if requested > reload_done:
                models.refresh()
                reload_done = requested
            n = worker.step()
            m = models.current
            board.put("meta", STATUS_KEY, json.dumps({
                "pid": os.getpid(), "at": time.time(), "model_version": m.version if m else None,
                "model_loaded_at": m.loaded_at if m else None, "model_error": models.last_error,
                "reload_done": reload_done, **asdict(worker.stats)}))
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_fault(exc):
                raise
            backoff = _storage_backoff(backoff, exc, settings.state_path)
            continue
        if backoff:
            log.warning("state storage writable again; the refresh worker resumes")
            backoff = 0.0
        if n == 0:
            time.sleep(settings.refresh_idle_s)
    models.stop()


def main() -> None:
    _die_with_parent()
    parent_pid = int(sys.argv[1])
    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    logging.basicConfig(level=os.environ.get("DISTILLGUARD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s worker %(message)s")
    if settings.logs_redacted:
        withhold_exception_messages()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run(settings, parent_pid)


if __name__ == "__main__":
    main()

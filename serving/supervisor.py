"""The server's side of the refresh worker process: start it (again, if it dies), read its status
from the state store, and ask it to reload the champion."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

from distillguard.serving.config import ServeSettings
from distillguard.serving.state_store import EventLog, ScoreBoard
from distillguard.serving.worker import RELOAD_KEY, SETTINGS_ENV, STATUS_KEY

log = logging.getLogger("distillguard.serving")
STATUS_TTL_S = 0.25
# a worker that keeps dying is restarted after 1, 2, 4, ... seconds, at most RESTART_DELAY_MAX_S apart;
# one that ran RESTART_HEALTHY_S before exiting is restarted after the first delay again
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 60.0
RESTART_HEALTHY_S = 60.0


@dataclass(frozen=True)
class WorkerStatus:
    model_version: str | None = None
    raw: dict | None = None


class WorkerSupervisor:
    def __init__(self, settings: ServeSettings, events: EventLog, board: ScoreBoard, *,
                 log_level: str = "INFO") -> None:
        self.settings, self.events, self.board, self.log_level = settings, events, board, log_level
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.restart_delay_s = 0.0  # the delay before the pending (or latest) restart
        self._restart_at: float | None = None  # monotonic time of the pending restart
        self._started_at = 0.0
        self._status = WorkerStatus()
        self._read_at = 0.0

    def start(self) -> None:
        child = self.settings.model_copy(update={"api_keys": ()})  # the worker needs no keys
        env = {**os.environ, SETTINGS_ENV: child.model_dump_json(), "DISTILLGUARD_LOG_LEVEL": self.log_level}
        env.pop("DISTILLGUARD_API_KEYS", None)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # one core for refreshes (read at import); the other stays with the server
        self.proc = subprocess.Popen([sys.executable, "-m", "distillguard.serving.worker", str(os.getpid())], env=env)
        self._status, self._read_at, self._started_at = WorkerStatus(), 0.0, time.monotonic()

    def ensure_running(self) -> None:
        """Restart an exited worker, after a delay that doubles while it keeps dying (capped)."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self._restart_at is None:
            ran = now - self._started_at
            self.last_exit = self.proc.returncode
            self.restart_delay_s = (RESTART_DELAY_S if ran >= RESTART_HEALTHY_S or not self.restart_delay_s
                                    else min(2 * self.restart_delay_s, RESTART_DELAY_MAX_S))
            self._restart_at = now + self.restart_delay_s
            log.warning("refresh worker exited with %s after %.1f s; restarting it in %.0f s (%d restarts so far)",
                        self.last_exit, ran, self.restart_delay_s, self.restarts)
        elif now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            self.start()

    def down_reason(self) -> str | None:
        """Why no worker is running now (it exited and waits for its restart), or None."""
        if self._restart_at is None:
            return None
        return (f"refresh worker exited with {self.last_exit}; restart {self.restarts + 1} in "
                f"{max(0.0, self._restart_at - time.monotonic()):.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def status(self) -> WorkerStatus:
        """The worker's last status (re-read at most every 0.25 s); an empty one before it reports."""
        now = time.monotonic()
        if now - self._read_at > STATUS_TTL_S:
            self._read_at = now
            try:
                raw = self.board.get("meta", STATUS_KEY)
            except (sqlite3.Error, OSError):  # an unreadable state: the last status stands (readiness says why)
                raw = None
            if raw:
                d = json.loads(raw)
                if self.proc is not None and d.get("pid") == self.proc.pid:
                    self._status = WorkerStatus(d.get("model_version"), d)
        return self._status

    async def reload(self, timeout: float = 120.0) -> dict:
        """Ask the worker to load the champion now; wait until it has tried."""
        requested = int(self.events.get("control", RELOAD_KEY) or 0) + 1
        self.events.put("control", RELOAD_KEY, str(requested))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read_at = 0.0
            st = self.status()
            if st.raw and st.raw.get("reload_done", 0) >= requested:
                return st.raw
            await asyncio.sleep(0.1)
        raise TimeoutError("the refresh worker did not answer the reload request")

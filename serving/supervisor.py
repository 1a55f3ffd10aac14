"""The server's side of the refresh worker process: start it (again, if it dies), read its status
from the state store, and ask it to reload the champion."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from distillguard.serving.config import ServeSettings
from distillguard.serving.state_store import EventLog, ScoreBoard
from distillguard.serving.worker import RELOAD_KEY, SETTINGS_ENV, STATUS_KEY

log = logging.getLogger("distillguard.serving")
STATUS_TTL_S = 0.25


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
        self._status = WorkerStatus()
        self._read_at = 0.0

    def start(self) -> None:
        child = self.settings.model_copy(update={"api_keys": ()})  # the worker needs no keys
        env = {**os.environ, SETTINGS_ENV: child.model_dump_json(), "DISTILLGUARD_LOG_LEVEL": self.log_level}
        env.pop("DISTILLGUARD_API_KEYS", None)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # one core for refreshes (read at import); the other stays with the server
        self.proc = subprocess.Popen([sys.executable, "-m", "distillguard.serving.worker", str(os.getpid())], env=env)
        self._status, self._read_at = WorkerStatus(), 0.0

    def ensure_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            log.warning("refresh worker exited with %s; restarting it", self.proc.returncode)
            self.restarts += 1
            self.start()

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
            raw = self.board.get("meta", STATUS_KEY)
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

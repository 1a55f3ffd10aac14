"""The real server for end-to-end tests: uvicorn in a subprocess on a free loopback port, and the
simulated world with a small champion model trained on it. Used by test_serving.py and
test_litellm_gateway.py and test_ui_browser.py (importable because conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

KEY = "test-key-1-3f9c7a2e8b"  # the server refuses keys under 16 characters or 8 distinct ones
OTHER_KEY = "other-key-6d2b8e4f1a"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_PROMPT = 4_000
REPLAY_BACKDATE_DAYS = 3_650.0


def cli(*args: str, timeout: float = 400, ok: tuple[int, ...] = (0,)) -> None:
    """Run `distillguard ARGS`; an exit code outside `ok` fails (`train`: 3 is registered, not promoted)."""
    r = subprocess.run([sys.executable, "-m", "distillguard.cli", *args], timeout=timeout, capture_output=True,
                       text=True)
    assert r.returncode in ok, f"distillguard {' '.join(args)}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`distillguard serve` in a subprocess: state in `root/name`, its config (the test defaults
    updated by `config`) in `root/name.json`, its log in `root/name.log`."""

    def __init__(self, root: Path, name: str = "state", *, log_level: str = "warning", **config) -> None:
        self.root, self.name, self.log_level = root, name, log_level
        self.state = root / name
        self.config = root / f"{name}.json"
        # the tests replay simulated weeks from 2026-03 as history: their timestamps lie months before
        # arrival, which a default server clamps to its window (max_backdate_days)
        self.config.write_text(json.dumps({"max_prompt_chars": MAX_PROMPT, "champion_poll_s": 1.0,
                                           "refresh_idle_s": 0.05, "sweep_interval_s": 2.0,
                                           "max_backdate_days": REPLAY_BACKDATE_DAYS, **config}))
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""

    def start(self, port: int | None = None, ready: str = "/readyz") -> Server:
        """Start and wait until `ready` answers 200 (by default: a model is loaded); `port` (default: a
        fresh free one) for callers that had to name the address before the server existed."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = ("from pathlib import Path; from distillguard.serving.server import serve; "
                f"serve('127.0.0.1', {self.port}, Path({str(self.state)!r}), Path({str(self.root / 'mlruns')!r}), "
                f"Path({str(self.root / 'store')!r}), Path({str(self.config)!r}), log_level={self.log_level!r})")
        env = {**os.environ, "DISTILLGUARD_API_KEYS": f"{KEY},{OTHER_KEY}"}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=self.log, stderr=self.log)
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=60)
        deadline = time.time() + 300  # a cap, not the mechanism: on a busy 2-core box the model load can be slow
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if self.client.get(ready).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()  # a fixture whose setup failed never tears down: leave no server (and worker) behind
        raise AssertionError(f"server not ready in 300 s: {self.log_path.read_text()[-3000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.client.close()
        self.log.close()

    def wait_drained(self, timeout: float = 300) -> dict:
        """Wait until the worker, in a status written after this call, has read every event and
        refreshed every dirty account."""
        since = time.time()
        deadline = since + timeout
        while True:
            st = self.client.get("/readyz").json()["refresh"]
            fresh = (st["status_at"] or 0) > since
            if fresh and st["backlog_accounts"] == 0 and st["backlog_events"] == 0 and st["population_accounts"]:
                return st
            if time.time() > deadline:
                raise AssertionError(f"the worker did not drain its queue in {timeout} s: {st}")
            time.sleep(0.2)

    def wait_refreshed(self, accounts: list[str], timeout: float = 60) -> dict[str, dict]:
        deadline = time.time() + timeout
        while True:
            states = {a: self.client.get(f"/v1/accounts/{a}").json() for a in accounts}
            if not any(s["dirty"] for s in states.values()) or time.time() > deadline:
                return states
            time.sleep(0.2)


def build_world(root: Path) -> dict:
    """A simulated world, a champion model trained on it, and the hold-out accounts to replay: the
    hold-out harvester with the most events among those the offline model blocks, and the three
    people (organic accounts with 15 or more events) the model scores lowest offline.

    The small world's model has thresholds set on a few dozen organic validation accounts, so an
    organic account near them may be flagged by any model built on it; the serving tests check the
    service, so they replay people the offline model clearly allows."""
    mlruns, store = str(root / "mlruns"), str(root / "store")
    cli("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "4")
    cli("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
        "--mlruns", mlruns, "--store", store, "--no-time-to-detection")
    cli("score", "--events", str(root / "mlruns" / "holdout" / "events.parquet"), "--out", str(root / "offline.csv"),
        "--mlruns", mlruns, "--store", store)
    events = pd.read_parquet(root / "sim" / "events.parquet")
    holdout = pd.read_csv(root / "mlruns" / "holdout" / "labels.csv", dtype={"account_id": str})
    holdout = holdout[holdout["evaluated"]]  # accounts new in the hold-out period (never trained on)
    offline = pd.read_csv(root / "offline.csv", dtype={"account_id": str}).set_index("account_id")
    sizes = events.groupby("account_id").size()
    # the gateway must do what the offline model does: a harvester the offline model blocks
    harvest = [a for a in holdout[holdout["label"] == 1]["account_id"] if offline.loc[a, "decision"] == "block"]
    people = holdout[(holdout["label"] == 0) & holdout["campaign"].isin(["casual", "student", "developer",
                                                                         "writer"])]["account_id"]
    people = [a for a in people if sizes[a] >= 15 and offline.loc[a, "decision"] == "allow"]
    harvester = max(harvest, key=lambda a: sizes[a])
    organic = sorted(people, key=lambda a: offline.loc[a, "score"])[:3]
    population = pd.read_parquet(root / "mlruns" / "holdout" / "events.parquet")
    background = population[~population["account_id"].isin([harvester, *organic])]
    return {"root": root, "events": events, "harvester": harvester, "organic": organic, "background": background}


def seed_background(server: Server, world: dict, batch: int = 1000, events: pd.DataFrame | None = None) -> None:
    """Ship the rest of the hold-out population (or `events`) to the server in bulk, as a gateway's log
    shipper would, and wait until the worker drained it: the replayed accounts are then judged against
    the population the offline model saw."""
    rows = payloads(world["background"] if events is None else events)
    for lo in range(0, len(rows), batch):
        r = server.client.post("/v1/events:batch", json={"events": rows[lo:lo + batch]})
        assert r.status_code == 200, r.text
    server.wait_drained()


def payloads(events: pd.DataFrame) -> list[dict]:
    frame = events.assign(ts=events["ts"].map(lambda t: t.isoformat())).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")

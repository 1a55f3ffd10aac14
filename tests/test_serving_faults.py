"""A full or read-only state disk and a dying refresh worker, against the real server.

The state folder is a real tmpfs (tiny, then filled: SQLite's "database or disk is full"; remounted
read-only: "attempt to write a readonly database"). Mounting needs root with CAP_SYS_ADMIN; where
that is missing those tests skip and say so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from serving_helpers import Server

FAIL_DECISION = {"open": ("allow", "NONE", 200), "closed": ("block", "BLOCKED", 403)}


def _mount(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], check=False, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _wait(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.1)


def _fill(folder: Path) -> Path:
    """Write zeros into `folder` until its file system has no block left."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as fh:
        for block in (1 << 16, 1 << 12):
            try:
                while True:
                    fh.write(b"\0" * block)
            except OSError:
                pass
    return filler


def _litellm(account: str, prompt: str) -> dict:
    return {"input_type": "request", "texts": [prompt], "request_data": {"user_api_key_user_id": account},
            "structured_messages": [{"role": "user", "content": prompt}]}


def _assert_gateway_answers_by_fail_mode(s: Server, mode: str, reason: str) -> None:
    decision, action, envoy_status = FAIL_DECISION[mode]
    prompt = "translate this paragraph into formal French, keeping the numbers " * 30
    r = s.client.post("/v1/check", json={"account_id": "fresh-1", "prompt": prompt})
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["decision"] == decision and v["degraded"] and v["score"] is None, v
    assert any(reason in x for x in v["reasons"]), v
    r = s.client.post("/beta/litellm_basic_guardrail_api", json=_litellm("fresh-2", prompt))
    assert r.status_code == 200 and r.json()["action"] == action, r.text
    r = s.client.post("/envoy/authz/v1/chat/completions", headers={"x-account-id": "fresh-3"},
                      json={"messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == envoy_status and r.headers["x-distillguard-decision"] == decision, r.text
    r = s.client.post("/v1/events:batch", json={"events": [{"account_id": "fresh-4", "prompt": prompt}] * 50})
    assert r.status_code == 503 and reason in r.json()["detail"], r.text
    assert r.headers["retry-after"]


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_full_state_disk_answers_by_fail_mode_and_readiness_says_why(tmp_path, mode):
    with tmpfs(tmp_path / "state", "3m") as state:
        s = Server(tmp_path, fail_mode=mode).start(ready="/healthz")
        try:
            assert s.client.post("/v1/check", json={"account_id": "a", "prompt": "hello"}).status_code == 200
            filler = _fill(state)
            prompts = (f"summarise report number {i} in three bullet points " * 60 for i in range(200))
            # the write-ahead log may still hold a few small commits; the gateway never sees a 500 meanwhile
            for p in prompts:
                r = s.client.post("/v1/check", json={"account_id": "a", "prompt": p})
                assert r.status_code == 200, r.text
                if any("disk is full" in x for x in r.json()["reasons"]):
                    break
            else:
                raise AssertionError("no write failed on a full disk")
            _assert_gateway_answers_by_fail_mode(s, mode, "disk is full")
            ready = s.client.get("/readyz")
            assert ready.status_code == 503
            assert "no space left on device" in ready.json()["error"] or "disk is full" in ready.json()["error"]
            assert ready.json()["storage"]["write_failures"] >= 1
            assert "distillguard_state_write_failures_total" in s.client.get("/metrics").text
            filler.unlink()  # space again: the next write succeeds and readiness forgets the fault
            v = s.client.post("/v1/check", json={"account_id": "b", "prompt": "hello"}).json()
            assert not any("full" in x for x in v["reasons"]), v  # recorded (no model here: still degraded)
            assert s.client.get("/v1/accounts/b").json()["n_events"] == 1
            body = _wait(lambda: (b := s.client.get("/readyz").json())["storage"]["error"] is None and b,
                         what="storage error cleared")
            assert "full" not in (body["error"] or "") and "no space" not in (body["error"] or "")
        finally:
            s.stop()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_read_only_state_answers_by_fail_mode_and_the_worker_backs_off(tmp_path, mode):
    with tmpfs(tmp_path / "state", "16m") as state:
        s = Server(tmp_path, fail_mode=mode).start(ready="/healthz")
        assert s.client.post("/v1/check", json={"account_id": "a", "prompt": "hello"}).status_code == 200
        worker = _wait(lambda: s.client.get("/readyz").json()["pids"]["worker"], what="worker status")
        os.kill(worker, signal.SIGKILL)  # a crash of both: -wal and -shm stay, so the state stays readable
        s.kill9()
        # remounting read-only succeeds once no process holds a state file open for writing
        _wait(lambda: _mount(["-o", "remount,ro", str(state)]).returncode == 0, what="read-only remount")
        s = Server(tmp_path, fail_mode=mode).start(ready="/healthz")
        try:
            _assert_gateway_answers_by_fail_mode(s, mode, "readonly database")
            ready = s.client.get("/readyz")
            assert ready.status_code == 503
            assert "readonly database" in ready.json()["error"] and "read-only file system" in ready.json()["error"]
            # the worker keeps running and waits longer after each failed round (not a restart a second)
            waits = _wait(lambda: len(w := _worker_waits(s.log_path)) >= 4 and w, timeout=180, what="worker retries")
            assert all(b >= a for a, b in itertools.pairwise(waits)) and waits[3] >= 4 * waits[0], waits
            assert s.client.get("/readyz").json()["worker"]["restarts"] == 0
            assert s.client.get("/v1/accounts/a").status_code == 200  # reads still work
        finally:
            s.stop()


def _worker_waits(log_path: Path) -> list[float]:
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "the refresh worker retries in" in line:
            out.append(float(line.rsplit("retries in ", 1)[1].split(" s")[0]))
    return out


def test_a_dying_worker_is_restarted_with_growing_delays_and_counted(tmp_path):
    s = Server(tmp_path).start(ready="/healthz")
    try:
        for kill in range(3):
            pid = _wait(lambda: s.client.get("/readyz").json()["pids"]["worker"], timeout=180, what="worker status")
            os.kill(pid, signal.SIGKILL)
            if kill == 2:  # while it waits 4 s for its restart, readiness names the exit
                down = _wait(lambda: "refresh worker exited" in ((b := s.client.get("/readyz")).json()["error"] or "")
                             and b, what="readiness names the dead worker")
                assert down.status_code == 503 and down.json()["worker"]["restart_delay_s"] == 4.0
            _wait(lambda old=pid: s.client.get("/readyz").json()["pids"]["worker"] not in (None, old), timeout=180,
                  what="restart")
        delays = [line.split("restarting it in ")[1].split(" s")[0] for line in s.log_path.read_text().splitlines()
                  if "restarting it in" in line]
        assert delays == ["1", "2", "4"], delays
        body = s.client.get("/readyz").json()
        assert body["worker"]["restarts"] == 3 and body["worker"]["last_exit"] == -signal.SIGKILL
        assert "distillguard_worker_restarts_total 3.0" in s.client.get("/metrics").text
    finally:
        s.stop()


def test_check_never_500s_while_the_state_refuses_writes(tmp_path):
    """Without mounting: a real SQLite file whose page quota is reached (SQLITE_FULL), in-process."""
    import sqlite3

    from distillguard.serving.app import create_app
    from distillguard.serving.config import ServeSettings
    from fastapi.testclient import TestClient

    settings = ServeSettings(state_path=tmp_path / "state", mlruns=tmp_path / "none", store=tmp_path / "store",
                             api_keys=("faults-key-4b8e1d7c9a",), champion_poll_s=0, fail_mode="closed")
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer faults-key-4b8e1d7c9a"}
        assert client.post("/v1/check", json={"account_id": "a", "prompt": "hi"}, headers=auth).status_code == 200
        events = client.app.state.core.events

        def quota_reached() -> None:  # on the app's thread, whose connection the handlers use
            c = events.conn()
            c.execute(f"PRAGMA max_page_count={c.execute('PRAGMA page_count').fetchone()[0]}")
            with pytest.raises(sqlite3.OperationalError, match="full"):
                c.execute("INSERT INTO control(key, value) VALUES ('x', ?)", ("y" * 20_000,))

        client.portal.call(quota_reached)
        r = client.post("/v1/check", json={"account_id": "b", "prompt": "z" * 20_000}, headers=auth)
        assert r.status_code == 200 and r.json()["decision"] == "block" and r.json()["degraded"], r.text
        assert "full" in " ".join(r.json()["reasons"])

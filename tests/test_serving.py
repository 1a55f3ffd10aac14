"""The real server (uvicorn in a subprocess on a free loopback port) against a small trained model."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from serving_helpers import KEY, MAX_PROMPT, Server, build_world, seed_background
from serving_helpers import cli as _cli
from serving_helpers import payloads as _payloads


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A simulated world, a champion model trained on it, and the hold-out accounts to replay."""
    return build_world(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def server(world):
    s = Server(world["root"])
    s.start()
    seed_background(s, world)
    yield s
    s.stop()


def test_health_needs_no_key_everything_else_does(server):
    bare = httpx.Client(base_url=server.client.base_url, timeout=10)
    assert bare.get("/healthz").status_code == 200
    body = {"account_id": "acct_x", "prompt": "hi"}
    assert bare.post("/v1/check", json=body).status_code == 401
    assert bare.post("/v1/check", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ("/readyz", "/metrics", "/v1/accounts/acct_x"):
        assert bare.get(path).status_code == 401
    assert bare.post("/v1/check", json=body, headers={"Authorization": "Bearer other-key"}).status_code == 200
    log = server.log_path.read_text()
    assert KEY not in log and "other-key" not in log


@pytest.mark.parametrize("body, field", [
    ({"prompt": "hello"}, "account_id"),
    ({"account_id": "a", "prompt": 42}, "prompt"),
    ({"account_id": "a", "prompt": ["x"]}, "prompt"),
    ({"account_id": "a", "prompt": "x" * (MAX_PROMPT + 1)}, "prompt"),
    ({"account_id": "a", "prompt": "hi", "ts": "last tuesday"}, "ts"),
    ({"account_id": "", "prompt": "hi"}, "account_id"),
])
def test_bad_check_input_is_422_naming_the_field(server, body, field):
    r = server.client.post("/v1/check", json=body)
    assert r.status_code == 422, r.text
    assert any(d["loc"][-1] == field for d in r.json()["detail"]), r.text


def test_bad_batch_input_is_422_naming_the_event(server):
    r = server.client.post("/v1/events:batch", json={"events": [{"account_id": "a", "prompt": "ok"},
                                                                {"account_id": "a", "prompt": "x" * (MAX_PROMPT + 1)}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 1, "prompt"]
    r = server.client.post("/v1/events:batch", json={"events": [{"account_id": "a", "prompt": 1}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "prompt"
    assert server.client.post("/v1/check", content=b"{not json", headers={"content-type": "application/json"}
                              ).status_code == 422


def test_harvester_is_flagged_within_its_stream_and_organic_stays_allow(server, world):
    ev = world["events"]
    harvester, organic = world["harvester"], world["organic"]
    h_events = ev[ev["account_id"] == harvester].sort_values("ts").head(250)
    stream = pd.concat([h_events, ev[ev["account_id"].isin(organic)]]).sort_values("ts", kind="stable")
    first_flag = None
    sent = 0
    for i, (row, acc) in enumerate(zip(_payloads(stream), stream["account_id"])):
        r = server.client.post("/v1/check", json=row)
        assert r.status_code == 200, r.text
        v = r.json()
        if acc == harvester and v["decision"] != "allow" and first_flag is None:
            first_flag = i
            assert v["score"] is not None and v["reasons"]
        if acc in organic:
            assert v["decision"] == "allow", v
        if acc == harvester:
            sent += 1
            if sent % 5 == 0:  # a gateway's traffic is spread over time: let the worker keep up
                server.wait_refreshed([harvester])
    assert first_flag is not None, f"{harvester} never reached review/block within its stream"
    states = server.wait_refreshed(organic + [harvester])
    for a in organic:
        assert states[a]["decision"] == "allow" and not states[a]["dirty"], states[a]
    assert states[harvester]["decision"] in ("review", "block")


def test_gateway_adapters_share_the_verdict(server, world):
    harvester, ok = world["harvester"], world["organic"][0]
    bare = httpx.Client(base_url=server.client.base_url, timeout=10)

    def litellm(account: str) -> httpx.Response:
        return bare.post("/beta/litellm_basic_guardrail_api", headers={"x-api-key": KEY}, json={
            "input_type": "request", "texts": ["Explain step by step how to sort a list."],
            "structured_messages": [{"role": "user", "content": "Explain step by step how to sort a list."}],
            "request_data": {"user_api_key_user_id": account, "user_api_key_hash": "abc"}, "model": "m"})

    assert litellm(harvester).json()["action"] == "BLOCKED"
    assert litellm(ok).json() == {"action": "NONE"}
    assert bare.post("/beta/litellm_basic_guardrail_api", json={"texts": ["x"], "request_data": {}}).status_code == 401
    env = {"x-distillguard-api-key": KEY}
    body = {"messages": [{"role": "user", "content": "hello there"}]}
    denied = bare.post("/envoy/authz/v1/chat/completions", headers={**env, "x-account-id": harvester}, json=body)
    assert denied.status_code == 403 and "distillguard" in denied.json()["reason"]
    allowed = bare.post("/envoy/authz/v1/chat/completions", headers={**env, "x-account-id": ok}, json=body)
    assert allowed.status_code == 200 and float(allowed.headers["x-distillguard-score"]) < 0.5


def test_kill9_loses_no_acknowledged_event(server, world):
    acked: dict[str, int] = {}
    for i in range(60):
        acc = f"acct_restart_{i % 3}"
        r = server.client.post("/v1/check", json={"account_id": acc, "prompt": f"question number {i} about rivers"})
        assert r.status_code == 200
        acked[acc] = acked.get(acc, 0) + 1
    batch = [{"account_id": f"acct_restart_{i % 3}", "prompt": f"batch {i}"} for i in range(30)]
    assert server.client.post("/v1/events:batch", json={"events": batch}).json()["accepted"] == 30
    for i in range(30):
        acked[f"acct_restart_{i % 3}"] += 1
    before = server.wait_refreshed([world["harvester"]])[world["harvester"]]
    server.kill9()
    worker_pid = json.loads(sqlite3.connect(server.state / "scores.sqlite").execute(
        "SELECT value FROM meta WHERE key = 'worker_status'").fetchone()[0])["pid"]
    with sqlite3.connect(server.state / "events.sqlite") as db:
        stored = dict(db.execute("SELECT account_id, COUNT(*) FROM events WHERE account_id LIKE 'acct_restart_%' "
                                 "GROUP BY account_id").fetchall())
    assert stored == acked
    deadline = time.time() + 10  # the refresh worker follows its server down
    while time.time() < deadline and Path(f"/proc/{worker_pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker_pid}").exists() or "Z" in Path(f"/proc/{worker_pid}/stat").read_text().split()[2]
    server.start()
    for acc, n in acked.items():
        assert server.client.get(f"/v1/accounts/{acc}").json()["n_events"] == n
    after = server.client.get(f"/v1/accounts/{world['harvester']}").json()
    assert after["score"] == before["score"] and after["decision"] == before["decision"]
    states = server.wait_refreshed(list(acked))
    assert all(s["score"] is not None for s in states.values())


def test_champion_switch_without_restart(server, world):
    root = world["root"]
    pid = server.proc.pid
    first = server.client.post("/v1/check", json={"account_id": world["organic"][1], "prompt": "hi"}).json()
    assert first["model_version"] == "1"
    _cli("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
         "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection",
         "--lgb-params", '{"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 100000}')
    _cli("promote", "2", "--mlruns", str(root / "mlruns"))
    assert server.client.post("/admin/reload").json() == {"model_version": "2"}
    deadline = time.time() + 30
    while time.time() < deadline:
        v = server.client.post("/v1/check", json={"account_id": world["organic"][1], "prompt": "hi"}).json()
        if v["model_version"] == "2":
            break
        time.sleep(0.2)
    assert v["model_version"] == "2", v
    assert server.proc.pid == pid and server.proc.poll() is None
    metrics = server.client.get("/metrics").text
    assert "distillguard_model_version 2.0" in metrics
    assert 'distillguard_decisions_total{decision="allow"}' in metrics
    assert "distillguard_request_seconds_bucket" in metrics and "distillguard_backlog_accounts" in metrics

"""The real server (uvicorn in a subprocess on a free loopback port) against a small trained model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from serving_helpers import AUTH, KEY, MAX_PROMPT, OTHER_KEY, Server, build_world, seed_background
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


def test_probes_need_no_key_everything_else_does(server):
    bare = httpx.Client(base_url=server.client.base_url, timeout=10)
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/readyz").json() == {"ready": True}  # an orchestrator's probe: readiness and nothing else
    assert bare.get("/readyz", headers={"Authorization": "Bearer wrong"}).status_code == 401
    body = {"account_id": "acct_x", "prompt": "hi"}
    assert bare.post("/v1/check", json=body).status_code == 401
    assert bare.post("/v1/check", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ("/metrics", "/v1/accounts/acct_x"):
        assert bare.get(path).status_code == 401
    assert bare.post("/v1/check", json=body, headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    log = server.log_path.read_text()
    assert KEY not in log and OTHER_KEY not in log


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
         "--lgb-params", '{"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 100000}', ok=(3,))
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
    assert "distillguard_model_version 2.0" in metrics and 'distillguard_model_info{version="2"} 1.0' in metrics
    assert 'distillguard_decisions_total{decision="allow"}' in metrics
    assert "distillguard_request_seconds_bucket" in metrics and "distillguard_backlog_accounts" in metrics


# -- analyst verdicts (issue 14) ------------------------------------------------------------------------------

ANALYST_KEY = "analyst-key-7f3c9a1e5b2d4c6f"


@pytest.fixture(scope="module")
def analyst_server(world):
    """A server of its own with an analyst key, pinned to the first model (another test promotes a
    second), fed the hold-out population (the replayed accounts included) and drained."""
    s = Server(world["root"], "verdicts", analyst_keys={"alice": ANALYST_KEY}, model_uri="models:/distillguard/1")
    s.start()
    seed_background(s, world, events=pd.read_parquet(world["root"] / "mlruns" / "holdout" / "events.parquet"))
    yield s
    s.stop()


def _check(server: Server, account: str) -> dict:
    r = server.client.post("/v1/check", json={"account_id": account, "prompt": "Summarise the plot of Hamlet."})
    assert r.status_code == 200, r.text
    return r.json()


def test_verdict_flips_the_gateway_at_once_and_survives_a_restart(analyst_server, world):
    server, harvester, person = analyst_server, world["harvester"], world["organic"][0]
    model = server.wait_refreshed([harvester, person])
    assert model[harvester]["decision"] == "block" and model[person]["decision"] == "allow"
    analyst = {"Authorization": f"Bearer {ANALYST_KEY}"}

    # a gateway key, or no key, cannot set a verdict
    body = {"verdict": "organic", "note": "known customer"}
    assert server.client.post(f"/v1/accounts/{harvester}/verdict", json=body).status_code == 403
    bare = httpx.Client(base_url=server.url, timeout=30)
    assert bare.post(f"/v1/accounts/{harvester}/verdict", json=body).status_code == 401
    assert bare.delete(f"/v1/accounts/{harvester}/verdict", headers=AUTH).status_code == 403
    r = bare.post(f"/v1/accounts/{person}/verdict", json={"verdict": "harvesting"}, headers=analyst)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "campaign"]
    assert _check(server, harvester)["decision"] == "block"

    t0 = time.time()
    r = bare.post(f"/v1/accounts/{person}/verdict", headers=analyst,
                  json={"verdict": "harvesting", "campaign": "wrapper-7", "note": "same wrapper as #7"})
    assert r.status_code == 201 and r.json()["by"] == "alice", r.text
    assert bare.post(f"/v1/accounts/{harvester}/verdict", json=body, headers=analyst).status_code == 201

    def overridden() -> None:
        v = _check(server, person)  # the very next answer, no refresh in between
        assert v["decision"] == "block" and v["reasons"][0] == "analyst verdict", v
        assert v["model_decision"] == "allow" and v["score"] is not None and v["score"] < 0.5, v
        assert v["analyst_verdict"]["by"] == "alice" and v["analyst_verdict"]["campaign"] == "wrapper-7"
        v = _check(server, harvester)
        assert v["decision"] == "allow" and v["reasons"][0] == "analyst verdict", v
        assert v["model_decision"] == "block" and v["score"] > 0.5
        # the gateway adapters answer from the same core
        lit = bare.post("/beta/litellm_basic_guardrail_api", headers={"x-api-key": KEY}, json={
            "input_type": "request", "texts": ["hi"], "structured_messages": [{"role": "user", "content": "hi"}],
            "request_data": {"user_api_key_user_id": person}, "model": "m"}).json()
        assert lit["action"] == "BLOCKED" and "analyst verdict" in lit["blocked_reason"], lit
        envoy = bare.post("/envoy/authz/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                          headers={"x-distillguard-api-key": KEY, "x-account-id": harvester})
        assert envoy.status_code == 200 and envoy.headers["x-distillguard-decision"] == "allow"

    overridden()
    listed = {v["account_id"]: v for v in server.client.get("/v1/verdicts").json()["verdicts"]}  # any key reads
    assert set(listed) == {person, harvester}
    assert listed[person]["verdict"] == "harvesting" and listed[harvester]["verdict"] == "organic"
    for v in listed.values():
        at = datetime.fromisoformat(v["at"]).timestamp()
        assert v["by"] == "alice" and t0 - 1 <= at <= time.time() + 1 and v["via"] == "api"
    assert server.client.get(f"/v1/accounts/{person}").json()["analyst_verdict"]["verdict"] == "harvesting"

    server.stop()  # durable: a restarted server answers by the same verdicts
    server.start()
    bare = httpx.Client(base_url=server.url, timeout=30)  # its new address
    overridden()

    # undo restores the model's decision; the history keeps both entries
    r = bare.delete(f"/v1/accounts/{harvester}/verdict", headers=analyst)
    assert r.status_code == 200 and r.json()["action"] == "undo"
    assert bare.delete(f"/v1/accounts/{harvester}/verdict", headers=analyst).status_code == 404
    v = _check(server, harvester)
    assert v["decision"] == "block" and "analyst verdict" not in v["reasons"] and v["analyst_verdict"] is None
    assert [v["account_id"] for v in server.client.get("/v1/verdicts").json()["verdicts"]] == [person]
    history = server.client.get("/v1/verdicts", params={"history": "true", "account_id": harvester}).json()
    assert [(e["action"], e["verdict"]) for e in history["verdicts"]] == [("set", "organic"), ("undo", "organic")]
    log = server.log_path.read_text()
    assert ANALYST_KEY not in log and ANALYST_KEY not in (server.state / "verdicts.sqlite").read_bytes().decode(
        "utf-8", "replace")


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard.cli", "labels", "export", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_labels_export_writes_the_verdicts_in_the_contract(analyst_server, world, tmp_path):
    server, person = analyst_server, world["organic"][1]
    analyst = {"Authorization": f"Bearer {ANALYST_KEY}"}
    for account, body in ((person, {"verdict": "organic", "campaign": "student"}),
                          ("acct_never_seen", {"verdict": "harvesting", "campaign": "wrapper-7"})):
        assert server.client.post(f"/v1/accounts/{account}/verdict", json=body, headers=analyst).status_code == 201
    active = {v["account_id"]: v for v in server.client.get("/v1/verdicts").json()["verdicts"]}
    labels, events = tmp_path / "labels.csv", tmp_path / "events.parquet"
    r = _export("--state", str(server.state), "--out", str(labels), "--events-out", str(events))
    assert r.returncode == 0, r.stderr
    assert "1 verdicts left out" in r.stderr and "acct_never_seen" in r.stderr  # no events: said, not dropped silently
    from distillguard.data.readers import read_events, read_labels

    got = read_labels(labels).set_index("account_id")
    expected = {a: v for a, v in active.items() if a != "acct_never_seen"}
    assert set(got.index) == set(expected) and person in got.index
    for a, v in expected.items():
        assert got.loc[a, "label"] == (v["verdict"] == "harvesting") and got.loc[a, "campaign"] == v["campaign"]
    logged = read_events(events)
    assert set(logged["account_id"]) == set(expected)
    with sqlite3.connect(server.state / "events.sqlite") as db:
        n = db.execute(f"SELECT COUNT(*) FROM events WHERE account_id IN ({','.join('?' * len(expected))})",
                       list(expected)).fetchone()[0]
    assert len(logged) == n
    _cli("validate", str(events), "--labels", str(labels))  # the contract's own check accepts both files
    # without --events-out every verdict is a label
    only = tmp_path / "all.parquet"
    r = _export("--state", str(server.state), "--out", str(only))
    assert r.returncode == 0 and set(read_labels(only)["account_id"]) == set(active), r.stderr
    r = _export("--state", str(tmp_path), "--out", str(only))
    assert r.returncode == 1 and "verdicts.sqlite: not found" in r.stderr and "Traceback" not in r.stderr


# -- hostile timestamps (issue 15) ---------------------------------------------------------------------------


def test_a_blocked_harvester_stays_flagged_whatever_it_dates_its_events(world):
    """The harvester writes `ts`. One event dated 9999-12-31 used to leave that event alone in its
    window (the window ran back from its newest `ts`): block became review. Now the server clamps a
    `ts` beyond its skew to the bound and windows by arrival: the event joins the window, the blocking
    events stay. 400 backfilled events dated 1970 are clamped too and sit at the window's old end,
    pushing none of its own events out."""
    s = Server(world["root"], "clock", model_uri="models:/distillguard/1")  # another test promotes a 2nd model
    try:
        s.start()
        seed_background(s, world, events=pd.read_parquet(world["root"] / "mlruns" / "holdout" / "events.parquet"))
        harvester = world["harvester"]
        before = s.wait_refreshed([harvester])[harvester]
        assert before["decision"] == "block", before

        r = s.client.post("/v1/check", json={"account_id": harvester, "prompt": "What time is it?",
                                             "ts": "9999-12-31T23:59:59Z"})
        assert r.status_code == 200 and r.json()["decision"] == "block", r.text
        after = s.wait_refreshed([harvester])[harvester]
        assert after["decision"] == "block" and after["window_size"] == before["window_size"] + 1, after

        filler = [{"account_id": harvester, "prompt": f"What is a good name for a cat, option {i}?",
                   "ts": "1970-01-01T00:00:00Z"} for i in range(400)]
        t0 = time.time()
        assert s.client.post("/v1/events:batch", json={"events": filler}).json()["accepted"] == 400
        backfilled = s.wait_refreshed([harvester])[harvester]
        # its own events all stay in the window (the newest 400 by time: its own, then the backfilled ones)
        assert backfilled["window_size"] == min(400, after["window_size"] + 400), backfilled
        assert backfilled["features"]["harvest_top5"] >= after["features"]["harvest_top5"] - 1e-9, backfilled
        # 360 cat names in a 400-event window dilute its shares (as honestly dated ones would, which would
        # also push its harvest prompts out); it stays flagged
        assert backfilled["decision"] in ("review", "block"), backfilled

        with sqlite3.connect(s.state / "events.sqlite") as db:
            newest, oldest = db.execute("SELECT MAX(ts_us), MIN(ts_us) FROM events WHERE account_id = ?",
                                        (harvester,)).fetchone()
        backdate_days = json.loads(s.config.read_text())["max_backdate_days"]
        assert newest <= (time.time() + 300 + 5) * 1e6  # the 9999 one: at most the skew after its arrival
        assert oldest >= (t0 - 5 - backdate_days * 86_400) * 1e6  # the 1970 ones: at most the backdate before it
        metrics = s.client.get("/metrics").text
        assert 'distillguard_events_ts_clamped_total{side="ahead"} 1.0' in metrics
        assert 'distillguard_events_ts_clamped_total{side="behind"} 400.0' in metrics
    finally:
        s.stop()

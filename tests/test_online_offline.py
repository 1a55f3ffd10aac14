"""What the gateway decides is what the model was measured to decide: a labelled world replayed
through a real server (real model, real SQLite, the real worker) ends with the scores an offline
`distillguard score` gives on the same events — also after a kill -9 and restart halfway through."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import spearmanr

from serving_helpers import Server, cli, payloads

FRESH_ACCOUNTS, FRESH_SEED = 160, 321
FRESH_CONFIG = '{"days": 21, "release_day": 8}'  # inside the model's 30-day scoring window
BATCH = 500


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("online")
    cli("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "4")
    cli("train", "--events", str(root / "sim/events.parquet"), "--labels", str(root / "sim/labels.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection")
    (root / "fresh.json").write_text(FRESH_CONFIG)
    cli("simulate", "--out", str(root / "fresh"), "--accounts", str(FRESH_ACCOUNTS), "--seed", str(FRESH_SEED),
        "--config", str(root / "fresh.json"))
    cli("score", "--events", str(root / "fresh/events.parquet"), "--out", str(root / "offline.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"))
    return root


def _replay(server: Server, events: pd.DataFrame) -> None:
    rows = payloads(events)
    for lo in range(0, len(rows), BATCH):
        r = server.client.post("/v1/events:batch", json={"events": rows[lo:lo + BATCH]})
        assert r.status_code == 200, r.text


def _settled(server: Server, timeout: float = 600) -> dict:
    """Wait until the queue is empty and the worker has swept the whole population twice since."""
    since = time.time()
    deadline = since + timeout
    first_seen = None
    while time.time() < deadline:
        st = server.client.get("/readyz").json()["refresh"]
        fresh = (st["status_at"] or 0) > since
        if fresh and st["backlog_accounts"] == 0 and st["backlog_events"] == 0 and st["sweeps_completed"] is not None:
            if first_seen is None:
                first_seen = st["sweeps_completed"]
            elif st["sweeps_completed"] >= first_seen + 2:
                return st
        else:
            first_seen = None
        time.sleep(0.5)
    raise AssertionError(f"the worker did not settle in {timeout} s: {st}")


def _compare(server: Server, root: Path) -> tuple[float, float]:
    offline = pd.read_csv(root / "offline.csv", dtype={"account_id": str}).set_index("account_id")
    online = {}
    for acc in offline.index:
        body = server.client.get(f"/v1/accounts/{acc}").json()
        online[acc] = (body["score"], body["decision"])
    frame = offline.assign(online_score=[online[a][0] for a in offline.index],
                           online_decision=[online[a][1] for a in offline.index])
    assert frame["online_score"].notna().all(), frame[frame["online_score"].isna()].head()
    rho = spearmanr(frame["score"], frame["online_score"]).statistic
    agree = float((frame["decision"] == frame["online_decision"]).mean())
    return float(rho), agree


@pytest.mark.parametrize("restart_midway", [False, True], ids=["straight", "kill9-midway"])
def test_online_scores_equal_offline_scores_on_the_same_events(trained, restart_midway):
    root = trained
    events = pd.read_parquet(root / "fresh/events.parquet").sort_values("ts", kind="stable")
    name = "kill9" if restart_midway else "straight"
    server = Server(root, name, refresh_idle_s=0.05).start()
    try:
        half = len(events) // 2
        _replay(server, events.iloc[:half])
        if restart_midway:
            time.sleep(1.0)  # the worker is busy with the first half when it dies
            server.kill9()
            server = Server(root, name, refresh_idle_s=0.05).start()
        _replay(server, events.iloc[half:])
        st = _settled(server)
        rho, agree = _compare(server, root)
        print(f"{name}: Spearman {rho:.4f}, decisions agree {agree:.2%}, population {st['population_accounts']}")
        assert rho >= 0.99 and agree >= 0.995, (rho, agree)
    finally:
        server.stop()


def test_a_batch_run_seeds_the_gateway_so_flagged_accounts_are_answered_at_once(trained):
    root = trained
    cli("score", "--events", str(root / "fresh/events.parquet"), "--out", str(root / "seeded.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--seed-state", str(root / "seeded"))
    offline = pd.read_csv(root / "seeded.csv", dtype={"account_id": str}).set_index("account_id")
    flagged = offline[offline["decision"] != "allow"].index[:5].tolist()
    assert flagged
    server = Server(root, "seeded").start()
    try:
        for acc in flagged:  # before the worker has touched anything, the batch verdict answers
            v = server.client.post("/v1/check", json={"account_id": acc, "prompt": "one more question"}).json()
            assert not v["pending"] and v["decision"] == offline.loc[acc, "decision"], v
    finally:
        server.stop()


def test_events_older_than_the_retention_leave_the_log(trained, tmp_path):
    root = trained
    server = Server(root, "retention", retention_days=2 / 86_400, retention_check_s=0.5).start()
    try:
        for i in range(20):
            server.client.post("/v1/check", json={"account_id": "acct_old", "prompt": f"question {i} about tides"})
        deadline = time.time() + 60
        while time.time() < deadline:
            storage = server.client.get("/readyz").json()["storage"]
            if storage["deleted_events"] >= 20:
                break
            time.sleep(0.5)
        assert storage["deleted_events"] >= 20 and storage["events_bytes"] > 0, storage
        assert server.client.get("/v1/accounts/acct_old").status_code == 404
    finally:
        server.stop()

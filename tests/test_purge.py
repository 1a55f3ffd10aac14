"""`distillguard purge`: an account's prompts leave the serve state, a workbench snapshot and the
embedding store, down to the bytes of every file; the service still starts and serves afterwards."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from serving_helpers import Server, cli, payloads

MARKER = "PELICANMARMALADE"
GONE = "purge-me"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard.cli", *args], check=False, capture_output=True,
                          text=True, timeout=600)


def _files_with(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _marker_prompts() -> list[str]:
    return [f"{MARKER} case {i}: please describe my private medical history number {i} in detail" for i in range(8)]


def _serve(root: Path) -> Server:
    """The server on `root/state`, once its model is loaded (slow on a busy machine: up to 15 minutes)."""
    s = Server(root).start(ready="/healthz")
    deadline = time.time() + 900
    while s.client.get("/readyz").status_code != 200:
        assert time.time() < deadline, s.client.get("/readyz").text
        time.sleep(0.5)
    return s


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("purge")
    cli("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "9")
    cli("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection", timeout=1500)
    events = pd.read_parquet(root / "sim" / "events.parquet")
    keep = sorted(events["account_id"].unique())[:80]
    events = events[events["account_id"].isin(keep)]
    now = pd.Timestamp.now("UTC")
    rows = payloads(events.assign(ts=now - (events["ts"].max() - events["ts"])))
    rows += [{"account_id": GONE, "prompt": p, "ts": (now - pd.Timedelta(minutes=10 - i)).isoformat()}
             for i, p in enumerate(_marker_prompts())]
    s = _serve(root)
    try:
        for lo in range(0, len(rows), 1000):
            r = s.client.post("/v1/events:batch", json={"events": rows[lo:lo + 1000]})
            assert r.status_code == 200, r.text
        s.wait_drained(timeout=900)
        assert s.client.get(f"/v1/accounts/{GONE}").json()["n_events"] == 8
    finally:
        s.stop()
    cli("workbench", "build", "--state", str(root / "state"), "--out", str(root / "wb"), "--mlruns",
        str(root / "mlruns"), "--store", str(root / "store"), timeout=1500)
    return {"root": root, "other": keep[0]}


def _store_keys(store: Path) -> set[bytes]:
    keys: set[bytes] = set()
    for path in store.glob("embeddings-*.sqlite"):
        c = sqlite3.connect(path)
        keys |= {r[0] for r in c.execute("SELECT key FROM vectors")}
        c.close()
    return keys


def test_purge_removes_the_accounts_prompts_from_every_file_and_the_service_still_serves(world):
    from distillguard.features.text_normalization import prompt_key

    root = world["root"]
    state, wb, store = root / "state", root / "wb", root / "store"
    needle = MARKER.encode()
    assert _files_with(state, needle) and _files_with(wb, needle)  # the text is there before
    theirs = {prompt_key(p) for p in _marker_prompts()}
    assert theirs <= _store_keys(store)

    r = _run("purge", "--state", str(state), "--account", GONE, "--workbench", str(wb), "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert f"purged {GONE}: 8 events and 1 scores from the state" in r.stdout, r.stdout
    assert "8 prompts and 8 texts from the snapshot, 8 store vectors" in r.stdout, r.stdout

    assert _files_with(state, needle) == [] and _files_with(wb, needle) == []
    assert not theirs & _store_keys(store)

    s = _serve(root)  # the model loads and the state serves
    try:
        assert s.client.get(f"/v1/accounts/{GONE}").status_code == 404
        assert s.client.get(f"/v1/accounts/{world['other']}").json()["n_events"] > 0
        assert s.client.post("/v1/check", json={"account_id": "new", "prompt": "hello there"}).status_code == 200
    finally:
        s.stop()
    assert _run("inspect", world["other"], "--workbench", str(wb), "--mlruns", str(root / "mlruns"), "--store",
                str(store)).returncode == 0
    gone = _run("inspect", GONE, "--workbench", str(wb), "--mlruns", str(root / "mlruns"), "--store", str(store))
    assert gone.returncode != 0 and "Traceback" not in gone.stderr


def test_purge_of_an_unknown_account_or_a_wrong_folder_is_one_line(world, tmp_path):
    root = world["root"]
    r = _run("purge", "--state", str(root / "state"), "--account", "nobody-at-all")
    assert r.returncode == 1 and "no data of nobody-at-all" in r.stderr and "Traceback" not in r.stderr
    r = _run("purge", "--state", str(tmp_path), "--account", "x")
    assert r.returncode == 1 and "no events.sqlite" in r.stderr and "Traceback" not in r.stderr
    r = _run("purge", "--account", "x")
    assert r.returncode == 1 and "--state" in r.stderr and "Traceback" not in r.stderr

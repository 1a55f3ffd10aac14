"""How fast the analyst pages answer with many accounts loaded.

Simulates `--accounts` accounts (10,000 by default: ~1.27M prompts), builds a workbench snapshot of
them with the champion model (`distillguard workbench build`, timed, peak memory of the child
reported), starts the real server on loopback with that snapshot, and requests every /ui page
`--repeat` times with the analyst key, printing p50 / max latency and the page size. The first
request of each page is reported apart (cold caches; the search page's first call loads the embedder).

Needs a champion in `--mlruns` (the README's demo command makes one).

    python bench/workbench_pages.py --accounts 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd

KEY = "bench-key-5c8e2a9f1d7b"


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "distillguard.cli", *args], check=True)
    return time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-workbench"))
    ap.add_argument("--mlruns", type=Path, default=Path("mlruns"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out = args.out
    sim = out / f"sim-{args.accounts}-{args.seed}"
    if not (sim / "events.parquet").exists():
        took = _cli("simulate", "--out", str(sim), "--accounts", str(args.accounts), "--seed", str(args.seed))
        print(f"simulated {args.accounts:,} accounts in {took:.0f} s")
    wb = out / f"workbench-{args.accounts}-{args.seed}"
    if not (wb / "meta.json").exists():
        took = _cli("workbench", "build", "--events", str(sim / "events.parquet"), "--out", str(wb),
                    "--mlruns", str(args.mlruns), "--store", str(out / "embeddings"))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"built the snapshot in {took:.0f} s, peak RSS of the build {peak:,.0f} MB")
    meta = json.loads((wb / "meta.json").read_text())
    size_mb = sum(f.stat().st_size for f in wb.rglob("*") if f.is_file()) / 1e6
    print(f"snapshot: {meta['accounts']:,} accounts, {meta['prompts']:,} prompts, {meta['distinct_texts']:,} "
          f"distinct texts, {meta['components']:,} campaign components, {size_mb:,.0f} MB on disk")

    port = _free_port()
    config = out / "serve.json"
    config.write_text(json.dumps({"workbench_path": str(wb.resolve())}))
    code = ("from pathlib import Path; from distillguard.serving.server import serve; "
            f"serve('127.0.0.1', {port}, Path({str(out / 'state')!r}), Path({str(args.mlruns)!r}), "
            f"Path({str(out / 'embeddings')!r}), Path({str(config)!r}), log_level='warning')")
    log = (out / "server.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "DISTILLGUARD_API_KEYS": KEY},
                            stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"},
                          timeout=120)
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited; see {out / 'server.log'}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise SystemExit("server not ready in 180 s")
            time.sleep(0.5)

        import sqlite3
        db = sqlite3.connect(wb / "workbench.sqlite")
        top = db.execute("SELECT account_id, component FROM accounts ORDER BY score DESC LIMIT 1").fetchone()
        heavy = db.execute("SELECT account_id FROM accounts WHERE decision = 'allow' ORDER BY prompts DESC LIMIT 1"
                           ).fetchone()[0]
        biggest = db.execute("SELECT component FROM components WHERE size > 1 ORDER BY size DESC LIMIT 1").fetchone()
        cluster = db.execute("SELECT cluster FROM cluster_accounts GROUP BY cluster ORDER BY SUM(prompts) DESC "
                             "LIMIT 1").fetchone()[0]
        prompt = db.execute("SELECT t.text FROM prompts p JOIN texts t USING(text_id) WHERE p.account_id = ? LIMIT 1",
                            (top[0],)).fetchone()[0]
        db.close()
        ev = pd.read_parquet(sim / "events.parquet", columns=["account_id"])
        pages = {
            "ranked list": "/ui/",
            "ranked, decision=block": "/ui/?decision=block",
            "ranked, page 40": "/ui/?page=40",
            "account (top flagged)": f"/ui/accounts/{quote(top[0])}",
            f"account (heaviest organic, {int((ev['account_id'] == heavy).sum())} prompts)": f"/ui/accounts/{quote(heavy)}",
            "campaigns list": "/ui/campaigns",
            "campaign (largest)": f"/ui/campaigns/{biggest[0]}" if biggest else "/ui/campaigns",
            "campaign (top account's)": f"/ui/campaigns/{top[1]}",
            "cluster (largest)": f"/ui/clusters/{cluster}",
            "search": f"/ui/search?q={quote(prompt[:300])}",
            "map (account)": f"/ui/map?account={quote(top[0])}",
            "map (campaign)": f"/ui/map?component={biggest[0] if biggest else top[1]}",
        }
        print(f"\n{'page':<48} {'first':>8} {'p50':>8} {'max':>8} {'KB':>7}")
        for name, path in pages.items():
            times = []
            for _ in range(args.repeat + 1):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:300]}")
            warm = times[1:]
            print(f"{name:<48} {times[0] * 1000:>6.0f}ms {statistics.median(warm) * 1000:>6.0f}ms "
                  f"{max(warm) * 1000:>6.0f}ms {len(r.content) / 1024:>7.0f}")
        print(f"\nserver RSS after the pages: {_rss_mb(proc.pid):,.0f} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()

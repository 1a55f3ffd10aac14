"""Load generator for `distillguard serve`: POST /v1/check at a target rate from a second process.

Open loop: request i is due at start + i / rate whatever happened before, so a slow server shows
up as latency (measured from the due time, "corrected") instead of as a lower send rate. Uses a
minimal HTTP/1.1 client on asyncio streams over keep-alive connections (an httpx client tops out
near 370 requests/s on a 2-core machine). Prints p50/p95/p99 latency, achieved throughput, errors,
staleness of the scores answered (now - scored_at), the refresh backlog sampled from /metrics,
the refresh worker's throughput and busy share over the run, the population state's size, the
state's disk use (scores per 100,000 accounts, the log per million events), and the server's and
worker's resident memory.

    python bench/serve_load.py --url http://127.0.0.1:8000 --key KEY --rate 300 --duration 60 \
        --events runs/sim/events.parquet --accounts 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from datetime import datetime
from urllib.parse import urlsplit

import numpy as np


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        return status, await self.reader.readexactly(length)


def _workload(events_path: str | None, accounts: int, seed: int) -> list[dict]:
    """Per request body, cycled: prompts of simulated accounts (renamed to `accounts` ids), or
    synthetic prompts when no events file is given."""
    rng = random.Random(seed)
    if events_path:
        import pandas as pd

        ev = pd.read_parquet(events_path).sort_values("ts")
        ids = {a: f"load_{i % accounts}" for i, a in enumerate(ev["account_id"].unique())}
        return [{"account_id": ids[a], "prompt": p, "model": m} for a, p, m in
                zip(ev["account_id"], ev["prompt"], ev["model"])]
    words = "river mountain sort list explain proof translate summarise table json step reason".split()
    return [{"account_id": f"load_{rng.randrange(accounts)}",
             "prompt": " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))} for _ in range(50_000)]


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process on this machine (the server and its worker run here)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, TypeError):
        return None
    return None


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


async def run(args: argparse.Namespace) -> dict:
    u = urlsplit(args.url)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    bodies = [json.dumps(b).encode() for b in _workload(args.events, args.accounts, args.seed)]
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(args.connections):
        free.put_nowait(Conn(u.hostname, u.port or 80))
    latency, service, staleness, errors, backlog = [], [], [], 0, []
    n_total = int(args.rate * args.duration)

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await free.get()
        sent = time.perf_counter()
        try:
            status, body = await conn.request("POST", "/v1/check", headers, bodies[i % len(bodies)])
            done = time.perf_counter()
            if status != 200:
                errors += 1
                return
            latency.append(done - due)
            service.append(done - sent)
            scored_at = json.loads(body).get("scored_at")
            if scored_at:
                staleness.append(time.time() - datetime.fromisoformat(scored_at).timestamp())
        except Exception:
            errors += 1
            conn.writer = None
        finally:
            free.put_nowait(conn)

    async def sample_backlog(stop: asyncio.Event) -> None:
        c = Conn(u.hostname, u.port or 80)
        while not stop.is_set():
            try:
                _, text = await c.request("GET", "/metrics", {"Authorization": f"Bearer {args.key}"})
                t = text.decode()
                backlog.append((_metric(t, "distillguard_backlog_accounts"), _metric(t, "distillguard_backlog_events"),
                                _metric(t, "distillguard_refresh_lag_seconds"),
                                _metric(t, "distillguard_backlog_over_bound")))
            except Exception:
                c.writer = None
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def readyz() -> dict:
        c = Conn(u.hostname, u.port or 80)
        _, text = await c.request("GET", "/readyz", {"Authorization": f"Bearer {args.key}"})
        return json.loads(text)

    before = await readyz()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_backlog(stop))
    tasks = []
    start = time.perf_counter()
    for i in range(n_total):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    stop.set()
    await sampler
    after = await readyz()
    r0, r1 = before.get("refresh", {}), after.get("refresh", {})
    refreshed = (r1.get("refreshed_accounts") or 0) - (r0.get("refreshed_accounts") or 0)
    busy = (r1.get("busy_seconds") or 0) - (r0.get("busy_seconds") or 0)
    storage = after.get("storage", {})
    population = r1.get("population_accounts") or 0

    def pct(xs, q):
        return round(float(np.percentile(xs, q)) * 1000, 2) if xs else None

    b = np.array([x for x in backlog if x[0] is not None], dtype=float) if backlog else np.zeros((0, 4))
    return {
        "target_rps": args.rate, "duration_s": round(elapsed, 1), "requests": n_total, "ok": len(latency),
        "errors": errors, "throughput_rps": round(len(latency) / elapsed, 1),
        "latency_ms": {"p50": pct(latency, 50), "p95": pct(latency, 95), "p99": pct(latency, 99),
                       "max": pct(latency, 100)},
        "service_ms": {"p50": pct(service, 50), "p99": pct(service, 99)},
        "staleness_s": {"answered_with_score": len(staleness),
                        "p50": round(float(np.median(staleness)), 2) if staleness else None,
                        "p95": round(float(np.percentile(staleness, 95)), 2) if staleness else None,
                        "max": round(float(max(staleness)), 2) if staleness else None},
        "backlog": {"accounts_max": float(b[:, 0].max()) if len(b) else None,
                    "accounts_last": float(b[-1, 0]) if len(b) else None,
                    "events_max": float(b[:, 1].max()) if len(b) else None,
                    "refresh_lag_max_s": round(float(b[:, 2].max()), 2) if len(b) else None,
                    "over_bound_seen": bool(b[:, 3].max()) if len(b) else None},
        "refresh": {"accounts_refreshed": refreshed,
                    "accounts_per_s": round(refreshed / elapsed, 1),
                    "events_per_s_absorbed": round(len(latency) / elapsed, 1),
                    "worker_busy_share": round(busy / elapsed, 2),
                    "population_accounts": population, "sweeps_completed": r1.get("sweeps_completed")},
        "storage": {**storage,
                    "scores_bytes_per_100k_accounts": round(storage.get("scores_bytes", 0) / max(population, 1) * 1e5),
                    # the log grows with events, not accounts (the WAL apart: it holds whole pages per commit)
                    "events_bytes_per_million_events": round(storage.get("events_bytes", 0)
                                                             / max(storage.get("events_logged") or 0, 1) * 1e6)},
        "rss_mb": {name: _rss_mb(pid) for name, pid in (("server", after.get("pids", {}).get("server")),
                                                         ("worker", after.get("pids", {}).get("worker")))},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--key", required=True)
    p.add_argument("--rate", type=float, default=300.0, help="requests per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--accounts", type=int, default=2000, help="distinct account ids")
    p.add_argument("--events", default=None, help="events file whose prompts to replay (else synthetic prompts)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()

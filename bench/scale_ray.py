"""How the Ray engine scales: `features` + `score` on N simulated accounts written as one Parquet
file per day (prints figures; not a test).

For each N: `distillguard simulate --accounts N --seed 7` once, split streaming into
`parts/day=YYYY-MM-DD/events.parquet`; then, in a fresh child process per N (so that the driver's
high-water mark is that N's alone), a local Ray (`--cpus`, `--object-store-mb`) runs the engine
(`features.engine_ray.ray_feature_table`) and the model scores the table on the driver. A sampler
thread reads the resident memory of every Ray process under the driver from /proc twice a second.

The model: `--mlruns` (a registry with a champion); by default one is trained once on a
300-account world in the work folder.

Printed per N: events, windowed events, distinct texts, seconds per stage, events/s and accounts/s
(end to end, Ray start excluded), CPU seconds of the driver and every Ray process (the figure to
size a cluster from when the machine is shared: wall time is not), driver peak RSS (ru_maxrss), the
largest peak RSS of any one Ray worker process, the embedding shards' size, and seconds per day
partition.

    python bench/scale_ray.py                           # N = 10000, 50000, 100000
    python bench/scale_ray.py --sizes 2000,5000 --cpus 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_SIZES = (10_000, 50_000, 100_000)
DEFAULT_WORK = Path("/tmp/distillguard-bench-ray")
CLI = [sys.executable, "-m", "distillguard.cli"]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def _run(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL)


def ensure_model(work: Path) -> Path:
    mlruns = work / "mlruns"
    if not (mlruns / "mlflow.db").exists():
        _run("simulate", "--out", str(work / "train-sim"), "--accounts", "300", "--seed", "4")
        _run("train", "--events", str(work / "train-sim/events.parquet"), "--labels",
             str(work / "train-sim/labels.csv"), "--mlruns", str(mlruns), "--store", str(work / "train-store"),
             "--no-time-to-detection")
    return mlruns


def ensure_world(work: Path, n: int) -> Path:
    """The simulated world of `n` accounts as one Parquet file per day (streamed: never all in memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = work / f"parts-{n}"
    if (parts / "_done").exists():
        return parts
    sim = work / f"sim-{n}"
    if not (sim / "events.parquet").exists():
        _run("simulate", "--out", str(sim), "--accounts", str(n), "--seed", "7")
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        with pq.ParquetFile(sim / "events.parquet") as pf:
            for batch in pf.iter_batches(batch_size=200_000):
                table = pa.Table.from_batches([batch])
                day = pc.strftime(table.column("ts"), format="%Y-%m-%d")
                for d in pc.unique(day).to_pylist():
                    rows = table.filter(pc.equal(day, d))
                    if d not in writers:
                        (parts / f"day={d}").mkdir(parents=True, exist_ok=True)
                        writers[d] = pq.ParquetWriter(parts / f"day={d}" / "events.parquet", rows.schema)
                    writers[d].write_table(rows)
    finally:
        for w in writers.values():
            w.close()
    (parts / "_done").write_text("")
    return parts


class RaySampler(threading.Thread):
    """Peak resident memory of every process descended from this one (the local Ray's workers)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: dict[int, tuple[int, str]] = {}  # pid -> (peak RSS bytes, name)
        self.cpu_s: dict[int, float] = {}  # pid -> CPU seconds (user + system) last seen
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.5):
            parent: dict[int, int] = {}
            info: dict[int, tuple[int, str]] = {}
            cpu: dict[int, float] = {}
            for p in Path("/proc").iterdir():
                if not p.name.isdigit():
                    continue
                try:
                    stat = (p / "stat").read_text()
                    rss = int((p / "statm").read_text().split()[1]) * PAGE
                except OSError:
                    continue
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                parent[int(p.name)] = int(fields[1])
                info[int(p.name)] = (rss, name)
                cpu[int(p.name)] = (int(fields[11]) + int(fields[12])) / TICKS
            for pid, (rss, name) in info.items():
                q, seen = pid, 0
                while q in parent and q != me and seen < 20:
                    q, seen = parent[q], seen + 1
                if q == me and pid != me:
                    self.cpu_s[pid] = cpu[pid]
                    if rss > self.peak.get(pid, (0, ""))[0]:
                        self.peak[pid] = (rss, name)


def measure(parts: Path, mlruns: Path, store: Path, cpus: int, store_mb: int) -> dict:
    """One N, in this (fresh) process."""
    os.environ["DISTILLGUARD_RAY_CPUS"] = str(cpus)
    os.environ["DISTILLGUARD_RAY_OBJECT_STORE_MB"] = str(store_mb)
    from distillguard.features.engine_ray import ray_feature_table, start_ray, stop_ray
    from distillguard.training.inference import Inference
    from distillguard.training.registry import Registry
    from distillguard.training.train_job import load_bundle

    bundle = load_bundle(Registry(mlruns), "models:/distillguard@champion")
    sampler = RaySampler()
    sampler.start()
    started = start_ray(None)
    try:
        t0, cpu0 = time.perf_counter(), _own_cpu_s()
        run = ray_feature_table(parts, bundle.state, store, log=lambda s: print("   ", s, file=sys.stderr, flush=True))
        t1 = time.perf_counter()
        scored = Inference(bundle, None).score_features(run.features)  # type: ignore[arg-type]
        t2 = time.perf_counter()
    finally:
        stop_ray(started)
        sampler.stop.set()
        sampler.join()
    workers = {pid: v for pid, v in sampler.peak.items() if not v[1].startswith(("gcs_server", "raylet", "plasma"))}
    top = sorted(workers.values(), reverse=True)[:3]
    files = len(list(parts.rglob("*.parquet")))
    return {"events": run.events, "windowed": run.windowed_events, "texts": run.distinct_texts,
            "accounts": len(run.features), "files": files, "stages": {k: round(v, 1) for k, v in run.seconds.items()},
            "features_s": round(t1 - t0, 1), "score_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
            "events_per_s": round(run.events / (t2 - t0)), "accounts_per_s": round(len(run.features) / (t2 - t0), 1),
            "cpu_s": round(sum(sampler.cpu_s.values()) + _own_cpu_s() - cpu0, 1),
            "cpu_ms_per_event": round(1000 * (sum(sampler.cpu_s.values()) + _own_cpu_s() - cpu0) / run.events, 3),
            "driver_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "worker_peak_mb": [(round(r / 2**20), n) for r, n in top],
            "ray_system_peak_mb": sorted(((round(r / 2**20), n) for r, n in sampler.peak.values()
                                          if n.startswith(("gcs_server", "raylet", "plasma"))), reverse=True)[:2],
            "store_mb": round(run.store_bytes / 2**20, 1), "population_mb": round(run.population_bytes / 2**20, 1),
            "blocked": int((scored.decisions == "block").sum()),
            "s_per_partition": round((t2 - t0) / files, 2)}


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--mlruns", type=Path, default=None, help="a registry with a champion [default: train one]")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--object-store-mb", type=int, default=1024)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: parts|mlruns|store
    args = ap.parse_args()
    if args.one:
        parts, mlruns, store = args.one.split("|")
        print(json.dumps(measure(Path(parts), Path(mlruns), Path(store), args.cpus, args.object_store_mb)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    mlruns = args.mlruns or ensure_model(args.work)
    for n in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        parts = ensure_world(args.work, n)
        print(f"N={n:,}: world ready ({time.perf_counter() - t:.0f} s)", flush=True)
        store = args.work / f"store-{n}-{int(time.time())}"  # a cold store: every distinct text is embedded
        res = subprocess.run([sys.executable, __file__, "--one", f"{parts}|{mlruns}|{store}", "--cpus", str(args.cpus),
                              "--object-store-mb", str(args.object_store_mb)], capture_output=True, text=True)
        if res.returncode:
            print(res.stderr[-3000:])
            raise SystemExit(f"N={n}: the run failed")
        print(res.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()

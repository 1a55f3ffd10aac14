"""`--engine ray`: `features` and `score` on a local Ray (2 CPUs, a small object store) over a simulated
world split into several Parquet files give what the local engine gives on the same folder, and the
embedding shards the Ray job writes are read by the local store. Real CLI in subprocesses, real Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray", reason="the ray engine needs the `ray` extra: pip install -e '.[test,ray]'")

CLI = [sys.executable, "-m", "distillguard.cli"]
# Relative, for feature values: exact indexes and the same per-text maths, but the float32 similarity
# products (intent scores) are computed by BLAS over other batches of texts, whose blocking changes the
# last bits (measured: 1.2e-6 on harvest_count, <= 1.1e-7 elsewhere). Scores and decisions: identical.
TOLERANCE = 1e-5


def _processes_mentioning(text: str) -> list[int]:
    """Pids of running processes whose command line mentions `text` (Ray's session folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    # Ray's session folder in a short unique path (its socket paths have a length limit), so the test can
    # tell that the Ray each command started is gone when the command ends
    ray_tmp = Path(tempfile.mkdtemp(prefix="dgray-", dir="/tmp"))
    env = {**os.environ, "DISTILLGUARD_RAY_CPUS": "2", "DISTILLGUARD_RAY_OBJECT_STORE_MB": "200",
           "RAY_TMPDIR": str(ray_tmp)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    mlruns, local_store, ray_store = root / "mlruns", root / "store-local", root / "store-ray"
    cli("simulate", "--out", str(root / "sim"), "--accounts", "90", "--seed", "4")
    cli("train", "--events", str(root / "sim/events.parquet"), "--labels", str(root / "sim/labels.csv"),
        "--mlruns", str(mlruns), "--store", str(local_store), "--no-time-to-detection")
    # the events as a folder partitioned by week, as a log shipper would write them
    table = pq.read_table(root / "sim/events.parquet")
    week = pd.Series(table.column("ts").to_pandas()).dt.strftime("%G-W%V").to_numpy()
    for w in sorted(set(week)):
        (root / "parts" / f"week={w}").mkdir(parents=True)
        pq.write_table(table.filter(pa.array(week == w)), root / "parts" / f"week={w}" / "events.parquet")
    parts = root / "parts"
    common = ["--events", str(parts), "--mlruns", str(mlruns)]
    out = {"root": root, "parts": parts, "ray_store": ray_store, "ray_tmp": ray_tmp, "cli": cli,
           "files": len(set(week))}
    cli("features", *common, "--store", str(local_store), "--out", str(root / "local.parquet"))
    cli("score", *common, "--store", str(local_store), "--out", str(root / "local.csv"))
    out["features_run"] = cli("features", *common, "--store", str(ray_store), "--engine", "ray",
                              "--out", str(root / "ray.parquet"))
    cli("score", *common, "--store", str(ray_store), "--engine", "ray", "--out", str(root / "ray.csv"))
    yield out
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_world_is_split_into_several_files(world):
    assert world["files"] >= 3


def test_ray_features_equal_the_local_engine(world):
    local = pd.read_parquet(world["root"] / "local.parquet")
    ray_ = pd.read_parquet(world["root"] / "ray.parquet")
    assert list(ray_.index) == list(local.index) and len(local) >= 80
    assert list(ray_.columns) == list(local.columns)
    assert (ray_.dtypes == local.dtypes).all()
    a, b = local.to_numpy(float), ray_.to_numpy(float)
    assert (np.isnan(a) == np.isnan(b)).all()
    diff = np.abs(np.nan_to_num(a) - np.nan_to_num(b)) / np.maximum(1.0, np.abs(np.nan_to_num(a)))
    worst = pd.Series(diff.max(axis=0), index=local.columns).sort_values()
    assert worst.iloc[-1] <= TOLERANCE, worst.tail(5)
    # the coordination columns, computed from the population state on the driver, are not trivially zero
    assert local["wrapper_share"].gt(0).any()


def test_ray_score_gives_the_same_decisions(world):
    local = pd.read_csv(world["root"] / "local.csv", dtype={"account_id": str})
    ray_ = pd.read_csv(world["root"] / "ray.csv", dtype={"account_id": str})
    assert list(ray_["account_id"]) == list(local["account_id"])
    assert list(ray_["decision"]) == list(local["decision"])
    assert np.abs(ray_["score"] - local["score"]).max() <= 1e-6
    assert list(ray_["reasons"].fillna("")) == list(local["reasons"].fillna(""))
    assert local["decision"].nunique() >= 2  # a world where the comparison means something


def test_the_local_store_reads_the_vectors_the_ray_job_wrote(world):
    from distillguard.features.embedding import load_embedder
    from distillguard.features.embedding_shards import ShardedEmbeddingStore
    from distillguard.features.embedding_store import EmbeddingStore
    from distillguard.features.text_normalization import prompt_key

    embedder = load_embedder("static")
    shards = world["ray_store"] / "embeddings-static.shards"
    assert list(shards.glob("shard-*.parquet")), "the ray job wrote no embedding shards"
    # the newest day's prompts are in every account's window, so the job embedded them
    events = pd.read_parquet(world["root"] / "sim/events.parquet")
    texts = events.loc[events["ts"] >= events["ts"].max() - pd.Timedelta(days=1), "prompt"].tolist()[:200]
    sharded = ShardedEmbeddingStore(shards, embedder.identity)
    assert set(sharded.get_many(prompt_key(t) for t in texts)) == {prompt_key(t) for t in texts}
    fresh = world["root"] / "reader"
    fresh.mkdir()
    shutil.copytree(shards, fresh / "embeddings-static.shards")
    with EmbeddingStore(fresh / "embeddings-static.sqlite", embedder.identity) as store:
        from_shards = store.embed(texts, embedder)
        assert store.last_stats.computed == 0 and store.last_stats.cached == store.last_stats.distinct
    assert np.allclose(from_shards, embedder.encode(list(texts)), atol=1e-6)


def test_each_command_stops_the_ray_it_started(world):
    assert "[ray] features:" in world["features_run"].stderr  # the stage lines, plain when not a terminal
    assert _processes_mentioning(str(world["ray_tmp"])) == []


def test_what_the_ray_engine_cannot_read_is_a_one_line_error(world, tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text("account_id,ts,prompt\na,2026-01-01T00:00:00Z,hi\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for events, message in ((csv, "reads a Parquet file or a folder"), (empty, "holds no .parquet files")):
        res = subprocess.run([*CLI, "features", "--engine", "ray", "--events", str(events), "--out",
                              str(tmp_path / "f.parquet"), "--mlruns", str(world["root"] / "mlruns"),
                              "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
        assert res.returncode == 1, res.stderr
        assert message in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_windows_taken_per_account_bucket_equal_the_whole_population():
    """The ray engine windows each account bucket with the population's window end computed from every
    account's newest event; that must keep exactly the rows the local engine keeps, an account dated
    far ahead of the rest (which must not move the end) included."""
    from distillguard.data.parquet_dataset import account_buckets
    from distillguard.features.window import account_windows, window_end_us

    rng = np.random.default_rng(3)
    n = 3000
    accounts = np.array([f"acct-{i % 60:02d}" for i in range(n)], dtype=object)
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 80 * 86_400, n), unit="s")
    ts = pd.Series(ts)
    ts[accounts == "acct-07"] += pd.Timedelta(days=400)  # one account dated far ahead
    events = pd.DataFrame({"account_id": accounts, "ts": ts, "prompt": "p"})
    whole = account_windows(events, 40, 42.0)
    t_us = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    end = window_end_us(pd.Series(t_us).groupby(accounts).max().to_numpy(), int(42.0 * 86_400e6))
    buckets = account_buckets(accounts, 4)
    parts = [account_windows(events[buckets == b], 40, 42.0, newest_overall_us=end) for b in range(4)]
    assert sorted(pd.concat(parts).index) == sorted(whole.index)
    assert 0 < len(whole) < n

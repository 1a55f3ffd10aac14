"""The distributed engine (`--engine ray`): the account feature table of a folder of Parquet events
computed on a Ray cluster with Ray Data, equal to the local engine's (`pipeline.build_features`) on
the same events.

Stages (each a Ray Data operator; nothing but small results reaches the driver):

1. read: one task per file (`EventsFolderDatasource`), rows checked against the contract, numbered
   in arrival order and bucketed by account (crc32 of the id);
2. window: group by account bucket, keep each account's scoring window (the population's window
   end, `window.window_end_us`, from every account's newest event: a group-by over all files);
3. distinct texts: the normalised-text key of every windowed prompt, deduplicated across partitions
   by a shuffle on the key (the first arrival's raw text kept, as the local engine does);
4. embed and score: an actor pool (one embedder per actor; a GPU per actor when the cluster has
   GPUs) embeds each distinct text and its sentences once, scores intents and harvest probability,
   and writes the vectors as Parquet shards of the embedding store (`embedding_shards`);
5. join the per-text results back to the rows (hash join on the key);
6. population contributions per account (group by bucket), summed into the population state on the
   driver, which keeps only the aggregate maps (text/skeleton/infrastructure -> accounts);
7. per-account features (group by bucket) against the population state, broadcast once;
8. community columns on the driver: the wrapper graph spans every account, so its connected
   components are computed once from the state (only accounts that share wrappers take part).

What stays on the driver: the population state's maps (stage 6) and the wrapper graph (stage 8);
the organic baseline's FAISS index is shipped whole to every feature worker.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from distillguard.data.contract import EVENT_COLUMNS
from distillguard.data.parquet_dataset import BUCKET, SEQ, T_US, EventPart, event_parts, events_frame, read_part
from distillguard.features.account_features import account_features_and_graph
from distillguard.features.embedding import load_embedder
from distillguard.features.embedding_shards import ShardedEmbeddingStore, shards_dir_for
from distillguard.features.family_coordination import (
    CLIQUE_MAX, HARVEST_SHAPED, LINK_INTENT, MAX_KEYS_PER_ACCOUNT, SMALL_ACCOUNT,
)
from distillguard.features.pipeline import EmbeddingContext, FeatureState, FeatureStateError, score_distinct_texts
from distillguard.features.population import PopulationState, communities, from_rows, pair_edges
from distillguard.features.rows import AccountRows, PromptTable
from distillguard.features.text_normalization import key_of_normalized, normalize_prompt, prompt_key
from distillguard.features.window import account_windows, window_end_us

KEY = "_key"  # blake2b-16 of the normalised prompt (the embedding store's key)
KEY_BUCKET = "_key_bucket"
_HELPERS = (SEQ, BUCKET, T_US, KEY, KEY_BUCKET)
ROWS_PER_BUCKET = 50_000  # events per account bucket (a feature task's input)
TEXT_BATCH = 2048  # distinct texts per embedding call
START_ATTEMPTS = 3  # starting a local Ray on a busy machine


# -- Ray itself ----------------------------------------------------------------------------------

def start_ray(address: str | None) -> bool:
    """Join the cluster at `address` ('auto': the one this machine belongs to) or, with None, start a
    local Ray sized by DISTILLGUARD_RAY_CPUS / DISTILLGUARD_RAY_OBJECT_STORE_MB (default: this machine).
    Returns True when this call started Ray (the caller shuts it down)."""
    if ray.is_initialized():
        return False
    common = {"include_dashboard": False, "logging_level": "WARNING", "configure_logging": True}
    if address:
        ray.init(address=address, **common)
    else:
        cpus = os.environ.get("DISTILLGUARD_RAY_CPUS")
        store_mb = os.environ.get("DISTILLGUARD_RAY_OBJECT_STORE_MB")
        for attempt in range(START_ATTEMPTS):
            before = _children()
            try:
                ray.init(num_cpus=int(cpus) if cpus else None,
                         object_store_memory=int(store_mb) * 1024 ** 2 if store_mb else None, **common)
                break
            except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
                # Ray waits a fixed 30 s for its raylet to register; a busy machine can miss that. The
                # half-started node's processes (our children) are not stopped by Ray: stop them.
                ray.shutdown()
                _stop_processes(_children() - before)
                if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS - 1:
                    raise
    ctx = ray.data.DataContext.get_current()
    interactive = sys.stderr.isatty()
    ctx.enable_progress_bars = interactive  # bars on a terminal; plain stage lines (our `log`) otherwise
    ctx.enable_operator_progress_bars = interactive
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    return True


def _children() -> set[int]:
    """Pids of this process's children (Linux /proc; empty elsewhere)."""
    me, out = os.getpid(), set()
    for p in Path("/proc").glob("[0-9]*"):
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
            out.add(int(p.name))
    return out


def _stop_processes(pids: set[int], grace_s: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)  # reaps it once it has exited
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists()


def stop_ray(started: bool) -> None:
    if started and ray.is_initialized():
        ray.shutdown()


# -- input ----------------------------------------------------------------------------------------

class EventsFolderDatasource(Datasource):
    """A folder of events files, one read task per file (see `data.parquet_dataset`)."""

    def __init__(self, parts: list[EventPart], buckets: int, on_bad_rows: str) -> None:
        self.parts, self.buckets, self.on_bad_rows = parts, buckets, on_bad_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        def reader(part: EventPart) -> Callable[[], Iterator[pa.Table]]:
            return lambda: read_part(part, self.buckets, on_bad_rows=self.on_bad_rows)

        return [ReadTask(reader(p), BlockMetadata(num_rows=p.rows, size_bytes=None, exec_stats=None,
                                                  input_files=(str(p.path),)))
                for p in self.parts]


# -- shipping the feature state to workers ---------------------------------------------------------

def state_blob(state: FeatureState) -> bytes:
    """The saved feature state as one tar (workers rebuild it with `FeatureState.load`)."""
    with tempfile.TemporaryDirectory(prefix="dg-state-") as tmp:
        state.save(Path(tmp) / "state")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(Path(tmp) / "state", arcname="state")
        return buf.getvalue()


_WORKER_CACHE: dict[str, object] = {}  # per worker process: objects fetched once per job
_CACHE_SIZE = 2  # the feature state and the population state of the job running


def _cached(ref_box: list, build: Callable[[object], object] = lambda x: x) -> object:
    """The object behind `ref_box[0]` (boxed so that Ray passes the reference, not its value), built once
    per worker process."""
    key = ref_box[0].hex()
    if key not in _WORKER_CACHE:
        while len(_WORKER_CACHE) >= _CACHE_SIZE:
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))
        _WORKER_CACHE[key] = build(ray.get(ref_box[0]))
    return _WORKER_CACHE[key]


def _load_state(blob: bytes) -> FeatureState:
    tmp = tempfile.mkdtemp(prefix="dg-state-")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    return FeatureState.load(Path(tmp) / "state")


# -- stage functions (run in Ray workers) ----------------------------------------------------------

def _window_group(table: pa.Table, *, newest_us: int, max_events: int, max_days: float,
                  key_buckets: int) -> pa.Table:
    """The windowed rows of one account bucket, in arrival order, with their text keys."""
    table = table.take(pc.sort_indices(table, [(SEQ, "ascending")]))
    frame = pd.DataFrame({"account_id": table.column("account_id").to_numpy(zero_copy_only=False),
                          "ts": table.column(T_US).to_numpy().astype("datetime64[us]")})
    kept = account_windows(frame, max_events, max_days, newest_overall_us=newest_us)
    table = table.take(pa.array(np.flatnonzero(frame.index.isin(kept.index))))
    prompts = table.column("prompt").to_numpy(zero_copy_only=False)
    codes, distinct = pd.factorize(prompts)
    keys = [prompt_key(p) for p in distinct]
    key_col = pa.array([keys[c] for c in codes], type=pa.binary(16))
    kb = np.array([k[0] % key_buckets for k in keys], dtype=np.int64)[codes]
    return table.append_column(KEY, key_col).append_column(KEY_BUCKET, pa.array(kb))


def _first_per_key(frame: pd.DataFrame) -> pd.DataFrame:
    """Each key once, with the raw text of its first arrival."""
    return frame.sort_values(SEQ, kind="stable").drop_duplicates(KEY)


class TextScorer:
    """One embedder per actor: embeds distinct texts (and their sentences), scores them, writes shards."""

    def __init__(self, profile: str, state_ref: list, shards: str) -> None:
        state: FeatureState = _cached(state_ref, _load_state)  # type: ignore[assignment]
        self.embedder = load_embedder(profile)
        if self.embedder.identity != state.identity:
            raise FeatureStateError(f"this worker's {profile} embedder ({self.embedder.identity.fingerprint}) "
                                    f"differs from the feature state's ({state.identity.fingerprint})")
        self.scorer, self.model = state.scorer, state.prompt_model
        self.shards = ShardedEmbeddingStore(Path(shards), self.embedder.identity)

    def __call__(self, table: pa.Table) -> pa.Table:
        texts = table.column("prompt").to_pylist()
        buffer = _VectorBuffer()
        scored = score_distinct_texts(texts, EmbeddingContext(self.embedder, buffer), self.scorer,  # type: ignore
                                      self.model)
        self.shards.write_shard(list(buffer.vectors), np.array(list(buffer.vectors.values()))
                                if buffer.vectors else np.zeros((0, self.embedder.dim), np.float32))
        return pa.table({KEY: table.column(KEY), "vec": _fixed(scored.vectors), "intents": _fixed(scored.intent_scores),
                         "harvest_p": pa.array(scored.harvest_p)})


class _VectorBuffer:
    """Stands in for the embedding store inside an actor: each distinct normalised text embedded once
    per call, in the store's order (longest first), its vector kept for the shard."""

    def __init__(self) -> None:
        self.vectors: dict[bytes, np.ndarray] = {}

    def embed(self, texts: list[str], embedder, *, show_progress: bool = False) -> np.ndarray:
        normal = [normalize_prompt(t) for t in texts]
        distinct = list(dict.fromkeys(normal))
        todo = sorted((t for t in distinct if key_of_normalized(t) not in self.vectors), key=len, reverse=True)
        for lo in range(0, len(todo), 1024):
            chunk = todo[lo:lo + 1024]
            for t, v in zip(chunk, embedder.encode(chunk, batch_size=64)):
                self.vectors[key_of_normalized(t)] = v
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([self.vectors[key_of_normalized(t)] for t in normal])


def _fixed(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    return arr.flatten().to_numpy().reshape(len(arr), arr.type.list_size)


def _account_rows(table: pa.Table) -> tuple[pd.DataFrame, PromptTable]:
    """The events of a bucket (arrival order) and their prompt table, as the local engine builds them."""
    table = table.take(pc.sort_indices(table, [(SEQ, "ascending")]))
    events = events_frame(table.select([c for c in EVENT_COLUMNS if c in table.column_names]))
    text_ids, _ = pd.factorize(np.array(table.column(KEY).to_pylist(), dtype=object))
    first = np.zeros(text_ids.max() + 1, dtype=np.int64)
    first[text_ids[::-1]] = np.arange(len(text_ids))[::-1]
    vectors = _matrix(table.column("vec"))
    prompts = PromptTable(text_ids.astype(np.int64), np.ascontiguousarray(vectors[first]),
                          _matrix(table.column("intents")), table.column("harvest_p").to_numpy())
    return events, prompts


def _contributions_group(table: pa.Table) -> pa.Table:
    events, prompts = _account_rows(table)
    contrib = from_rows(AccountRows(events, prompts))
    return pa.table({"account_id": list(contrib), "contribution": [pickle.dumps(c) for c in contrib.values()]})


def _features_group(table: pa.Table, *, state_ref: list, population_ref: list) -> pd.DataFrame:
    state: FeatureState = _cached(state_ref, _load_state)  # type: ignore[assignment]
    population: PopulationState = _cached(population_ref)  # type: ignore[assignment]
    events, prompts = _account_rows(table)
    feats, _ = account_features_and_graph(events, prompts, state.baseline, state.baseline_accounts,
                                          state.scorer.threshold_vector(), state.common_skeletons, state.config,
                                          population, population_current=True)
    return feats.reset_index()


# -- driver-side maths -----------------------------------------------------------------------------

def strip_contributions(population: PopulationState) -> None:
    """Drop each account's own maps once summed into the state: the features read the sums, the
    volume and the summary only (the state can then no longer replace an account)."""
    for c in population.contrib.values():
        c.texts, c.keys, c.payloads, c.infra, c.models = {}, {}, {}, {}, {}


def community_columns(population: PopulationState, features: pd.DataFrame, common_skeletons: frozenset[int],
                      wrapper_min_texts: int) -> pd.DataFrame:
    """The community columns of every account (as `family_coordination.compute` gives them when the
    whole population is one batch), from the population state and each account's harvest_top5 and
    wrapper_share."""
    top5 = features["harvest_top5"].to_numpy()
    share = features["wrapper_share"].to_numpy()
    for a, t, s in zip(features.index.tolist(), top5.tolist(), share.tolist()):
        population.set_summary(a, t, s)
    wrappers = population.wrappers(common_skeletons, wrapper_min_texts)
    qualified = population.qualified_uses(wrappers, small_account=SMALL_ACCOUNT, harvest_shaped=HARVEST_SHAPED)
    groups = communities(population, pair_edges(qualified[qualified["p"] >= LINK_INTENT], MAX_KEYS_PER_ACCOUNT,
                                                CLIQUE_MAX))
    out = features.copy()
    size = np.ones(len(out))
    intent = np.zeros(len(out))
    wshare = np.zeros(len(out))
    for i, a in enumerate(out.index.tolist()):
        n, sum_top5, sum_share = groups.of(a)
        size[i] = n
        if n > 1:
            intent[i] = (sum_top5 - top5[i]) / (n - 1)
            wshare[i] = (sum_share - share[i]) / (n - 1)
    out["community_size"], out["community_intent"], out["community_wrapper_share"] = size, intent, wshare
    return out


# -- the job ---------------------------------------------------------------------------------------

@dataclass
class RayFeatureRun:
    features: pd.DataFrame  # index account_id (sorted), columns FEATURE_NAMES
    events: int
    windowed_events: int
    distinct_texts: int
    store_dir: Path
    store_bytes: int
    population_bytes: int  # the population state as broadcast to every feature worker (pickled)
    seconds: dict[str, float] = field(default_factory=dict)


def ray_feature_table(folder: Path, state: FeatureState, store_dir: Path, *, on_bad_rows: str = "fail",
                      embed_actors: int | None = None, log: Callable[[str], None] = lambda s: None) -> RayFeatureRun:
    """The account feature table of the events under `folder` (the whole folder's scoring window as one
    population), computed on the connected Ray cluster; vectors go to `store_dir`'s shard folder."""
    if state.prompt_model is None:
        raise FeatureStateError("this feature state has no fitted prompt intent model (`train` fits it)")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    parts = event_parts(folder)
    n_rows = sum(p.rows for p in parts)
    buckets = max(2, min(1024, -(-n_rows // ROWS_PER_BUCKET)))
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = embed_actors or (gpus if gpus else max(1, int(resources.get("CPU", 2)) // 2))
    state_ref = [ray.put(state_blob(state))]
    shards = shards_dir_for(store_dir / f"embeddings-{state.profile}.sqlite")
    ShardedEmbeddingStore(shards, state.identity)  # refuses a folder of another embedder up front
    cfg = state.config

    events = ray.data.read_datasource(EventsFolderDatasource(parts, buckets, on_bad_rows))
    # the population's window end, from every account's newest event (as `account_windows` takes it)
    newest = events.groupby("account_id", num_partitions=buckets).max(T_US)
    newest_us = window_end_us(newest.to_pandas()[f"max({T_US})"].to_numpy(dtype=np.int64),
                              int(cfg.window_days * 86_400e6))
    seconds["read"] = time.perf_counter() - t0
    log(f"read {n_rows:,} events in {len(parts)} files ({seconds['read']:.1f} s); {buckets} account buckets")

    t = time.perf_counter()
    windowed = events.groupby(BUCKET, num_partitions=buckets).map_groups(
        _window_group, batch_format="pyarrow",
        fn_kwargs={"newest_us": newest_us, "max_events": cfg.window_events, "max_days": cfg.window_days,
                   "key_buckets": buckets}).materialize()
    n_windowed = windowed.count()
    seconds["window"] = time.perf_counter() - t
    log(f"window: {n_windowed:,} events ({seconds['window']:.1f} s)")

    t = time.perf_counter()
    distinct = (windowed.select_columns([KEY, KEY_BUCKET, "prompt", SEQ])
                .map_batches(_first_per_key, batch_format="pandas")
                .groupby(KEY_BUCKET, num_partitions=buckets).map_groups(_first_per_key, batch_format="pandas")
                .select_columns([KEY, "prompt"]))
    scored = distinct.map_batches(TextScorer, batch_format="pyarrow", batch_size=TEXT_BATCH,
                                  compute=ray.data.ActorPoolStrategy(size=actors),
                                  num_gpus=1 if gpus else 0,
                                  fn_constructor_kwargs={"profile": state.profile, "state_ref": state_ref,
                                                         "shards": str(shards)}).materialize()
    n_texts = scored.count()
    seconds["embed"] = time.perf_counter() - t
    log(f"embed and score: {n_texts:,} distinct texts on {actors} actor(s){' with GPUs' if gpus else ''} "
        f"({seconds['embed']:.1f} s)")

    t = time.perf_counter()
    joined = windowed.join(scored, join_type="inner", num_partitions=buckets, on=(KEY,)).materialize()
    if joined.count() != n_windowed:
        raise RuntimeError(f"joining prompts to their texts kept {joined.count():,} of {n_windowed:,} rows")
    del windowed
    population = PopulationState()
    contributions = joined.groupby(BUCKET, num_partitions=buckets).map_groups(_contributions_group,
                                                                              batch_format="pyarrow")
    for batch in contributions.iter_batches(batch_format="pyarrow", batch_size=4096):
        population.update({a: pickle.loads(b) for a, b in zip(batch.column("account_id").to_pylist(),
                                                               batch.column("contribution").to_pylist())})
    strip_contributions(population)
    seconds["population"] = time.perf_counter() - t
    log(f"population state: {population.accounts:,} accounts, {len(population.text_accounts):,} texts, "
        f"{len(population.keys):,} skeletons ({seconds['population']:.1f} s)")

    t = time.perf_counter()
    blob = pickle.dumps(population, protocol=pickle.HIGHEST_PROTOCOL)
    population_bytes = len(blob)
    population_ref = [ray.put(population)]
    del blob
    parts_out = list(joined.groupby(BUCKET, num_partitions=buckets).map_groups(
        _features_group, batch_format="pyarrow",
        fn_kwargs={"state_ref": state_ref, "population_ref": population_ref}).iter_batches(batch_format="pyarrow",
                                                                                           batch_size=None))
    table = pa.concat_tables(parts_out).to_pandas().set_index("account_id").sort_index()  # numpy dtypes, as local
    table = community_columns(population, table, state.common_skeletons, cfg.wrapper_min_texts)
    seconds["features"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    log(f"features: {len(table):,} accounts ({seconds['features']:.1f} s)")
    store = ShardedEmbeddingStore(shards, state.identity)
    return RayFeatureRun(table, n_rows, n_windowed, n_texts, shards, store.size_bytes(), population_bytes, seconds)

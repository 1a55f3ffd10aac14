"""A persistent, content-addressed cache of prompt embeddings for one embedder.

One SQLite file holds the vectors (float32 blobs) keyed by blake2b-16 of the normalised prompt
(`text_normalization`), plus the identity of the embedder that made them. SQLite in WAL mode gives
the crash safety: vectors are written in transactions, so a process that dies mid-run leaves every
committed chunk intact and nothing half-written, and the next run computes only what is missing.

The store never holds prompt text, only keys and vectors.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distillguard.features.embedding import EmbedderIdentity
from distillguard.features.text_normalization import KEY_SCHEME, key_of_normalized, normalize_prompt

if TYPE_CHECKING:
    from distillguard.features.embedding import Embedder

FORMAT = "distillguard-embedding-store/v1"
# Keys per SELECT ... IN (...): below SQLite's historical 999-parameter limit. Larger chunks gain
# little once the keys are sorted (see `_fetch`).
_QUERY_CHUNK = 900


def _page_size_for(dim: int) -> int:
    """Smallest SQLite page size (4 KiB .. 64 KiB) whose index B-tree pages hold a
    (16-byte key, dim float32) row without an overflow page (max local payload of an index page is
    (usable - 12) * 64 / 255 - 23 bytes; 16 bytes spare for the record header)."""
    row = 16 + 4 * dim + 16
    for size in (4096, 8192, 16384, 32768, 65536):
        if (size - 12) * 64 // 255 - 23 >= row:
            return size
    return 65536


class EmbedderMismatchError(ValueError):
    """The store holds vectors from a different embedder (or key scheme) than the one offered."""


@dataclass(frozen=True)
class EmbedStats:
    """What one `EmbeddingStore.embed` call did."""

    requested: int  # texts passed in
    distinct: int   # distinct normalised texts among them
    cached: int     # distinct texts already in the store
    computed: int   # distinct texts embedded and stored by this call


class EmbeddingStore:
    """Embeddings of normalised prompts for exactly one `EmbedderIdentity`, persisted at `path`.

    Opening creates the file if needed and records `identity`; opening an existing file with any
    other identity raises `EmbedderMismatchError`. Safe to reopen across runs and processes (SQLite
    locking); one instance may be shared between threads.
    """

    def __init__(self, path: Path | str, identity: EmbedderIdentity | Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.identity = (identity if isinstance(identity, EmbedderIdentity)
                         else EmbedderIdentity.from_dict(dict(identity)))
        #: Vectors this instance has computed and stored, over all `embed` calls.
        self.computed = 0
        #: Statistics of the latest `embed` call (None before the first).
        self.last_stats: EmbedStats | None = None
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT) below.
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                     check_same_thread=False)
        # Only takes effect on a new file (before its first write; an existing store keeps its page
        # size and stays readable either way). A row larger than a page's local-payload limit spills
        # into an overflow page, which costs a second page read per lookup and most of a page of
        # disk per row: 4 KiB pages overflowed every 256-d vector (3.5 KiB per 1 KiB row).
        self._conn.execute(f"PRAGMA page_size={_page_size_for(self.identity.dim)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a process crash loses nothing committed; a power cut may lose the
        # last transactions but never corrupts the file. Losing a few cached vectors is harmless.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._init_schema()

    # -- setup -------------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        expected = {"format": FORMAT, "key_scheme": KEY_SCHEME,
                    "identity": json.dumps(self.identity.to_dict(), sort_keys=True)}
        c = self._conn
        c.execute("BEGIN IMMEDIATE")  # one writer decides the identity, even with racing openers
        try:
            c.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            c.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
                      " WITHOUT ROWID")
            found = dict(c.execute("SELECT name, value FROM meta").fetchall())
            if not found:
                c.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        if found and found != expected:
            self._conn.close()
            raise EmbedderMismatchError(
                f"embedding store {self.path} was made by {found.get('identity')} "
                f"(key scheme {found.get('key_scheme')}, format {found.get('format')}); refusing "
                f"to use it with {expected['identity']} (key scheme {KEY_SCHEME}). Use another "
                f"path for this embedder.")

    # -- reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        return bool(self.get_many([key_of_normalized(normalize_prompt(text))]))

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """Return {key: float32 vector} for those of `keys` in the store; missing keys are absent."""
        found, matrix = self._fetch(keys)
        return {key: matrix[j] for key, j in found.items()}

    def _fetch(self, keys: Iterable[bytes]) -> tuple[dict[bytes, int], np.ndarray]:
        """({key: row of `matrix`} for those of `keys` in the store, (found, dim) float32 matrix).

        Keys are looked up in sorted order: neighbouring keys share B-tree pages, so SQLite reads
        each page about once instead of once per key (random order was ~4x slower on a store
        larger than its page cache). The vectors are decoded with one `frombuffer`, not one per row.
        """
        ordered = sorted(set(keys))
        dim = self.identity.dim
        # Untouched rows of np.empty cost no memory, so sizing for "all found" is free.
        matrix = np.empty((len(ordered), dim), dtype=np.float32)
        index: dict[bytes, int] = {}
        with self._lock:
            for i in range(0, len(ordered), _QUERY_CHUNK):
                chunk = ordered[i:i + _QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk).fetchall()
                if rows:
                    start = len(index)
                    matrix[start:start + len(rows)] = np.frombuffer(
                        b"".join(blob for _, blob in rows), dtype=np.float32).reshape(len(rows), dim)
                    index.update((bytes(key), start + j) for j, (key, _) in enumerate(rows))
        return index, matrix[:len(index)]

    # -- writing -----------------------------------------------------------------------------------

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store `vectors[i]` under `keys[i]` in one transaction; keys already present are kept."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.identity.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.identity.dim}), "
                             f"got {vectors.shape}")
        rows = [(k, v.tobytes()) for k, v in zip(keys, vectors)]
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT OR IGNORE INTO vectors (key, vec) VALUES (?, ?)", rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def embed(self, texts: Sequence[str], embedder: Embedder, *, show_progress: bool = False,
              batch_size: int = 64, chunk_size: int = 1024) -> np.ndarray:
        """Return an (len(texts), dim) float32 array: row i is the vector of normalize_prompt(texts[i]).

        Each distinct normalised text is looked up once; only those not yet stored are embedded,
        longest first, `chunk_size` at a time, each chunk committed before the next starts (so an
        interrupted run keeps its progress). Sorting the whole set of new texts by length, not just
        each chunk, keeps every batch of similar length and padding low. `show_progress` draws a
        progress bar over the new texts. Raises EmbedderMismatchError for a foreign embedder.
        """
        if embedder.identity != self.identity:
            raise EmbedderMismatchError(
                f"embedding store {self.path} holds vectors of {self.identity}; refusing to add "
                f"vectors of {embedder.identity}")
        dim = self.identity.dim
        if len(texts) == 0:
            self.last_stats = EmbedStats(0, 0, 0, 0)
            return np.empty((0, dim), dtype=np.float32)

        # Dedupe: slot[i] is the index of texts[i] among the distinct normalised texts.
        first: dict[str, int] = {}
        setdefault = first.setdefault
        slot = np.fromiter((setdefault(normalize_prompt(text), len(first)) for text in texts),
                           dtype=np.int64, count=len(texts))
        distinct = list(first)
        keys = [key_of_normalized(t) for t in distinct]

        found, stored = self._fetch(keys)
        missing: list[int] = []
        have: list[int] = []
        rows: list[int] = []
        for j, key in enumerate(keys):
            row = found.get(key)
            if row is None:
                missing.append(j)
            else:
                have.append(j)
                rows.append(row)
        if not missing:
            table = stored[rows]  # one gather, no second copy
        else:
            table = np.empty((len(distinct), dim), dtype=np.float32)
            if have:
                table[have] = stored[rows]
        del stored, found
        if missing:
            missing = self._from_shards(missing, keys, table)
        missing.sort(key=lambda j: len(distinct[j]), reverse=True)

        if missing:
            from tqdm.auto import tqdm

            with tqdm(total=len(missing), desc=f"embedding ({embedder.profile})", unit="prompt",
                      disable=None if show_progress else True) as bar:  # None: no bar off a terminal
                for start in range(0, len(missing), chunk_size):
                    idx = missing[start:start + chunk_size]
                    vecs = embedder.encode([distinct[j] for j in idx], batch_size=batch_size)
                    self.put_many([keys[j] for j in idx], vecs)
                    table[idx] = vecs
                    self.computed += len(idx)
                    bar.update(len(idx))

        self.last_stats = EmbedStats(requested=len(texts), distinct=len(distinct),
                                     cached=len(distinct) - len(missing), computed=len(missing))
        # slot is 0, 1, 2, ... exactly when every text was distinct: table is already the answer
        return table if len(distinct) == len(texts) else table[slot]

    def _from_shards(self, missing: list[int], keys: list[bytes], table: np.ndarray) -> list[int]:
        """Fill rows of `table` from the shard folder beside this store (vectors a distributed job
        wrote, `embedding_shards`), copying them in; returns the rows still missing."""
        from distillguard.features.embedding_shards import ShardedEmbeddingStore, shards_dir_for

        folder = shards_dir_for(self.path)
        if not folder.is_dir():
            return missing
        got = ShardedEmbeddingStore(folder, self.identity).get_many(keys[j] for j in missing)
        hit = [j for j in missing if keys[j] in got]
        if hit:
            vectors = np.stack([got[keys[j]] for j in hit])
            self.put_many([keys[j] for j in hit], vectors)
            table[hit] = vectors
        return [j for j in missing if keys[j] not in got]

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; the store is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, profile={self.identity.profile!r})"

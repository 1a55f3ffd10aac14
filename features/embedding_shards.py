"""A shardable embedding store: Parquet files of (key, vector) rows, keyed by the same blake2b-16
of the normalised prompt as `embedding_store.EmbeddingStore`, written independently by many
processes (each distributed embedding worker writes its own shards, no locking) and read by any.

The folder sits beside the SQLite store of the same embedder (``embeddings-<profile>.shards``);
`EmbeddingStore` reads it as a fallback before embedding anything, so vectors computed by a
distributed job are reused by the local engine and the serving worker. ``meta.json`` records the
embedder identity; a folder made by another embedder is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from distillguard.features.embedding import EmbedderIdentity
from distillguard.features.text_normalization import KEY_SCHEME

FORMAT = "distillguard-embedding-shards/v1"
_META = "meta.json"


def shards_dir_for(sqlite_path: Path) -> Path:
    """The shard folder that belongs beside an `EmbeddingStore` file."""
    return sqlite_path.with_suffix(".shards")


class ShardedEmbeddingStore:
    """Parquet shards of vectors for exactly one `EmbedderIdentity`."""

    def __init__(self, folder: Path | str, identity: EmbedderIdentity) -> None:
        from distillguard.features.embedding_store import EmbedderMismatchError

        self.folder = Path(folder)
        self.identity = identity
        expected = {"format": FORMAT, "key_scheme": KEY_SCHEME, "identity": identity.to_dict()}
        meta = self.folder / _META
        if meta.exists():
            found = json.loads(meta.read_text())
            if found != expected:
                raise EmbedderMismatchError(f"embedding shards {self.folder} were made by {found.get('identity')}; "
                                            f"refusing to use them with {identity.to_dict()}")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{_META}.{uuid.uuid4().hex}"
            tmp.write_text(json.dumps(expected, indent=2))
            tmp.replace(meta)  # racing writers write the same content

    def shard_files(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.parquet"))

    def write_shard(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path | None:
        """Write one shard (rows sorted by key); nothing for no rows. Returns its path."""
        if len(keys) == 0:
            return None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.identity.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.identity.dim}), got {vectors.shape}")
        order = np.argsort(np.array(keys, dtype=object))
        flat = pa.array(vectors[order].reshape(-1))
        table = pa.table({"key": pa.array([keys[i] for i in order], type=pa.binary(16)),
                          "vec": pa.FixedSizeListArray.from_arrays(flat, self.identity.dim)})
        path = self.folder / f"shard-{uuid.uuid4().hex}.parquet"
        tmp = path.with_name("." + path.name)
        pq.write_table(table, tmp)
        tmp.replace(path)  # readers never see half a shard
        return path

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """{key: vector} for those of `keys` in any shard."""
        wanted = sorted(set(keys))
        files = self.shard_files()
        if not wanted or not files:
            return {}
        dataset = pads.dataset([str(f) for f in files], format="parquet")
        table = dataset.to_table(filter=pads.field("key").isin(pa.array(wanted, type=pa.binary(16))))
        if table.num_rows == 0:
            return {}
        vecs = table.column("vec").combine_chunks().flatten().to_numpy().reshape(-1, self.identity.dim)
        return dict(zip(table.column("key").to_pylist(), vecs))

    def __len__(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.shard_files())

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.shard_files())

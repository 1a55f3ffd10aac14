"""Events as a folder of Parquet files (e.g. one per day, in any folder layout below it): the input
of batch jobs that outgrow one file.

The files are read in sorted path order and each keeps its row order, so "arrival order" (the tie
break of equal timestamps in the scoring window) is the same for every engine: the local engine
concatenates the files in that order; the distributed engine (`features.engine_ray`) reads each file
in its own task and numbers its rows from the file's offset (`EventPart.offset`), which the Parquet
footers give without reading any data. Every row is checked against the contract as in
`readers.iter_event_batches`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .contract import EVENTS_SCHEMA
from .errors import ContractError
from .readers import ReadStats, RejectSink, _log_rejects, default_rejects_path, iter_event_batches

SEQ = "_seq"  # arrival order over the whole folder
BUCKET = "_bucket"  # crc32(account_id) % buckets: all rows of an account share one
T_US = "_t_us"  # ts as microseconds since the epoch


@dataclass(frozen=True)
class EventPart:
    path: Path
    offset: int  # rows in the files before this one
    rows: int


def event_parts(folder: str | Path) -> list[EventPart]:
    """The Parquet files under `folder` (recursively, sorted by path) with their row offsets; a single
    Parquet file is a folder of one."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".parquet":
        files = [folder]
    elif not folder.is_dir():
        raise ContractError(str(folder), "not a Parquet file or a folder of Parquet files")
    else:
        files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        raise ContractError(str(folder), "the folder holds no .parquet files")
    parts, offset = [], 0
    for f in files:
        try:
            rows = pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise ContractError(str(f), f"corrupt or unreadable Parquet file: {exc}") from exc
        parts.append(EventPart(f, offset, rows))
        offset += rows
    return parts


def read_events_folder(folder: str | Path, *, on_bad_rows: str = "fail", rejects_path: str | Path | None = None,
                       stats: ReadStats | None = None, ts_bounds=None) -> pd.DataFrame:
    """Every events file of `folder` as one DataFrame (as `readers.read_events` returns for one file), the
    files in sorted path order; rejected rows of all files go to one side file (default: beside the folder).
    `ts_bounds`: as `readers.read_events` (None: the reader's default)."""
    stats = stats if stats is not None else ReadStats()
    bounds = {} if ts_bounds is None else {"ts_bounds": ts_bounds}
    parts = event_parts(folder)
    sink = None
    if on_bad_rows == "skip":
        sink = RejectSink(rejects_path if rejects_path is not None else default_rejects_path(Path(folder)))
    try:
        tables = [t for part in parts
                  for t in iter_event_batches(part.path, on_bad_rows=on_bad_rows, stats=stats, sink=sink, **bounds)]
    finally:
        if sink is not None:
            sink.close()
    _log_rejects(folder, stats)
    table = pa.concat_tables(tables) if tables else EVENTS_SCHEMA.empty_table()
    return events_frame(table)


def events_frame(table: pa.Table) -> pd.DataFrame:
    """An events table as the DataFrame every engine computes on (nullable Int64 `asn`, UTC `ts`)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def account_buckets(account_ids: np.ndarray, buckets: int) -> np.ndarray:
    """crc32 of each account id modulo `buckets`: the same account lands in the same bucket in any file."""
    codes, distinct = pd.factorize(account_ids)
    per = np.array([zlib.crc32(str(a).encode()) % buckets for a in distinct], dtype=np.int64)
    return per[codes]


def read_part(part: EventPart, buckets: int, *, on_bad_rows: str = "fail") -> Iterator[pa.Table]:
    """One file's validated rows, batch by batch, with the arrival order, account bucket and µs time
    columns the distributed engine groups on."""
    seq = part.offset
    for table in iter_event_batches(part.path, on_bad_rows=on_bad_rows,
                                    rejects_path=default_rejects_path(part.path)):
        n = table.num_rows
        ts = table.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        table = (table.append_column(SEQ, pa.array(np.arange(seq, seq + n, dtype=np.int64)))
                 .append_column(BUCKET, pa.array(account_buckets(table.column("account_id").to_numpy(), buckets)))
                 .append_column(T_US, ts))
        seq += n
        yield table

"""Streaming readers of events and labels files (Parquet, JSONL, CSV, chosen by extension).

Every reader works batch by batch, so checking a file needs memory for one batch, not for the
file; only `read_events` and `read_labels`, which return a whole DataFrame, hold all rows. Each
row that breaks the contract either raises `ContractError` ("fail") or is written with its reason
to a rejects side file ("skip"); no row is ever dropped silently.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .contract import EVENT_COLUMNS, EVENT_REQUIRED, EVENTS_SCHEMA, LABEL_COLUMNS, LABELS_SCHEMA, SUPPORTED_SUFFIXES
from .errors import BAD_ROW_POLICIES, BadRow, BadRowPolicy, ContractError
from .parsing import ParsedBatch, parse_events, parse_labels, reject_duplicate_labels, reject_unknown_accounts
from .time_bounds import DEFAULT_TS_BOUNDS, TimestampBounds, reject_out_of_range

__all__ = [
    "BadRowPolicy",
    "ContractError",
    "ReadStats",
    "RejectSink",
    "TimestampBounds",
    "default_rejects_path",
    "iter_event_batches",
    "iter_label_batches",
    "read_events",
    "read_labels",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 65_536
_CSV_BLOCK_BYTES = 1 << 20
_PARQUET_BUFFER_BYTES = 1 << 20


def default_rejects_path(path: str | Path) -> Path:
    """The side file for rejected rows of `path`: beside it, e.g. events.csv -> events.csv.rejected.jsonl."""
    path = Path(path)
    return path.with_name(path.name + ".rejected.jsonl")


@dataclass
class ReadStats:
    """What one read found: clean and rejected row counts, file-level warnings and the side file
    the rejects went to (None when nothing was rejected)."""

    rows_ok: int = 0
    rows_rejected: int = 0
    warnings: list[str] = field(default_factory=list)
    rejects_path: Path | None = None


class RejectSink:
    """The rejects side file: one JSON object per rejected row, {"file", "row", "field", "reason",
    "record"}. Opening truncates the file; closing removes it again when nothing was written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        try:
            self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ContractError(str(path), f"cannot write the rejects file: {exc.strerror or exc}") from exc

    def write(self, file: str, bad: BadRow) -> None:
        assert self._fh is not None, "rejects file already closed"
        self._fh.write(json.dumps(bad.to_json_obj(file), ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        if self.count == 0:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Public readers


def iter_event_batches(
    path: str | Path,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    rejects_path: str | Path | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    stats: ReadStats | None = None,
    sink: RejectSink | None = None,
    ts_bounds: TimestampBounds | None = DEFAULT_TS_BOUNDS,
) -> Iterator[pa.Table]:
    """Stream an events file as Arrow tables of at most `batch_rows` rows conforming to EVENTS_SCHEMA.

    `ts` is UTC; absent optional columns are all null; unknown columns are ignored and named once
    in `stats.warnings`. Bad rows raise `ContractError` ("fail") or go to the side file
    (`rejects_path`, default `default_rejects_path(path)`) with their reason ("skip"); pass an open
    `sink` instead to collect the rejects of several files in one side file. A missing required
    column, a corrupt file or an unsupported extension raise `ContractError` in both modes; the
    extension and the policy are checked on the call, the rest as the batches are read. A `ts` outside
    `ts_bounds` (`data.time_bounds`; "now" fixed at the call; None: no bounds) is a bad row.
    """
    _check_args(path, on_bad_rows, batch_rows)
    check = None
    if ts_bounds is not None:
        bounds = ts_bounds if ts_bounds.now is not None else replace(ts_bounds, now=datetime.now(UTC))

        def check(batch: ParsedBatch) -> ParsedBatch:
            return reject_out_of_range(batch, bounds)
    return _validated(path, _EVENTS, on_bad_rows, rejects_path, sink, stats or ReadStats(), batch_rows, check)


def iter_label_batches(
    path: str | Path,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    rejects_path: str | Path | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    stats: ReadStats | None = None,
    sink: RejectSink | None = None,
    event_accounts: Collection[str] | None = None,
) -> Iterator[pa.Table]:
    """Stream a labels file as Arrow tables conforming to LABELS_SCHEMA.

    Bad rows, handled as in `iter_event_batches`: a label other than 0/1, an empty account_id or
    campaign, a repeated account_id (the message names the row of the first occurrence) and, when
    `event_accounts` is given, an account_id that is not among them.
    """
    _check_args(path, on_bad_rows, batch_rows)
    first_seen: dict[str, int] = {}

    def check(batch: ParsedBatch) -> ParsedBatch:
        batch = reject_duplicate_labels(batch, first_seen)
        if event_accounts is not None:
            batch = reject_unknown_accounts(batch, event_accounts)
        return batch

    return _validated(path, _LABELS, on_bad_rows, rejects_path, sink, stats or ReadStats(), batch_rows, check)


def read_events(
    path: str | Path,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    rejects_path: str | Path | None = None,
    stats: ReadStats | None = None,
    ts_bounds: TimestampBounds | None = DEFAULT_TS_BOUNDS,
) -> pd.DataFrame:
    """The whole events file as a DataFrame with the EVENTS_SCHEMA columns, in file order: `ts` is
    tz-aware UTC datetime64, `asn` is nullable Int64. Bad rows are handled as in `iter_event_batches`.
    A folder reads every Parquet file under it, in sorted path order (`parquet_dataset`)."""
    if Path(path).is_dir():
        from .parquet_dataset import read_events_folder

        return read_events_folder(path, on_bad_rows=on_bad_rows, rejects_path=rejects_path, stats=stats,
                                  ts_bounds=ts_bounds)
    stats = stats if stats is not None else ReadStats()
    tables = list(iter_event_batches(path, on_bad_rows=on_bad_rows, rejects_path=rejects_path, stats=stats,
                                     ts_bounds=ts_bounds))
    _log_rejects(path, stats)
    table = pa.concat_tables(tables) if tables else EVENTS_SCHEMA.empty_table()
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def read_labels(
    path: str | Path,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    rejects_path: str | Path | None = None,
    stats: ReadStats | None = None,
) -> pd.DataFrame:
    """The whole labels file as a DataFrame (account_id, label int8 0/1, campaign), in file order;
    a repeated account_id is a bad row. Bad rows are handled as in `iter_label_batches`."""
    stats = stats if stats is not None else ReadStats()
    tables = list(iter_label_batches(path, on_bad_rows=on_bad_rows, rejects_path=rejects_path, stats=stats))
    _log_rejects(path, stats)
    table = pa.concat_tables(tables) if tables else LABELS_SCHEMA.empty_table()
    return table.to_pandas()


def _log_rejects(path: str | Path, stats: ReadStats) -> None:
    if stats.rows_rejected:
        log.warning("%s: %d bad rows rejected, written to %s", path, stats.rows_rejected, stats.rejects_path)


# ---------------------------------------------------------------------------------------------
# The validating loop


@dataclass(frozen=True)
class _Spec:
    what: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    parse: Callable[..., ParsedBatch]


_EVENTS = _Spec("events", EVENT_COLUMNS, EVENT_REQUIRED, parse_events)
_LABELS = _Spec("labels", LABEL_COLUMNS, LABEL_COLUMNS, parse_labels)


def _check_args(path: str | Path, on_bad_rows: str, batch_rows: int) -> None:
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_rows must be 'fail' or 'skip', not {on_bad_rows!r}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, not {batch_rows}")
    _suffix(path)


def _suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ContractError(str(path), f"unsupported file extension '{suffix or '(none)'}'; "
                                       f"expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix


def _validated(path: str | Path, spec: _Spec, policy: BadRowPolicy, rejects_path: str | Path | None,
               sink: RejectSink | None, stats: ReadStats,
               batch_rows: int, check: Callable[[ParsedBatch], ParsedBatch] | None) -> Iterator[pa.Table]:
    name = str(path)
    own_sink = None
    if policy == "skip" and sink is None:
        sink = own_sink = RejectSink(rejects_path if rejects_path is not None else default_rejects_path(path))
    try:
        for raw in _raw_batches(path, spec, batch_rows, stats.warnings):
            try:
                parsed = spec.parse(raw.table, raw.rows, file=name)
            except pa.ArrowException as exc:  # e.g. a uint64 column beyond int64
                raise ContractError(name, f"cannot convert the {spec.what} columns: {exc}") from exc
            if check is not None:
                parsed = check(parsed)
            bad = sorted(raw.bad + parsed.bad, key=lambda b: (b.row is None, b.row or 0))
            if bad:
                if policy == "fail":
                    raise bad[0].to_error(name)
                assert sink is not None
                for b in bad:
                    sink.write(name, b)
                stats.rows_rejected += len(bad)
                stats.rejects_path = sink.path
            stats.rows_ok += parsed.table.num_rows
            if parsed.table.num_rows:
                yield parsed.table
    finally:
        if own_sink is not None:
            own_sink.close()


# ---------------------------------------------------------------------------------------------
# Raw batches per format


@dataclass(frozen=True)
class _RawBatch:
    table: pa.Table  # contract columns present in the file, as read
    rows: np.ndarray  # 1-based data row number of each row
    bad: list[BadRow]  # rows the format itself could not read (malformed CSV row, invalid JSON line)


def _raw_batches(path: str | Path, spec: _Spec, batch_rows: int, warnings: list[str]) -> Iterator[_RawBatch]:
    name = str(path)
    suffix = _suffix(path)
    readers = {".parquet": _parquet_batches, ".jsonl": _jsonl_batches, ".csv": _csv_batches}
    try:
        yield from readers[suffix](Path(path), name, spec, batch_rows, warnings)
    except ContractError:
        raise
    except FileNotFoundError as exc:
        raise ContractError(name, "file not found") from exc
    except OSError as exc:
        raise ContractError(name, f"cannot read the file: {exc.strerror or exc}") from exc
    except (pa.ArrowException, UnicodeDecodeError, csv.Error) as exc:
        kind = {".parquet": "Parquet", ".jsonl": "JSONL", ".csv": "CSV"}[suffix]
        raise ContractError(name, f"corrupt or unreadable {kind} file: {exc}") from exc


def _check_columns(names: list[str], name: str, spec: _Spec, warnings: list[str]) -> list[str]:
    """The contract columns present in `names`; raises on a missing required one, warns on extras."""
    for required in spec.required:
        if required not in names:
            raise ContractError(name, "missing required column", field=required)
    extras = [c for c in names if c not in spec.columns]
    if extras:
        warnings.append(f"{name}: ignoring unknown columns: {', '.join(extras)}")
    return [c for c in spec.columns if c in names]


def _parquet_batches(path: Path, name: str, spec: _Spec, batch_rows: int,
                     warnings: list[str]) -> Iterator[_RawBatch]:
    # Buffered column reads without pre-buffering: memory follows the batch, not the row group.
    with pq.ParquetFile(path, buffer_size=_PARQUET_BUFFER_BYTES, pre_buffer=False) as pf:
        columns = _check_columns(pf.schema_arrow.names, name, spec, warnings)
        start = 1
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            n = batch.num_rows
            yield _RawBatch(pa.Table.from_batches([batch]), np.arange(start, start + n, dtype=np.int64), [])
            start += n


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise ContractError(str(path), "empty CSV file: no header row")
    return header


def _csv_batches(path: Path, name: str, spec: _Spec, batch_rows: int,
                 warnings: list[str]) -> Iterator[_RawBatch]:
    header = _csv_header(path)
    columns = _check_columns(header, name, spec, warnings)
    malformed: list[BadRow] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        # With use_threads=False, `number` is the record number counting the header as 1.
        data_row = None if row.number is None else row.number - 1
        malformed.append(BadRow(data_row, None, f"malformed CSV row: expected {row.expected_columns} "
                                                f"fields, got {row.actual_columns}", {"_raw": row.text}))
        return "skip"

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                            include_columns=columns, strings_can_be_null=False),
    )
    skipped: set[int] = set()
    next_row = 1
    pending: list[BadRow] = []
    with reader:
        for batch in reader:
            pending.extend(malformed)
            skipped.update(b.row for b in malformed if b.row is not None)
            malformed.clear()
            rows = _good_row_numbers(next_row, batch.num_rows, skipped)
            if len(rows):
                next_row = int(rows[-1]) + 1
            table = pa.Table.from_batches([batch])
            for lo in range(0, batch.num_rows, batch_rows):
                piece_rows = rows[lo:lo + batch_rows]
                last = lo + batch_rows >= batch.num_rows
                here = [b for b in pending if last or b.row is None or b.row <= piece_rows[-1]]
                pending = [b for b in pending if b not in here]
                yield _RawBatch(table.slice(lo, batch_rows), piece_rows, here)
    pending.extend(malformed)
    if pending:
        yield _RawBatch(_empty_strings(columns), np.empty(0, dtype=np.int64), pending)


def _good_row_numbers(start: int, n: int, skipped: set[int]) -> np.ndarray:
    """The first `n` row numbers from `start` on that are not in `skipped`."""
    ahead = sum(1 for s in skipped if s >= start)
    candidates = np.arange(start, start + n + ahead, dtype=np.int64)
    if ahead:
        candidates = candidates[~np.isin(candidates, np.fromiter(skipped, dtype=np.int64))]
    return candidates[:n]


def _empty_strings(columns: list[str]) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in columns})


def _jsonl_batches(path: Path, name: str, spec: _Spec, batch_rows: int,
                   warnings: list[str]) -> Iterator[_RawBatch]:
    extras: dict[str, None] = {}
    checked = False
    buffer: list[tuple[int, bytes]] = []

    def flush() -> _RawBatch:
        nonlocal checked
        batch, first = _jsonl_batch(buffer, spec.columns, extras)
        if not checked and first is not None:
            checked = True
            for required in spec.required:
                if required not in first:
                    raise ContractError(name, "missing required column (absent from the first record)",
                                        field=required)
        return batch

    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            buffer.append((lineno, line))
            if len(buffer) >= batch_rows:
                yield flush()
                buffer = []
    if buffer:
        yield flush()
    if extras:
        warnings.append(f"{name}: ignoring unknown columns: {', '.join(extras)}")


def _jsonl_batch(lines: list[tuple[int, bytes]], columns: tuple[str, ...],
                 extras: dict[str, None]) -> tuple[_RawBatch, dict | None]:
    """Decode JSONL lines into string columns; returns the batch and its first decoded object."""
    values: dict[str, list[str | None]] = {c: [] for c in columns}
    rows: list[int] = []
    bad: list[BadRow] = []
    first: dict | None = None
    for lineno, line in lines:
        obj, problem = _decode_line(line)
        if problem is not None:
            bad.append(BadRow(lineno, None, problem, {"_raw": line.decode("utf-8", "replace").rstrip("\r\n")}))
            continue
        assert obj is not None
        if first is None:
            first = obj
        record = {k: _json_scalar(v) for k, v in obj.items() if k in values}
        nested = [k for k, v in obj.items() if k in values and isinstance(v, (dict, list))]
        if nested:
            kind = "object" if isinstance(obj[nested[0]], dict) else "array"
            bad.append(BadRow(lineno, nested[0], f"expected a string or number, got a JSON {kind}", record))
            continue
        for k in obj:
            if k not in values:
                extras.setdefault(k)
        for c in columns:
            values[c].append(record.get(c))
        rows.append(lineno)
    table = pa.table({c: pa.array(v, pa.string()) for c, v in values.items()})
    return _RawBatch(table, np.asarray(rows, dtype=np.int64), bad), first


def _decode_line(line: bytes) -> tuple[dict | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "line is not valid UTF-8"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def _json_scalar(value: object) -> str | None:
    """A JSON value as the string a CSV would hold (None stays None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)

"""Pure, vectorised row checks: raw columns in, contract-conforming Arrow tables and bad rows out.

Nothing here touches files. A raw batch is an Arrow table holding any subset of the contract's
columns, either as strings (CSV, JSONL) or in the types a Parquet file stored them in, plus the
1-based data row number of each of its rows. Each row that breaks the contract becomes one `BadRow`
naming the first field at fault, in schema order; the other rows form the clean table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .contract import EVENT_OPTIONAL, EVENTS_SCHEMA, LABELS_SCHEMA
from .errors import BadRow, ContractError

_TS_TYPE = pa.timestamp("us", tz="UTC")
# ISO-8601 calendar date, optional time, optional offset (only after a time). Pandas alone would
# also accept words such as "now" and "today".
_ISO_RE = r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?)?\s*$"
# An integer, optionally written with a zero fraction ("64512.0", as pandas writes a float column).
_INT_RE = r"^\s*[+-]?\d{1,18}(\.0*)?\s*$"
_SHOW_MAX = 80


@dataclass(frozen=True)
class ParsedBatch:
    """The clean rows of a batch (conforming to the target schema), their row numbers, and the bad rows."""

    table: pa.Table
    rows: np.ndarray
    bad: list[BadRow]


def show(value: object) -> str:
    """A value quoted for an error message, cut short when long."""
    text = str(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 1] + "…"
    return f"'{text}'"


# ---------------------------------------------------------------------------------------------
# Column helpers


def _column(raw: pa.Table, name: str) -> pa.Array | None:
    if name not in raw.column_names:
        return None
    col = raw.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def as_string(arr: pa.Array, *, file: str, field: str) -> pa.Array:
    """The column as a plain Arrow string array (dictionary, large and scalar types are cast)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type):
        return arr
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ContractError(file, f"column type {arr.type} cannot be read as a string ({exc})", field=field) from exc


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def blank_mask(strings: pa.Array) -> np.ndarray:
    """True where the string is null, empty or only whitespace."""
    return _np(pc.equal(pc.utf8_trim_whitespace(strings), "")) | _np(strings.is_null())


def blank_to_null(strings: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(blank_mask(strings)), pa.scalar(None, pa.string()), strings)


def parse_timestamps(arr: pa.Array, *, file: str, field: str) -> tuple[pa.Array, np.ndarray]:
    """UTC microsecond timestamps and a mask of unparseable values (null or blank ones are null, not bad).

    Timestamp columns are converted (naive ones taken as UTC); strings must be ISO-8601: with an
    offset they are converted to UTC, without one they are taken as UTC.
    """
    if pa.types.is_timestamp(arr.type):
        return arr.cast(_TS_TYPE, safe=False), np.zeros(len(arr), dtype=bool)
    strings = as_string(arr, file=file, field=field)
    shaped = _np(pc.match_substring_regex(strings, _ISO_RE))
    candidates = pc.if_else(pa.array(shaped), strings, pa.scalar(None, pa.string()))
    series = pd.Series(candidates.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    values = pa.Array.from_pandas(parsed).cast(_TS_TYPE, safe=False)
    bad = ~blank_mask(strings) & _np(values.is_null())
    return values, bad


def parse_integers(arr: pa.Array, *, file: str, field: str) -> tuple[pa.Array, np.ndarray]:
    """Int64 values and a mask of non-integer values; nulls and blank strings become null."""
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64()), np.zeros(len(arr), dtype=bool)
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)  # NaN is a float column's null
        whole = pc.and_(pc.and_(pc.is_finite(arr), pc.equal(pc.floor(arr), arr)), pc.less(pc.abs(arr), 2.0**63))
        bad = _np(pc.invert(whole)) & ~_np(arr.is_null())
        kept = pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr)
        return kept.cast(pa.int64(), safe=False), bad
    strings = as_string(arr, file=file, field=field)
    blank = blank_mask(strings)
    ok = _np(pc.match_substring_regex(strings, _INT_RE))
    bad = ~ok & ~blank
    digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(strings), r"\.0*$|^\+", "")
    kept = pc.if_else(pa.array(ok), digits, pa.scalar(None, pa.string()))
    return kept.cast(pa.int64()), bad


# ---------------------------------------------------------------------------------------------
# Collecting failures


class _Failures:
    """Per row, the first failing check in the order the checks were added."""

    def __init__(self, n: int) -> None:
        self.flagged = np.zeros(n, dtype=bool)
        self._found: list[tuple[int, str, Callable[[int], str]]] = []

    def add(self, mask: np.ndarray, field: str, reason: Callable[[int], str]) -> None:
        new = mask & ~self.flagged
        self._found.extend((int(i), field, reason) for i in np.flatnonzero(new))
        self.flagged |= new

    def bad_rows(self, raw: pa.Table, rows: np.ndarray) -> list[BadRow]:
        if not self._found:
            return []
        indices = [i for i, _, _ in self._found]
        records = records_as_strings(raw.take(pa.array(indices, pa.int64())))
        return [
            BadRow(int(rows[i]), field, reason(i), record)
            for (i, field, reason), record in zip(self._found, records)
        ]


def records_as_strings(table: pa.Table) -> list[dict[str, str | None]]:
    """The rows of `table` as dicts of their values written as strings."""
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        try:
            col = col.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            columns[name] = [None if v is None else str(v) for v in col.to_pylist()]
            continue
        columns[name] = col.to_pylist()
    return [{name: columns[name][i] for name in columns} for i in range(table.num_rows)]


def _missing(name: str, raw: pa.Array) -> Callable[[int], str]:
    """The reason for a missing required value at row index i: null, or an empty string."""
    return lambda i: f"{name} is null" if not raw[i].is_valid else f"{name} is empty"


def _required_string(raw: pa.Table, name: str, failures: _Failures, *, file: str) -> pa.Array:
    arr = _column(raw, name)
    if arr is None:
        raise ContractError(file, "missing required column", field=name)
    strings = as_string(arr, file=file, field=name)
    failures.add(blank_mask(strings), name, _missing(name, strings))
    return strings


# ---------------------------------------------------------------------------------------------
# Events and labels


def parse_events(raw: pa.Table, rows: np.ndarray, *, file: str) -> ParsedBatch:
    """Check a raw events batch; the clean table conforms to EVENTS_SCHEMA."""
    n = raw.num_rows
    failures = _Failures(n)
    account = _required_string(raw, "account_id", failures, file=file)

    ts_raw = _column(raw, "ts")
    if ts_raw is None:
        raise ContractError(file, "missing required column", field="ts")
    ts, ts_bad = parse_timestamps(ts_raw, file=file, field="ts")
    failures.add(_np(ts.is_null()) & ~ts_bad, "ts", _missing("ts", ts_raw))
    failures.add(ts_bad, "ts", lambda i: f"unparseable timestamp {show(ts_raw[i].as_py())}")

    prompt = _required_string(raw, "prompt", failures, file=file)

    optional: dict[str, pa.Array] = {}
    for name in EVENT_OPTIONAL:
        arr = _column(raw, name)
        field_type = EVENTS_SCHEMA.field(name).type
        if arr is None:
            optional[name] = pa.nulls(n, field_type)
        elif name == "asn":
            values, bad = parse_integers(arr, file=file, field=name)
            failures.add(bad, name, lambda i, a=arr: f"non-integer asn {show(a[i].as_py())}")
            optional[name] = values
        else:
            optional[name] = blank_to_null(as_string(arr, file=file, field=name))

    columns = {"account_id": account, "ts": ts, "prompt": prompt, **optional}
    return _finish(raw, rows, failures, columns, EVENTS_SCHEMA)


def parse_labels(raw: pa.Table, rows: np.ndarray, *, file: str) -> ParsedBatch:
    """Check a raw labels batch; the clean table conforms to LABELS_SCHEMA (label is 0 or 1)."""
    failures = _Failures(raw.num_rows)
    account = _required_string(raw, "account_id", failures, file=file)

    label_raw = _column(raw, "label")
    if label_raw is None:
        raise ContractError(file, "missing required column", field="label")
    values, not_int = parse_integers(label_raw, file=file, field="label")
    in_range = _np(pc.is_in(values, value_set=pa.array([0, 1], pa.int64())))
    failures.add(_np(values.is_null()) & ~not_int, "label", _missing("label", label_raw))
    failures.add(not_int | ~in_range, "label",
                 lambda i: f"label must be 1 (harvesting) or 0 (organic), got {show(label_raw[i].as_py())}")

    campaign = _required_string(raw, "campaign", failures, file=file)
    columns = {"account_id": account, "label": values.cast(pa.int8(), safe=False), "campaign": campaign}
    return _finish(raw, rows, failures, columns, LABELS_SCHEMA)


def _finish(raw: pa.Table, rows: np.ndarray, failures: _Failures, columns: dict[str, pa.Array],
            schema: pa.Schema) -> ParsedBatch:
    bad = failures.bad_rows(raw, rows)
    keep = ~failures.flagged
    table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
    if bad:
        table = table.filter(pa.array(keep))
    return ParsedBatch(table, rows[keep], bad)


def reject_duplicate_labels(batch: ParsedBatch, first_seen: dict[str, int]) -> ParsedBatch:
    """Reject label rows whose account_id already appeared; `first_seen` (account -> row) carries
    the state across batches and is updated in place."""
    ids = batch.table.column("account_id").to_pylist()
    dup_at: list[int] = []
    for i, (account, row) in enumerate(zip(ids, batch.rows.tolist())):
        if account in first_seen:
            dup_at.append(i)
        else:
            first_seen[account] = row
    return _reject(batch, dup_at, "account_id",
                   lambda account: f"duplicate label for account_id {show(account)} "
                                   f"(first at row {first_seen[account]})")


def reject_unknown_accounts(batch: ParsedBatch, known: Collection[str]) -> ParsedBatch:
    """Reject label rows whose account_id has no events (`known` holds the event account ids)."""
    ids = batch.table.column("account_id").to_pylist()
    return _reject(batch, [i for i, account in enumerate(ids) if account not in known], "account_id",
                   lambda account: f"label for account_id {show(account)}, which has no events")


def _reject(batch: ParsedBatch, indices: Sequence[int], field: str,
            reason: Callable[[str], str]) -> ParsedBatch:
    if not indices:
        return batch
    taken = batch.table.take(pa.array(indices, pa.int64()))
    records = records_as_strings(taken)
    bad = [BadRow(int(batch.rows[i]), field, reason(rec["account_id"] or ""), rec)
           for i, rec in zip(indices, records)]
    keep = np.ones(batch.table.num_rows, dtype=bool)
    keep[list(indices)] = False
    return ParsedBatch(batch.table.filter(pa.array(keep)), batch.rows[keep], batch.bad + bad)

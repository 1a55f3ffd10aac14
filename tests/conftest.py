"""Shared fixtures."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# --import-mode=importlib leaves sys.path alone; shared test helpers (serving_helpers.py) live here
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

WriteRows = Callable[[Path, Sequence[dict]], Path]


def _write_rows(path: Path, rows: Sequence[dict]) -> Path:
    """Write dict rows to `path` in the format its extension names: CSV (None as an empty field,
    header from the first row), JSONL (one object per line, keys as given) or Parquet (types
    inferred by Arrow unless the rows are already a `pa.Table`)."""
    suffix = path.suffix
    if suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif suffix == ".parquet":
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
        pq.write_table(table, path)
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture
def write_rows() -> WriteRows:
    return _write_rows

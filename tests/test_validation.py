"""Whole-file validation: events against labels, the report, skip mode's side files, bounded memory."""

from __future__ import annotations

import gc

import json
import random
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import distillguard.data.readers as readers
from distillguard.data.errors import ContractError
from distillguard.data.readers import iter_event_batches
from distillguard.data.validation import ValidationReport, format_report, validate_files


def events(accounts: list[str], per_account: int = 2) -> list[dict]:
    return [{"account_id": a, "ts": f"2026-02-0{1 + k}T10:00:00+01:00", "prompt": f"{a} asks {k}", "asn": 64512}
            for a in accounts for k in range(per_account)]


def labels(pairs: list[tuple[str, int]]) -> list[dict]:
    return [{"account_id": a, "label": y, "campaign": "hydra" if y else "student"} for a, y in pairs]


def side_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_valid_files_give_a_clean_report(tmp_path: Path, write_rows) -> None:
    ev = write_rows(tmp_path / "events.csv", events(["a", "b", "c"]))
    lb = write_rows(tmp_path / "labels.csv", labels([("a", 1), ("b", 0), ("c", 0)]))
    report = validate_files(ev, lb)
    assert report == ValidationReport(events_path=ev, rows_ok=6, rows_rejected=0, accounts=3, rejects_path=None,
                                      labels_path=lb, labels_ok=3, labels_rejected=0, labels_rejects_path=None,
                                      warnings=[])
    assert report.ok
    text = format_report(report)
    assert f"events {ev}: 6 rows ok, 0 rejected, 3 accounts" in text
    assert f"labels {lb}: 3 rows ok, 0 rejected" in text
    assert "warning" not in text and text.endswith("result: ok")


def test_label_for_account_without_events_fails_naming_row_and_account(tmp_path: Path, write_rows) -> None:
    ev = write_rows(tmp_path / "events.jsonl", events(["a", "b"]))
    lb = write_rows(tmp_path / "labels.csv", labels([("a", 1), ("ghost", 0), ("b", 0)]))
    with pytest.raises(ContractError) as info:
        validate_files(ev, lb)
    assert (info.value.file, info.value.row, info.value.field) == (str(lb), 2, "account_id")
    assert str(info.value) == f"{lb} row 2, field 'account_id': label for account_id 'ghost', which has no events"


def test_events_rejected_in_skip_mode_do_not_count_as_known_accounts(tmp_path: Path, write_rows) -> None:
    rows = events(["a", "b"], per_account=1)
    rows[1]["ts"] = "not a time"  # b's only event is bad, so b has no valid events
    ev = write_rows(tmp_path / "events.csv", rows)
    lb = write_rows(tmp_path / "labels.csv", labels([("a", 1), ("b", 0)]))
    report = validate_files(ev, lb, on_bad_rows="skip")
    assert (report.rows_ok, report.rows_rejected, report.accounts) == (1, 1, 1)
    assert (report.labels_ok, report.labels_rejected) == (1, 1)
    assert [r["reason"] for r in side_lines(report.labels_rejects_path)] == [
        "label for account_id 'b', which has no events"]
    assert not report.ok


def test_unlabelled_accounts_and_single_class_are_warnings(tmp_path: Path, write_rows) -> None:
    ev = write_rows(tmp_path / "events.parquet", [
        {**r, "ts": datetime(2026, 2, 1, tzinfo=timezone.utc), "color": "red"} for r in events(["a", "b", "c", "d"])])
    lb = write_rows(tmp_path / "labels.csv", labels([("a", 1), ("b", 1)]))
    report = validate_files(ev, lb)
    assert report.ok and report.labels_ok == 2
    assert report.warnings == [
        f"{ev}: ignoring unknown columns: color",
        "2 of 4 event accounts have no label",
        "labels hold a single class (1, harvesting); training needs both",
    ]
    text = format_report(report)
    assert "warning: 2 of 4 event accounts have no label" in text


def test_skip_mode_default_side_files_sit_beside_each_file(tmp_path: Path, write_rows) -> None:
    rows = events(["a", "b", "c"], per_account=1)
    rows[0]["asn"] = "AS64512"
    rows[2]["prompt"] = None
    ev = write_rows(tmp_path / "events.jsonl", rows)
    lb = write_rows(tmp_path / "labels.csv", labels([("b", 1), ("b", 0), ("x", 3)]))
    report = validate_files(ev, lb, on_bad_rows="skip")

    assert (report.rows_ok, report.rows_rejected, report.accounts) == (1, 2, 1)
    assert report.rejects_path == tmp_path / "events.jsonl.rejected.jsonl"
    assert report.labels_rejects_path == tmp_path / "labels.csv.rejected.jsonl"
    assert [(r["file"], r["row"], r["field"], r["reason"]) for r in side_lines(report.rejects_path)] == [
        (str(ev), 1, "asn", "non-integer asn 'AS64512'"),
        (str(ev), 3, "prompt", "prompt is null"),
    ]
    assert side_lines(report.rejects_path)[1]["record"]["account_id"] == "c"
    assert [(r["row"], r["field"], r["reason"]) for r in side_lines(report.labels_rejects_path)] == [
        (2, "account_id", "duplicate label for account_id 'b' (first at row 1)"),
        (3, "label", "label must be 1 (harvesting) or 0 (organic), got '3'"),
    ]
    text = format_report(report)
    assert "1 rows ok, 2 rejected" in text and f"rejected rows written to {report.rejects_path}" in text
    assert "result: rows were rejected" in text


def test_skip_mode_explicit_rejects_path_collects_both_files(tmp_path: Path, write_rows) -> None:
    rows = events(["a", "b"], per_account=1)
    rows[0]["account_id"] = ""
    ev = write_rows(tmp_path / "events.csv", rows)
    lb = write_rows(tmp_path / "labels.csv", labels([("b", 1), ("a", 0)]))
    side = tmp_path / "all-rejects.jsonl"
    report = validate_files(ev, lb, on_bad_rows="skip", rejects_path=side)
    assert report.rejects_path == report.labels_rejects_path == side
    assert [(r["file"], r["row"], r["field"]) for r in side_lines(side)] == [
        (str(ev), 1, "account_id"), (str(lb), 2, "account_id")]
    assert not (tmp_path / "events.csv.rejected.jsonl").exists()


def test_fail_mode_stops_at_first_bad_event_row(tmp_path: Path, write_rows) -> None:
    rows = events(["a", "b", "c"])
    rows[3]["asn"] = "1.5"
    rows[5]["ts"] = "2026-02-30T00:00:00"
    ev = write_rows(tmp_path / "events.csv", rows)
    with pytest.raises(ContractError, match=r"events\.csv row 4, field 'asn': non-integer asn '1\.5'$"):
        validate_files(ev, batch_rows=2)
    assert not (tmp_path / "events.csv.rejected.jsonl").exists()


def test_missing_column_raises_in_skip_mode_too(tmp_path: Path, write_rows) -> None:
    ev = write_rows(tmp_path / "events.csv", events(["a"]))
    lb = write_rows(tmp_path / "labels.parquet", [{"account_id": "a", "campaign": "hydra"}])
    with pytest.raises(ContractError) as info:
        validate_files(ev, lb, on_bad_rows="skip")
    assert (info.value.file, info.value.row, info.value.field) == (str(lb), None, "label")
    assert str(info.value) == f"{lb}, field 'label': missing required column"


def test_unsupported_extension_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"traffic\.xlsx: unsupported file extension '\.xlsx'"):
        validate_files(tmp_path / "traffic.xlsx")


# --- memory -------------------------------------------------------------------------------------


def _write_big(path: Path, n: int) -> None:
    rng = random.Random(n)
    table = pa.table({
        "account_id": [f"acct-{i % 50}" for i in range(n)],
        "ts": pa.array([1_770_000_000_000_000 + i for i in range(n)], pa.timestamp("us", "UTC")),
        "prompt": [f"write about {rng.randbytes(100).hex()}" for _ in range(n)],  # incompressible
        "asn": [64512 + i % 7 for i in range(n)],
    })
    if path.suffix == ".parquet":
        # One row group for the whole file; small pages (a page is the unit Parquet decodes).
        pq.write_table(table, path, row_group_size=n, compression="none", data_page_size=1 << 15,
                       use_dictionary=False)
    elif path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        with path.open("w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps({**row, "ts": row["ts"].isoformat()}) + "\n")


def _peak_while_streaming(path: Path) -> tuple[int, int]:
    """Arrow bytes allocated at the batch boundaries (max, above what the process held before: Arrow's
    counter is process-wide, and earlier tests' pandas frames hold Arrow strings) and the Python
    heap peak, while streaming."""
    gc.collect()
    base = pa.total_allocated_bytes()
    arrow_peak = 0
    rows = 0
    tracemalloc.start()
    try:
        for table in iter_event_batches(path, batch_rows=500):
            rows += table.num_rows
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - base)
            del table
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return arrow_peak, py_peak


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_streaming_memory_does_not_grow_with_file_size(tmp_path: Path, suffix: str, monkeypatch) -> None:
    # Small read buffers, so that the readers' fixed working set is well under the test files' size.
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 1 << 15)
    monkeypatch.setattr(readers, "_PARQUET_BUFFER_BYTES", 1 << 15)
    small, big = tmp_path / f"small{suffix}", tmp_path / f"big{suffix}"
    _write_big(small, 2_000)
    _write_big(big, 16_000)
    arrow_small, py_small = _peak_while_streaming(small)
    arrow_big, py_big = _peak_while_streaming(big)
    size = big.stat().st_size
    assert size > 3_000_000
    # Eight times the rows, about the same working set; and far less than the file.
    assert arrow_big < 1.5 * arrow_small + 1_000_000, (arrow_small, arrow_big)
    assert py_big < 1.5 * py_small + 1_000_000, (py_small, py_big)
    assert arrow_big + py_big < size / 2, (arrow_big, py_big, size)

"""Whole-file validation against the traffic contract, and its human-readable report.

`validate_files` streams the events file batch by batch (memory grows with the number of accounts,
not of rows), then checks the labels file against the accounts it saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from .errors import BadRowPolicy
from .readers import DEFAULT_BATCH_ROWS, ReadStats, RejectSink, iter_event_batches, iter_label_batches
from .time_bounds import DEFAULT_TS_BOUNDS, TimestampBounds

__all__ = ["ValidationReport", "format_report", "validate_files"]


@dataclass
class ValidationReport:
    """What `validate_files` found. Rejected counts are non-zero only in skip mode; the rejects paths
    are the side files the rejected rows went to, or None when none were rejected."""

    events_path: Path
    rows_ok: int
    rows_rejected: int
    accounts: int
    rejects_path: Path | None = None
    labels_path: Path | None = None
    labels_ok: int = 0
    labels_rejected: int = 0
    labels_rejects_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row of either file was rejected."""
        return self.rows_rejected == 0 and self.labels_rejected == 0


def validate_files(
    events_path: str | Path,
    labels_path: str | Path | None = None,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    rejects_path: str | Path | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    ts_bounds: TimestampBounds | None = DEFAULT_TS_BOUNDS,
) -> ValidationReport:
    """Check an events file, and optionally its labels file, against the traffic contract.

    Fail mode raises `ContractError` at the first bad row. Skip mode writes every bad row with its
    reason to `rejects_path` (both files' rejects), or by default to a side file beside each file
    (`default_rejects_path`), and counts them in the report. Besides each row's own checks, a label
    row for an account with no (valid) events is a bad row, and so is an event whose `ts` lies outside
    `ts_bounds` (`data.time_bounds`). Event accounts without a label, extra columns, and labels
    holding a single class are warnings, not errors.
    """
    events_stats, label_stats = ReadStats(), ReadStats()
    accounts: set[str] = set()
    with _shared_sink(rejects_path if on_bad_rows == "skip" else None) as sink:
        for table in iter_event_batches(events_path, on_bad_rows=on_bad_rows, rejects_path=rejects_path,
                                        batch_rows=batch_rows, stats=events_stats, sink=sink,
                                        ts_bounds=ts_bounds):
            accounts.update(pc.unique(table.column("account_id")).to_pylist())
        report = ValidationReport(
            events_path=Path(events_path), rows_ok=events_stats.rows_ok, rows_rejected=events_stats.rows_rejected,
            accounts=len(accounts), rejects_path=events_stats.rejects_path, warnings=events_stats.warnings,
        )
        if labels_path is None:
            return report

        labelled: set[str] = set()
        classes: set[int] = set()
        for table in iter_label_batches(labels_path, on_bad_rows=on_bad_rows, rejects_path=rejects_path,
                                        batch_rows=batch_rows, stats=label_stats, sink=sink,
                                        event_accounts=accounts):
            labelled.update(table.column("account_id").to_pylist())
            classes.update(pc.unique(table.column("label")).to_pylist())
    report.labels_path = Path(labels_path)
    report.labels_ok = label_stats.rows_ok
    report.labels_rejected = label_stats.rows_rejected
    report.labels_rejects_path = label_stats.rejects_path
    report.warnings.extend(label_stats.warnings)
    unlabelled = len(accounts - labelled)
    if unlabelled:
        report.warnings.append(f"{unlabelled:,} of {len(accounts):,} event accounts have no label")
    if len(classes) == 1:
        only = classes.pop()
        name = "harvesting" if only == 1 else "organic"
        report.warnings.append(f"labels hold a single class ({only}, {name}); training needs both")
    return report


@contextmanager
def _shared_sink(path: str | Path | None) -> Iterator[RejectSink | None]:
    if path is None:
        yield None
        return
    sink = RejectSink(path)
    try:
        yield sink
    finally:
        sink.close()


def format_report(report: ValidationReport) -> str:
    """A few lines for the terminal: counts per file, where rejects went, and the warnings."""
    lines = [f"events {report.events_path}: {report.rows_ok:,} rows ok, {report.rows_rejected:,} rejected, "
             f"{report.accounts:,} accounts"]
    if report.rejects_path is not None:
        lines.append(f"  rejected rows written to {report.rejects_path}")
    if report.labels_path is not None:
        lines.append(f"labels {report.labels_path}: {report.labels_ok:,} rows ok, "
                     f"{report.labels_rejected:,} rejected")
        if report.labels_rejects_path is not None:
            lines.append(f"  rejected rows written to {report.labels_rejects_path}")
    lines.extend(f"warning: {w}" for w in report.warnings)
    lines.append("result: " + ("ok" if report.ok else "rows were rejected; see the side file"))
    return "\n".join(lines)

"""Errors raised when a file breaks the traffic contract, and the record of one rejected row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: What a reader does with a row that breaks the contract: raise at the first one ("fail"), or
#: write each to the rejects side file with its reason and carry on with the good rows ("skip").
BadRowPolicy = Literal["fail", "skip"]
BAD_ROW_POLICIES: tuple[str, ...] = ("fail", "skip")


class ContractError(ValueError):
    """A file, or one row of it, breaks the traffic contract.

    `file` is the path as the user gave it; `row` is the 1-based data row (CSV: the record after
    the header is 1; JSONL: the line number; Parquet: row index + 1), or None for a file-level error
    such as a missing column, an unsupported extension or a corrupt file; `field` is the column at
    fault, or None; `reason` says what is wrong.
    """

    def __init__(self, file: str, reason: str, *, row: int | None = None, field: str | None = None) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.file if self.row is None else f"{self.file} row {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.reason}"

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working with keyword args
        return (_rebuild, (self.file, self.reason, self.row, self.field))


def _rebuild(file: str, reason: str, row: int | None, field: str | None) -> ContractError:
    return ContractError(file, reason, row=row, field=field)


@dataclass(frozen=True)
class BadRow:
    """One rejected row: where it is, which field is at fault, why, and its original values as strings."""

    row: int | None
    field: str | None
    reason: str
    record: dict[str, str | None] = field(default_factory=dict)

    def to_error(self, file: str) -> ContractError:
        return ContractError(file, self.reason, row=self.row, field=self.field)

    def to_json_obj(self, file: str) -> dict[str, object]:
        """The rejects side-file line for this row."""
        return {"file": file, "row": self.row, "field": self.field, "reason": self.reason, "record": self.record}

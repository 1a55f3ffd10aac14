"""Logs without prompt text: when prompts are redacted, a logged exception keeps its type and stack
(file, line, function and source line) but not its message, since messages carry the values that
failed (a pydantic error's `input_value`, a codec error's bytes, a database error's row).

Installed on every handler of the process (the root logger's and uvicorn's own), so it covers
records of any logger, including uvicorn's "Exception in ASGI application" tracebacks.
"""

from __future__ import annotations

import logging
import traceback

WITHHELD = "<message withheld: prompts are redacted (redact_logs)>"


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of `exc` and of its causes and contexts, every message replaced by WITHHELD."""
    parts: list[str] = []
    seen: set[int] = set()

    def walk(e: BaseException) -> None:
        if id(e) in seen:
            return
        seen.add(id(e))
        if e.__cause__ is not None:
            walk(e.__cause__)
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n")
        elif e.__context__ is not None and not e.__suppress_context__:
            walk(e.__context__)
            parts.append("\nDuring handling of the above exception, another exception occurred:\n\n")
        stack = traceback.extract_tb(e.__traceback__)
        if stack:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(stack.format())
        parts.append(f"{type(e).__module__}.{type(e).__qualname__}: {WITHHELD}\n")
        for sub in getattr(e, "exceptions", None) or ():  # exception groups
            if isinstance(sub, BaseException):
                walk(sub)

    walk(exc)
    return "".join(parts).rstrip("\n")


class WithholdExceptionMessages(logging.Filter):
    """A handler filter: a record's exception is rendered by `redacted_traceback`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1])
            record.exc_info = None
        return True


def withhold_exception_messages() -> None:
    """Add the filter to every handler now configured in this process (call after logging is set up)."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for handler in lg.handlers:
            if not any(isinstance(f, WithholdExceptionMessages) for f in handler.filters):
                handler.addFilter(WithholdExceptionMessages())

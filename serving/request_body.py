"""Request bodies before the handlers see them: a size cap enforced while the body streams in, and
JSON decoding that turns every malformed body into a 422 naming the field.

Never a 500 for what a client sent, and never the body's text in an error or a log line: invalid
UTF-8, a lone surrogate (`"\\ud800"`, which no UTF-8 store can hold), `NaN`/`Infinity` (not JSON) and
out-of-range integers are refused with FastAPI's error shape (`{"detail": [{"type", "loc", "msg"}]}`)
and without the offending input, which may be a prompt.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_ERRORS = 20


class BodyLimitMiddleware:
    """Pure ASGI: a request body over `limit` bytes is refused with 413 when the app first reads it,
    at once when its Content-Length says so, else as soon as the streamed chunks pass the limit; no
    more of it is read. Lazily, so that a handler that refuses a request first (a missing key) never
    reads its body at all. (Starlette and uvicorn have no body limit of their own.)"""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        received = 0

        def too_large() -> HTTPException:
            return HTTPException(413, f"request body over {limit} bytes (max_body_bytes)")

        async def limited_receive():
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large()
            return message

        await self.app(scope, limited_receive, send)


def _error(kind: str, loc: tuple, msg: str) -> dict:
    return {"type": kind, "loc": ["body", *loc], "msg": msg}


def _printable_key(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_msg(m: re.Match, escaped_bytes: bool) -> str:
    code = ord(m.group())
    if escaped_bytes and 0xDC80 <= code <= 0xDCFF:  # a byte the UTF-8 decoder could not read
        return f"not valid UTF-8 (byte 0x{code - 0xDC00:02x} at character {m.start()})"
    return f"lone surrogate \\u{code:04x} at character {m.start()}: text must be valid Unicode"


def unreadable_values(value: Any, escaped_bytes: bool = False) -> list[dict]:
    """Errors for the values of a decoded JSON document that no handler may take: strings with a
    lone surrogate (in keys too) and non-finite numbers; in document order, at most 20.
    `escaped_bytes`: the text was decoded with `surrogateescape`, so a surrogate may be a bad byte."""
    errors: list[dict] = []
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack and len(errors) < _MAX_ERRORS:
        loc, v = stack.pop()
        if isinstance(v, str):
            if (m := _SURROGATE.search(v)) is not None:
                errors.append(_error("string_unicode", loc, _surrogate_msg(m, escaped_bytes)))
        elif isinstance(v, float):
            if not math.isfinite(v):
                errors.append(_error("json_invalid", loc, f"{v} is not a JSON number"))
        elif isinstance(v, dict):
            for k in reversed(list(v)):
                if isinstance(k, str) and _SURROGATE.search(k):
                    errors.append(_error("string_unicode", (*loc, _printable_key(k)),
                                         "lone surrogate in a field name: text must be valid Unicode"))
                else:
                    stack.append(((*loc, k), v[k]))
        elif isinstance(v, list):
            stack.extend(((*loc, i), v[i]) for i in range(len(v) - 1, -1, -1))
    return errors


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, or RequestValidationError (422) saying what is wrong and where."""
    escaped = False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # bad bytes inside a string: decoded as surrogates, they are reported at their field below
        text, escaped = raw.decode("utf-8", "surrogateescape"), True
        body_error = _error("json_invalid", (), f"the body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                                                f"offset {exc.start})")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if escaped:
            raise RequestValidationError([body_error]) from None
        raise _not_json(exc) from None
    if errors := unreadable_values(value, escaped):
        raise RequestValidationError(errors)
    return value


def _not_json(exc: Exception) -> RequestValidationError:
    if isinstance(exc, json.JSONDecodeError):
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    elif isinstance(exc, RecursionError):
        reason = "nested too deeply"
    else:  # an integer of thousands of digits
        reason = str(exc).split(";")[0]
    return RequestValidationError([_error("json_invalid", (), f"the body is not valid JSON: {reason}")])


def validation_errors(exc: ValidationError, loc: tuple = ()) -> list[dict]:
    """A model's errors in FastAPI's shape, under `body`, without the input (it may be a prompt)."""
    return [{**e, "loc": ("body", *loc, *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]


def validate_json(model: type[M], raw: bytes) -> M:
    """`raw` as a `model`, or RequestValidationError (422) naming the field. Valid bodies take
    pydantic's JSON parser (the fast path); a refused one is decoded again to say precisely why."""
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        pass
    data = parse_json(raw)  # raises for bytes, text or numbers no model may take
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from None
    except RecursionError:
        raise RequestValidationError([_error("json_invalid", (), "the body is nested too deeply")]) from None

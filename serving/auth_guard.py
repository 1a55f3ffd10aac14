"""What stands in front of the key check: weak keys refused at start-up, and a client address that
keeps offering wrong keys locked out for a while.

- A key must have at least `MIN_KEY_CHARS` characters, `MIN_KEY_DISTINCT` of them distinct
  (`python -c "import secrets; print(secrets.token_urlsafe(32))"` makes one); the error names the
  setting and the key's position, never the key.
- `FailedAuthLimiter`: after `max_failures` wrong keys from one client address within `window_s`,
  every request from that address that offers a key is answered 429 with `Retry-After` for
  `window_s`, before its key is compared, so guessing from one address runs at most `max_failures`
  guesses per window. Other addresses are untouched. Behind a proxy every request has the proxy's
  address: the gateways send a configured key, so only a misconfigured gateway locks itself out.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from fastapi import HTTPException, Request

MIN_KEY_CHARS = 16
MIN_KEY_DISTINCT = 8
KEY_HINT = "python -c \"import secrets; print(secrets.token_urlsafe(32))\""
_MAX_TRACKED = 10_000  # client addresses remembered; past it, those without a recent failure are dropped


class WeakKeyError(ValueError):
    """A configured API key too short or too repetitive to be served."""


def key_weakness(key: str) -> str | None:
    """Why `key` is too weak to serve, or None."""
    if len(key) < MIN_KEY_CHARS:
        return f"{len(key)} characters (at least {MIN_KEY_CHARS})"
    if (distinct := len(set(key))) < MIN_KEY_DISTINCT:
        return f"{distinct} distinct characters (at least {MIN_KEY_DISTINCT})"
    return None


def check_key_strength(keys: Sequence[str], setting: str = "api_keys") -> None:
    """Raise WeakKeyError (one line, naming the setting and the key's position) for the first weak key."""
    for i, key in enumerate(keys, start=1):
        if (why := key_weakness(key)) is not None:
            raise WeakKeyError(f"{setting}: key {i} of {len(keys)} is too weak: {why}; make one with {KEY_HINT}")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class FailedAuthLimiter:
    """Wrong keys per client address in a sliding window; an address past the limit is locked."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self.lockouts = 0

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may offer a key again, or None when it may now."""
        until = self._locked_until.get(client)
        if until is None:
            return None
        left = until - self.clock()
        if left > 0:
            return left
        del self._locked_until[client]
        return None

    def failed(self, client: str) -> None:
        now = self.clock()
        times = self._failures.setdefault(client, deque())
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.max_failures:
            self._locked_until[client] = now + self.window_s
            self.lockouts += 1
            times.clear()
        if len(self._failures) > _MAX_TRACKED:
            self._forget_before(now - self.window_s)

    def _forget_before(self, t: float) -> None:
        for c in [c for c, times in self._failures.items() if not times or times[-1] <= t]:
            del self._failures[c]
        for c in [c for c, until in self._locked_until.items() if until <= t + self.window_s]:
            del self._locked_until[c]

    def refuse_if_locked(self, request: Request) -> None:
        """429 with Retry-After when the request's address is locked out."""
        if (left := self.retry_after(client_address(request))) is not None:
            raise HTTPException(429, "too many wrong API keys from this address; try again later",
                                headers={"Retry-After": str(math.ceil(left))})

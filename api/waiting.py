"""Waiting for a condition with a bound, instead of sleeping for a guessed time.

The one poll-until helper of the project: the build host, the lab, the benchmarks and the tests all wait with
it, each raising its own kind of error (`error`), so a timeout reads the same everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.2


class TimedOut(Exception):
    """A condition did not come true in time; the message says what was awaited and what was seen last."""


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    last_seen: Callable[[], str] | None = None,
    error: Callable[[str], BaseException] = TimedOut,
) -> T:
    """Poll `condition` until it returns something truthy and return that.

    After `timeout` seconds, `error(message)` is raised: the message says what was awaited and, if `last_seen`
    is given, what was seen last (the refused connection, the wrong state), which is usually the reason.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = f"; last seen: {last_seen()}" if last_seen is not None else ""
            raise error(f"timed out after {timeout:g}s waiting for {what}{seen}")
        time.sleep(interval)


def holds_within(condition: Callable[[], object], timeout: float, interval: float = POLL_INTERVAL) -> bool:
    """Whether `condition` came true within `timeout` seconds, for callers that deal with a timeout themselves."""
    try:
        wait_for(condition, timeout=timeout, what="a condition", interval=interval)
    except TimedOut:
        return False
    return True


class Places:
    """A fixed number of places, taken without blocking: the requests of one server process that may wait for
    their jobs at once (a request refused a place is answered at once instead of holding a thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def taken(self) -> int:
        return self._taken

    def enter(self) -> bool:
        """Take a place if one is free; False when all are taken."""
        with self._lock:
            if self._taken >= self.limit:
                return False
            self._taken += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._taken -= 1

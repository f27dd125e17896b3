"""Waiting for a condition with a bound, instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from lab.errors import LabError

T = TypeVar("T")

POLL_INTERVAL = 0.2


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    last_seen: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy and return that.

    After `timeout` seconds, LabError saying what was awaited and, if `last_seen` is given, what was seen
    last (the refused connection, the wrong state), which is usually the reason.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = f"; last seen: {last_seen()}" if last_seen is not None else ""
            raise LabError(f"timed out after {timeout:g}s waiting for {what}{seen}")
        time.sleep(interval)

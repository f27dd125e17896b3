"""An exclusive file lock with a bound on the wait: two processes must not build the same cached tree at once."""

from __future__ import annotations

import contextlib
import errno
import fcntl
from collections.abc import Iterator
from pathlib import Path

from api.build_host.errors import BuildHostError
from api.waiting import wait_for


@contextlib.contextmanager
def exclusive(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (made if missing) for the block, waiting at most `timeout` seconds;
    BuildHostError "timed out ... waiting for <what>" otherwise."""
    with open(path, "w") as handle:

        def acquired() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            return True

        wait_for(acquired, timeout=timeout, interval=1.0, what=what, error=BuildHostError)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

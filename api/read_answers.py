"""The hot reads' answers, kept by each process until the database changes (SQLite only).

Paymenter asks `GET /status`, getbak and getdomain on every page of the client area, far more often than anything
changes. SQLite counts, per connection, the commits of every other connection (`PRAGMA data_version`): the hot
reads' own connection (api/db.py `Database.rows`) never writes, so while that count stands, every answer it gave is
still the answer. Asking for it costs a few microseconds; reading and shaping a `/status` costs some sixty.

A commit anywhere, by this process or another (a job's progress, a change from the API), forgets every answer at
once: finer bookkeeping would have to know which rows each answer read. PostgreSQL has no such count, and its reads
are not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from api.prepared import Reader

T = TypeVar("T")

LIMIT = 2048  # answers per process: a few megabytes; beyond it the oldest is forgotten first


class Answers:
    """What the hot reads answered since the database last changed, by key. Used under the lock of the connection
    it belongs to (api/db.py), so it needs none of its own."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._kept: dict[Hashable, Any] = {}
        self._version: int | None = None

    def refresh(self, reader: Reader) -> None:
        """Forget every answer if another connection has committed since the last refresh on `reader`."""
        version = reader.fetch("PRAGMA data_version")[1][0][0]
        if version != self._version:
            self._kept.clear()
            self._version = version

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The answer kept for `key`, else `make()`'s, kept. An exception (a 404) is not kept. The answer is
        shared: nobody may change it."""
        try:
            return self._kept[key]
        except KeyError:
            pass
        answer = make()
        if len(self._kept) >= self.limit:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = answer
        return answer

"""The hot reads take turns in each server process when the database is SQLite.

`GET /status`, `/action/getbak` and `/action/getdomain` are the reads Paymenter makes on every client-area page. Each
is short and all CPU: Flask, one statement on SQLite's write-ahead log (which never waits for a writer) and the JSON.
Run by many threads of one process at once they gain nothing, as the GIL runs one thread at a time, and they pay for
every release of it: sqlite3 releases the GIL around each step of a statement, and a release while other threads
wait hands it over, at a cost of two context switches. In one process with 8 threads, a `/status` took 16 context
switches and twice the CPU of one taking turns with the others (1.4 switches; bench/read_threads.py).

So these requests run one at a time in a process, in the order they came, and the threads waiting for their turn do
not compete for the GIL meanwhile. Every other request (changes, requests waiting for their jobs, /health) runs as
before. On PostgreSQL the statement is a network round trip, in which another request should run: there is no gate.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

HOT_READS = frozenset({"/status", "/action/getbak", "/action/getdomain"})


class ReadGate:
    """WSGI middleware: GET requests for `paths` call `app` one at a time; every other request calls it at once."""

    def __init__(self, app: Callable[..., Iterable[bytes]], paths: frozenset[str] = HOT_READS) -> None:
        self.app = app
        self.paths = paths
        self._turn = Turns()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") in self.paths:
            with self._turn:
                return self.app(environ, start_response)
        return self.app(environ, start_response)


class Turns:
    """A lock taken in the order it was asked for: each release hands it to the thread that has waited longest.

    A plain Lock lets a thread that comes just as it is released take it before the threads already waiting: the
    slowest hundredth of the reads waited several turns (p99 26-32 ms against 16-20 ms in turn, bench/README.md)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._taken = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._taken:
                self._taken = True
                return
            mine = threading.Lock()
            mine.acquire()
            self._waiting.append(mine)
        mine.acquire()  # released by the thread that hands the turn over; _taken stays True

    @property
    def waiting(self) -> int:
        """How many threads wait for their turn."""
        return len(self._waiting)

    def __exit__(self, *_exc: object) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._taken = False

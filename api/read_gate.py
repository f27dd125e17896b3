"""The hot reads take turns in each server process when the database is SQLite.

`GET /status`, `/action/getbak` and `/action/getdomain` are the reads Paymenter makes on every client-area page. Each
is short and all CPU: Flask, one statement on SQLite's write-ahead log (which never waits for a writer) and the JSON.
Run by many threads of one process at once they gain nothing, as the GIL runs one thread at a time, and they pay for
every release of it: sqlite3 releases the GIL around each step of a statement, and a release while other threads
wait hands it over, at a cost of two context switches. In one process with 8 threads, a `/status` took 19 context
switches and twice the CPU of one taking turns with the others (3 switches; bench/README.md).

So these requests run one at a time in a process, and the threads waiting for their turn do not compete for the GIL
meanwhile. Every other request (changes, requests waiting for their jobs, /health) runs as before. On PostgreSQL the
statement is a network round trip, in which another request should run: there is no gate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

HOT_READS = frozenset({"/status", "/action/getbak", "/action/getdomain"})


class ReadGate:
    """WSGI middleware: GET requests for `paths` call `app` one at a time; every other request calls it at once."""

    def __init__(self, app: Callable[..., Iterable[bytes]], paths: frozenset[str] = HOT_READS) -> None:
        self.app = app
        self.paths = paths
        self._turn = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") in self.paths:
            with self._turn:
                return self.app(environ, start_response)
        return self.app(environ, start_response)

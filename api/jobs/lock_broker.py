"""The worker's side of the shared locks for one playbook run: a UNIX socket the run's modules ask for locks.

The playbook never sees the database URL (api/jobs/runner.py split_environment), so a module cannot take a lock in
the database itself. Instead the worker serves this socket, in a 0700 directory, and hands its path to the playbook
in PROXMOXWP_LOCK_SOCKET. A module sends one JSON line {"acquire": name, "timeout": seconds}; the broker waits until
it holds the lease (api/jobs/locks.py) or the timeout passes and answers {"held": true} or {"held": false,
"reason": ...}. While the connection stays open the broker renews the lease; when it closes, also because the
module died, the broker releases it. Stopping the broker (the run ended) releases everything.
(plugins/module_utils/proxmoxwp_lock.py is the client.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import threading
import uuid
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from api import unix_socket
from api.db import Database
from api.jobs import locks
from api.waiting import holds_within

log = logging.getLogger(__name__)

SOCKET_VARIABLE = "PROXMOXWP_LOCK_SOCKET"
TTL = 60.0
POLL_INTERVAL = 0.2
# The longest a module may ask to wait: beyond it, a run would wait past any job's timeout.
MAX_WAIT = 3600.0
REQUEST_LIMIT = 4096
# How long a client may take to send its request once connected.
REQUEST_SECONDS = 10.0
SOCKET_NAME = "lock.sock"


class BadRequest(ValueError):
    """The client's request is not one the broker answers."""


def parse_request(line: bytes) -> tuple[str, float]:
    """The lock name and the wait of one request line."""
    try:
        request = json.loads(line.decode("utf-8"))
    except ValueError as error:
        raise BadRequest("the request is not one line of JSON") from error
    if not isinstance(request, dict):
        raise BadRequest("the request is not a JSON object")
    name, timeout = request.get("acquire"), request.get("timeout")
    if not isinstance(name, str) or not 0 < len(name) <= locks.NAME_LIMIT:
        raise BadRequest(f"acquire must be a name of 1 to {locks.NAME_LIMIT} characters")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= MAX_WAIT:
        raise BadRequest(f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}")
    return name, float(timeout)


class LockBroker:
    """Serves one run's lock requests until stop(); each connection is one holder of at most one lock."""

    def __init__(self, db: Database, private: Path, *, ttl: float = TTL, poll_interval: float = POLL_INTERVAL):
        self.db, self.private, self.ttl, self.poll_interval = db, private, ttl, poll_interval
        self.path: Path | None = None
        self._directory: Path | None = None
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()

    def start(self) -> Path:
        """Listen; the socket's path (for PROXMOXWP_LOCK_SOCKET)."""
        self._directory = self.private / "locks"
        self._directory.mkdir(mode=0o700)
        self.path = self._directory / SOCKET_NAME
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix_socket.bind(self._listener, self.path)  # the run's directory may be deep
        self._listener.listen()
        accepting = threading.Thread(target=self._accept, name="lock-broker", daemon=True)
        accepting.start()
        self._threads.append(accepting)
        return self.path

    def stop(self) -> None:
        """Stop serving; every lock a connection holds is released before this returns."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._listener.close()
        with self._guard:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)  # wakes the holder's wait for EOF
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=self.ttl)
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> LockBroker:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _address = self._listener.accept()
            except OSError:
                return  # stop() shut the listener
            with self._guard:
                if self._stopping.is_set():
                    connection.close()
                    return
                self._connections.add(connection)
                serving = threading.Thread(target=self._serve, args=(connection,), name="lock-holder", daemon=True)
                self._threads.append(serving)
            serving.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                self._serve_one(connection)
        except Exception:
            log.exception("lock broker: a request failed")
        finally:
            with self._guard:
                self._connections.discard(connection)

    def _serve_one(self, connection: socket.socket) -> None:
        try:
            name, timeout = parse_request(_read_line(connection))
        except (BadRequest, OSError) as error:
            _answer(connection, held=False, reason=str(error))
            return
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        held, reason = self._acquire(connection, name, holder, timeout)
        try:
            if not held:
                _answer(connection, held=False, reason=reason)
                return
            log.info("lock %r held by %s", name, holder)
            _answer(connection, held=True)
            self._hold(connection, name, holder)
        finally:
            if held:
                self._release(name, holder)

    def _acquire(self, connection: socket.socket, name: str, holder: str, timeout: float) -> tuple[bool, str]:
        last_error: list[str] = []
        outcome: dict[str, bool] = {}

        def settled() -> bool:
            if self._stopping.is_set() or _hung_up(connection):
                return True
            try:
                outcome["held"] = locks.try_acquire(self.db, name, holder, self.ttl)
            except SQLAlchemyError as error:
                last_error[:] = [f"the database failed ({type(error).__name__})"]
                log.warning("lock %r: the database failed while taking it", name, exc_info=True)
                return False
            return outcome["held"]

        holds_within(settled, timeout, interval=self.poll_interval)
        if outcome.get("held"):
            return True, ""
        if self._stopping.is_set():
            return False, "the run ended"
        return False, last_error[0] if last_error else f"another holder kept it for {timeout:g}s"

    def _hold(self, connection: socket.socket, name: str, holder: str) -> None:
        """Renew the lease every third of its ttl until the client closes the connection (or stop() does)."""
        while True:
            readable, _w, _x = select.select([connection], [], [], self.ttl / 3)
            if readable:
                try:
                    data = connection.recv(REQUEST_LIMIT)
                except OSError:
                    return
                if not data:
                    return  # EOF: the client is done, or died
                continue  # nothing else is expected on the connection: ignored
            try:
                if not locks.renew(self.db, name, holder, self.ttl):
                    log.warning("lock %r: the lease of %s ran out and another holder took it", name, holder)
                    return
            except SQLAlchemyError:
                # the lease may still be renewed in time at the next try
                log.warning("lock %r: the lease was not renewed", name, exc_info=True)

    def _release(self, name: str, holder: str) -> None:
        try:
            locks.release(self.db, name, holder)
            log.info("lock %r released by %s", name, holder)
        except SQLAlchemyError:
            log.warning("lock %r: not released; it is free when its lease expires", name, exc_info=True)


def _read_line(connection: socket.socket) -> bytes:
    connection.settimeout(REQUEST_SECONDS)
    received = b""
    while b"\n" not in received:
        chunk = connection.recv(REQUEST_LIMIT)
        if not chunk:
            break
        received += chunk
        if len(received) > REQUEST_LIMIT:
            raise BadRequest(f"the request is longer than {REQUEST_LIMIT} bytes")
    connection.settimeout(None)
    return received.split(b"\n", 1)[0]


def _answer(connection: socket.socket, **answer: object) -> None:
    with contextlib.suppress(OSError):  # a client that hung up needs no answer
        connection.sendall(json.dumps(answer).encode("utf-8") + b"\n")


def _hung_up(connection: socket.socket) -> bool:
    """Whether the client closed its end while waiting for the lock: it no longer wants it."""
    readable, _w, _x = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True

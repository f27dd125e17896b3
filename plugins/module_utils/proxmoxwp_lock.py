# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A lock shared by all the workers, held through the broker that the worker running this playbook serves.

The worker passes the path of its broker's UNIX socket in PROXMOXWP_LOCK_SOCKET; the broker holds a lease in the
database for as long as the connection stays open, so the module never needs the database (docs/jobs.md, "Locks
shared by the workers"). The lock is released when the connection closes, also when the module dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

SOCKET_VARIABLE = "PROXMOXWP_LOCK_SOCKET"

# Beyond the wait it asked for, the time the client gives the broker to answer (a busy database, a slow worker).
ANSWER_MARGIN = 30


class LockTimeout(Exception):
    """The lock was not held: another holder kept it for the whole wait, or the broker could not be asked."""


class LockBusy(LockTimeout):
    """The broker answered: another holder kept the lock for the whole wait."""


def _answer(connection, timeout):
    """The broker's one-line JSON answer; LockTimeout when it does not come."""
    connection.settimeout(timeout + ANSWER_MARGIN)
    received = b""
    try:
        while not received.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            received += chunk
    except OSError as error:
        raise LockTimeout(f"the lock broker did not answer: {error}") from error
    try:
        return json.loads(received.decode("utf-8"))
    except ValueError as error:
        raise LockTimeout(f"the lock broker gave no answer ({received[:200]!r})") from error


def _connect(connection, path):
    """Connect to the socket at `path`, also when the path is longer than a UNIX socket address may be (a deep
    run directory): then through /proc/self/fd of the socket's directory."""
    if len(os.fsencode(path)) <= 107:
        connection.connect(path)
        return
    directory = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        connection.connect(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
    finally:
        os.close(directory)


@contextlib.contextmanager
def held(name, timeout):
    """Hold the lock `name` inside the block, waiting at most `timeout` seconds for it; yields True.

    Without PROXMOXWP_LOCK_SOCKET (ansible-playbook run by hand, not by a worker) there is no broker: this yields
    False and the caller relies on its own retrying. LockTimeout when the lock is not held in time."""
    path = os.environ.get(SOCKET_VARIABLE)
    if not path:
        yield False
        return
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            connection.settimeout(ANSWER_MARGIN)
            _connect(connection, path)
            request = json.dumps({"acquire": name, "timeout": timeout}) + "\n"
            connection.sendall(request.encode("utf-8"))
        except OSError as error:
            raise LockTimeout(f"cannot ask the lock broker at {path} for {name!r}: {error}") from error
        answer = _answer(connection, timeout)
        if not answer.get("held"):
            reason = answer.get("reason") or "no reason given"
            raise LockBusy(f"lock {name!r} not held within {timeout}s: {reason}")
        yield True
    finally:
        # Closing the connection is the release: the broker sees EOF and gives the lease up.
        connection.close()

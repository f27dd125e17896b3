"""UNIX sockets at paths of any depth.

A socket address holds at most 107 bytes of path (sun_path is 108 with its NUL), and a checkout or a test's
directory can be deeper than that. A longer path is reached through /proc/self/fd of its directory: the socket
file is still made in that directory, so it goes with it, and only this process's descriptor is in the address.
(plugins/module_utils/proxmoxwp_lock.py has the client's half of this again, since a module cannot import the API.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

SUN_PATH_LIMIT = 107


def _at(path: Path, use: Callable[[str], None]) -> None:
    if len(os.fsencode(path)) <= SUN_PATH_LIMIT:
        use(str(path))
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        use(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def bind(sock: socket.socket, path: Path) -> None:
    """Bind `sock` at `path`, however deep."""
    _at(path, sock.bind)


def connect(sock: socket.socket, path: Path) -> None:
    """Connect `sock` to the socket at `path`, however deep."""
    _at(path, sock.connect)

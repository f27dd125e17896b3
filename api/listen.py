"""How `proxmoxwp serve` listens: a socket of its own for each gunicorn worker on a TCP address.

With one socket shared by the workers, a connection stays with the worker that accepted it, and the worker awake at
that moment accepts most of a burst: a client that keeps its connections open (a load balancer's keep-alive pool, a
benchmark) then had all of them in one process, which runs on one CPU under the GIL while the others idle
(bench/README.md). With SO_REUSEPORT each worker listens on a socket of its own and the kernel spreads the
connections over them.

The price of SO_REUSEPORT is that a second process of the same user could bind the same port too and silently take
part of the connections; so the address is first bound here without it, which fails while anything listens there.
"""

from __future__ import annotations

import errno
import socket

from gunicorn.util import parse_address


class AddressInUse(Exception):
    """Something already listens on the address."""


def tcp_address(bind: str) -> tuple[str, int] | None:
    """(host, port) of a TCP `--bind`; None for a Unix socket or an inherited file descriptor."""
    address = parse_address(bind)
    if isinstance(address, tuple):
        return address
    return None


def check_free(host: str, port: int) -> None:
    """Bind `host:port` as gunicorn does, without SO_REUSEPORT, and let it go; AddressInUse if that fails."""
    family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(f"{host}:{port} is in use by another process") from None
            raise

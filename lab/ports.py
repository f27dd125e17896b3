"""Free loopback ports for the lab's parts, the tests and the benchmarks."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from lab.errors import LabError

HOST = "127.0.0.1"
# Below the kernel's ephemeral range: a port taken from that range (what bind(port 0) gives) can be handed to
# any outgoing connection in the moment between asking and the server's own bind, which made nginx fail with
# "Address already in use" under the parallel tests. Ports below it are only ever taken by a deliberate bind.
LOWEST = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, kinds: tuple[int, ...], host: str) -> bool:
    sockets = [socket.socket(socket.AF_INET, kind) for kind in kinds]
    try:
        for one in sockets:
            one.bind((host, port))
    except OSError:
        return False
    finally:
        for one in sockets:
            one.close()
    return True


def free_port(udp: bool = False, host: str = HOST) -> int:
    """A port of `host` free for TCP (and for UDP too with `udp`: DNS listens on both) at the moment of asking,
    chosen at random outside the ephemeral range so that parallel callers and outgoing connections do not race
    for it."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    highest = max(_ephemeral_start() - 1, LOWEST + 1000)
    for _ in range(200):
        port = random.randint(LOWEST, highest)  # noqa: S311 - spreading callers apart, not a secret
        if _bindable(port, kinds, host):
            return port
    raise LabError(f"no port of {host} between {LOWEST} and {highest} is free for {'TCP and UDP' if udp else 'TCP'}")

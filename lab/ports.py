"""Free loopback ports for the lab's parts, the tests and the benchmarks."""

from __future__ import annotations

import socket

from lab.errors import LabError

HOST = "127.0.0.1"


def free_port(udp: bool = False, host: str = HOST) -> int:
    """A port of `host` free for TCP (and for UDP too with `udp`: DNS listens on both) at the moment of asking."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for _ in range(100):
        with socket.socket(socket.AF_INET, kinds[0]) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            others = [socket.socket(socket.AF_INET, kind) for kind in kinds[1:]]
            try:
                for other in others:
                    other.bind((host, port))
            except OSError:
                continue
            finally:
                for other in others:
                    other.close()
            return port
    raise LabError(f"no port of {host} is free for {'TCP and UDP' if udp else 'TCP'}")

"""Waiting until a container's sshd answers: the moment Ansible (or a test) can log in."""

from __future__ import annotations

import socket

from api.build_host.errors import BuildHostError
from api.waiting import wait_for

BANNER_PREFIX = b"SSH-2.0-"
CONNECT_TIMEOUT = 2.0


def wait_ssh(ip: str, port: int = 22, timeout: float = 60.0) -> str:
    """Wait until `ip`:`port` sends an SSH-2.0 banner, and return it.

    A listening port is not enough (something else may hold it, or sshd may still be refusing); the
    banner is what an SSH client waits for. BuildHostError after `timeout` seconds with what was seen last:
    refused, unreachable, or the unexpected greeting.
    """
    seen = "nothing yet"

    def banner() -> str | None:
        nonlocal seen
        try:
            with socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT) as connection:
                greeting = connection.recv(256)
        except OSError as exc:
            seen = f"{type(exc).__name__}: {exc}"
            return None
        if greeting.startswith(BANNER_PREFIX):
            return greeting.split(b"\r\n", 1)[0].decode(errors="replace")
        seen = f"the greeting {greeting[:80]!r}"
        return None

    return wait_for(
        banner,
        timeout=timeout,
        what=f"an SSH banner from {ip}:{port}",
        last_seen=lambda: seen,
        error=BuildHostError,
    )

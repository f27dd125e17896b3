"""Which DNS servers a container uses: by default the host's own, reached through the bridge's NAT."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from api.build_host.errors import BuildHostError

# systemd-resolved's stub (127.0.0.53) is loopback, unreachable from a container; this file lists the
# upstream servers it forwards to.
RESOLV_FILES = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


def host_nameservers(files: tuple[Path, ...] = RESOLV_FILES) -> list[str]:
    """The first of `files` that names non-loopback IPv4 nameservers gives them; BuildHostError when none does."""
    for path in files:
        servers = [server for server in _nameservers(path) if _usable(server)]
        if servers:
            return servers
    raise BuildHostError(
        "the host has no nameserver a container can reach (only loopback ones or none): pass nameservers"
    )


def check_nameservers(servers: list[str]) -> list[str]:
    """Each entry must be an IP address; returned as written."""
    for server in servers:
        try:
            ipaddress.ip_address(server)
        except ValueError as exc:
            raise BuildHostError(f"invalid nameserver {server!r}: expected an IP address") from exc
    if not servers:
        raise BuildHostError("nameservers must not be empty")
    return servers


def resolv_conf(servers: list[str]) -> str:
    return "".join(f"nameserver {server}\n" for server in servers)


def _nameservers(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [fields[1] for fields in (line.split() for line in lines) if len(fields) >= 2 and fields[0] == "nameserver"]


def _usable(server: str) -> bool:
    try:
        address = ipaddress.ip_address(server.split("%")[0])
    except ValueError:
        return False
    return address.version == 4 and not address.is_loopback

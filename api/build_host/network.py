"""The bridge lab containers plug into, with NAT so they reach the Debian mirror through the host.

`ensure_bridge` makes the bridge, gives it the gateway address, enables IPv4 forwarding and installs an
nftables table of our own, `ip proxmoxwp_<bridge>`: masquerade for the bridge's subnet leaving by any other
interface, and accept for forwarding to and from the bridge. The table is replaced as a whole in one nft
transaction, so running it again never duplicates rules. `remove_bridge` takes both away.

Forwarding stays enabled after `remove_bridge`: it is a host-wide setting other things may rely on. An
accept in our forward chain does not override a drop in another table's chain on the same hook (Docker's,
for instance); such a host needs its own rule for the bridge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from api.build_host.commands import run
from api.build_host.errors import BuildHostError
from api.build_host.locks import exclusive

BRIDGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,14}$")  # an interface name that is also an nft identifier
TABLE_PREFIX = "proxmoxwp_"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# What ip_forward was before the first of our bridges; in /run, so a reboot forgets it with the bridges.
FORWARD_BEFORE = Path("/run/proxmoxwp-lab/ip_forward.before")


@dataclass(frozen=True)
class Bridge:
    """A bridge as `ensure_bridge` left it."""

    name: str
    gateway: ipaddress.IPv4Interface  # the host's address on the bridge, with the subnet's prefix
    table: str

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return self.gateway.network

    def as_dict(self) -> dict[str, str]:
        return {"bridge": self.name, "gateway": str(self.gateway.ip), "subnet": str(self.subnet), "table": self.table}


def ensure_bridge(name: str, gateway_cidr: str) -> Bridge:
    """The bridge `name` with address `gateway_cidr` (e.g. 10.231.0.1/24), up, forwarding and NATed."""
    check_bridge_name(name)
    gateway = parse_gateway(gateway_cidr)
    link = _link(name)
    if link is None:
        run(["ip", "link", "add", "name", name, "type", "bridge"])
    elif link.get("linkinfo", {}).get("info_kind") != "bridge":
        raise BuildHostError(f"the interface {name} exists and is not a bridge")
    run(["ip", "address", "replace", str(gateway), "dev", name])
    run(["ip", "link", "set", "dev", name, "up"])
    table = table_name(name)
    with _bridges_locked():
        _enable_forwarding()
        run(["nft", "-f", "-"], stdin=nat_ruleset(table, name, gateway.network))
    return Bridge(name, gateway, table)


def remove_bridge(name: str) -> None:
    """Delete the bridge `name` and its nftables table; parts already gone are not an error."""
    check_bridge_name(name)
    if _link(name) is not None:
        run(["ip", "link", "delete", "dev", name])
    table = table_name(name)
    with _bridges_locked():
        # Declaring the table first makes the delete succeed whether or not it existed.
        run(["nft", "-f", "-"], stdin=f"table ip {table}\ndelete table ip {table}\n")
        _restore_forwarding()


@contextlib.contextmanager
def _bridges_locked() -> Iterator[None]:
    """Bridges of several labs and test workers come and go at once: the last one's restore of ip_forward must not
    run between another's enabling and its table, or that bridge's containers lose their NAT."""
    FORWARD_BEFORE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with exclusive(FORWARD_BEFORE.parent / "bridges.lock", timeout=60, what="another lab's bridge change"):
        yield


def _enable_forwarding() -> None:
    """Turn IPv4 forwarding on for the NAT, remembering what it was the first time, so that the last bridge to go
    puts it back: the machine is left as it was."""
    if not FORWARD_BEFORE.exists():
        FORWARD_BEFORE.write_text(IP_FORWARD.read_text())
    IP_FORWARD.write_text("1\n")


def _restore_forwarding() -> None:
    if not FORWARD_BEFORE.exists() or our_tables():
        return  # never changed by us, or another bridge of ours still needs it
    IP_FORWARD.write_text(FORWARD_BEFORE.read_text())
    FORWARD_BEFORE.unlink(missing_ok=True)


def our_tables() -> list[str]:
    """The nftables tables of every bridge of ours on this machine (labs' and tests' alike)."""
    tables = json.loads(run(["nft", "--json", "list", "tables", "ip"]).stdout).get("nftables", [])
    names = [entry.get("table", {}).get("name", "") for entry in tables]
    return [name for name in names if name.startswith(TABLE_PREFIX)]


def bridge_exists(name: str) -> bool:
    return _link(name) is not None


def table_exists(name: str) -> bool:
    """Our nftables table for the bridge `name` is installed."""
    tables = run(["nft", "--json", "list", "tables", "ip"]).stdout
    entries = json.loads(tables).get("nftables", [])
    return any(entry.get("table", {}).get("name") == table_name(name) for entry in entries)


def bridge_ports(name: str) -> list[str]:
    """The interfaces (container veths) attached to the bridge."""
    output = run(["ip", "-json", "link", "show", "master", name]).stdout
    return [link["ifname"] for link in json.loads(output or "[]")]


def free_subnet(pool: str = "10.231.0.0/16", prefix: int = 24) -> ipaddress.IPv4Network:
    """The first /`prefix` of `pool` that no route and no interface address on this host overlaps.

    Test runs take their subnet here, so a bridge left by a crashed run does not clash with the next one.
    """
    taken = [ipaddress.ip_network(route, strict=False) for route in _routed_networks()]
    for subnet in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix):
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise BuildHostError(f"every /{prefix} of {pool} is in use on this host")


def nat_ruleset(table: str, bridge: str, subnet: ipaddress.IPv4Network) -> str:
    """An nft script that (re)creates `table` whole: declared, deleted and defined in one transaction."""
    return f"""\
table ip {table}
delete table ip {table}
table ip {table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{bridge}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{bridge}" accept
        oifname "{bridge}" accept
    }}
}}
"""


def check_bridge_name(name: str) -> None:
    if not BRIDGE_NAME.fullmatch(name):
        raise BuildHostError(f"invalid bridge name {name!r}: 1 to 15 of a-z, 0-9 and _, starting with a letter")


def table_name(bridge: str) -> str:
    return TABLE_PREFIX + bridge


def parse_gateway(gateway_cidr: str) -> ipaddress.IPv4Interface:
    """ADDRESS/PREFIX of the host on the bridge; the prefix must leave room for containers."""
    try:
        gateway = ipaddress.ip_interface(gateway_cidr)
    except ValueError as exc:
        raise BuildHostError(f"invalid gateway {gateway_cidr!r}: expected an IPv4 ADDRESS/PREFIX") from exc
    if not isinstance(gateway, ipaddress.IPv4Interface) or "/" not in gateway_cidr:
        raise BuildHostError(f"invalid gateway {gateway_cidr!r}: expected an IPv4 ADDRESS/PREFIX")
    network = gateway.network
    if network.prefixlen > 30 or gateway.ip in (network.network_address, network.broadcast_address):
        raise BuildHostError(
            f"invalid gateway {gateway_cidr!r}: it must be a host address of a subnet of /30 or larger"
        )
    return gateway


def _link(name: str) -> dict | None:
    """`ip -details link show` of `name`, or None when there is no such interface."""
    result = run(["ip", "-json", "-details", "link", "show", "dev", name], check=False)
    if result.returncode != 0:
        if "does not exist" in result.stderr:
            return None
        raise BuildHostError(f"`ip link show dev {name}` failed: {result.stderr.strip()}")
    links = json.loads(result.stdout)
    return links[0] if links else None


def _routed_networks() -> list[str]:
    """Destinations of every IPv4 route in every table (connected subnets included)."""
    routes = json.loads(run(["ip", "-json", "-4", "route", "show", "table", "all"]).stdout or "[]")
    return [route["dst"] for route in routes if route.get("dst") not in (None, "default")]

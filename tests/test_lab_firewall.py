"""The lab's Proxmox VE enforces the guests' firewall with nftables (lab/pve/netfilter.py): two containers from the
run's rootfs with the rules a site gets (docs/firewall.md), set through the API as the product sets them. From
inside one, the other and the proxy's admin port cannot be reached, while this machine (the lab's proxy and
controller) still reaches both on 80; a container that takes the other's address gets no traffic."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
import requests
from test_lab_pve import PREFIX, Pve, boot, create, ct, lab_pve, pve, templates  # noqa: F401 - fixtures

from lab.pve import netfilter

pytestmark = pytest.mark.containers

CONNECT_SECS = 2


def site_rules(gateway: str, subnet: str) -> list[dict]:
    """What roles/pve_container gives a site in the lab: the proxy and the controller are this machine."""
    return [
        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "80", "source": gateway},
        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "source": gateway},
        {"type": "out", "action": "ACCEPT", "proto": "udp", "dport": "53", "dest": gateway},
        {"type": "out", "action": "ACCEPT", "proto": "tcp", "dport": "53", "dest": gateway},
        {"type": "out", "action": "DROP", "proto": "tcp", "dport": "81", "dest": gateway},
        {"type": "out", "action": "DROP", "dest": subnet},
        {"type": "out", "action": "ACCEPT", "proto": "tcp", "dport": "80,443"},
    ]


def isolate(api: Pve, vmid: int, ip: str, rules: list[dict]) -> None:
    """The calls proxmoxwp_lxc_firewall makes for a new site."""
    api.ok("POST", ct(vmid, "/firewall/ipset"), name="ipfilter-net0")
    api.ok("POST", ct(vmid, "/firewall/ipset/ipfilter-net0"), cidr=ip)
    for rule in reversed(rules):
        api.ok("POST", ct(vmid, "/firewall/rules"), enable=1, **rule)
    api.ok("PUT", ct(vmid, "/firewall/options"), enable=1, ipfilter=1, policy_in="DROP", policy_out="DROP")
    net0 = api.ok("GET", ct(vmid, "/config"))["net0"]
    api.ok("PUT", ct(vmid, "/config"), net0=net0 + ",firewall=1")


@contextlib.contextmanager
def listening(address: str, port: int) -> Iterator[None]:
    """A TCP listener on this machine that accepts and closes (the proxy's admin API, the nameserver)."""
    server = socket.create_server((address, port))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()


class Inside:
    def __init__(self, containers, vmid: int):
        self.containers, self.name = containers, f"{PREFIX}{vmid}"

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.containers.attach(self.name, list(argv), check=check)

    def connects(self, address: str, port: int) -> bool:
        probe = (
            "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"
        )
        done = self.sh("python3", "-c", probe, address, str(port), str(CONNECT_SECS), check=False)
        return done.returncode == 0


def serves(address: str) -> str | None:
    """What the container at address answers on 80 (its name), from this machine; None when nothing answers."""
    try:
        return requests.get(f"http://{address}/name", timeout=CONNECT_SECS).text.strip()
    except requests.RequestException:
        return None


def test_a_site_reaches_neither_another_site_nor_the_proxys_admin_port_nor_anyone_with_a_borrowed_address(
    pve,  # noqa: F811 - the fixture imported above
    lab_pve,  # noqa: F811
    lab_bridge,
    lab_ssh_key,
    lab_containers,
):
    gateway, subnet = lab_bridge.gateway, str(lab_bridge.bridge.subnet)
    # Privileged, which the token may make once it holds Sys.Modify: what is tested is the network, and a privileged
    # container is made from the rootfs as it is, without shifting a copy into an id map.
    lab_pve.call(lab_pve.pve.access.roles[lab_pve.pve.role].add, "Sys.Modify")
    ips = {vmid: create(pve, vmid, lab_bridge, lab_ssh_key, unprivileged=0) for vmid in (201, 202)}
    for vmid, ip in ips.items():
        boot(pve, vmid, ip)
        inside = Inside(lab_containers, vmid)
        inside.sh("sh", "-c", f"echo site-{vmid} > /root/name")
        inside.sh("systemd-run", "--unit=web", "python3", "-m", "http.server", "80", "--directory", "/root")
    one, two = Inside(lab_containers, 201), Inside(lab_containers, 202)
    with listening(gateway, 81), listening(gateway, 53):
        assert one.connects(ips[202], 22), "without the firewall the sites reach each other"
        lab_pve.call(lab_pve.pve.set_datacenter_firewall, True)
        for vmid, ip in ips.items():
            isolate(pve, vmid, ip, site_rules(gateway, subnet))
        # The API answered each change after applying it (other labs of the run may have tables of their own).
        assert netfilter.table_name(lab_bridge.name) in lab_pve.call(netfilter.our_tables)

        assert not one.connects(ips[202], 22) and not one.connects(ips[202], 80)
        assert not two.connects(ips[201], 22) and not two.connects(ips[201], 80)
        assert not one.connects(gateway, 81) and not two.connects(gateway, 81)
        assert one.connects(gateway, 53)  # its nameserver
        assert serves(ips[201]) == "site-201" and serves(ips[202]) == "site-202"

        # Site 201 takes 202's address: nothing it sends gets out, and 202's traffic still goes to 202.
        one.sh(
            "sh",
            "-c",
            f"ip addr flush dev eth0 && ip addr add {ips[202]}/{lab_bridge.bridge.subnet.prefixlen} dev eth0",
        )
        assert not one.connects(gateway, 53)
        subprocess.run(["ip", "neigh", "flush", "to", ips[202], "dev", lab_bridge.name], check=True)
        assert serves(ips[202]) == "site-202"

    pve.done("POST", ct(201, "/status/stop"))
    pve.done("DELETE", ct(201))
    # The destroyed site's chains go with it; the other's stay.
    ruleset = subprocess.run(
        ["nft", "list", "table", "inet", netfilter.table_name(lab_bridge.name)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ct201_in" not in ruleset and "ct202_in" in ruleset

"""Tenant isolation at the fake-cluster level: a site's container gets its own firewall through the Proxmox API
(net0 filtered, the IP filter holding its own address, rules that let in only the proxy and the controller and out
only DNS and the allowed egress, policies DROP), a second run changes nothing, delete leaves no firewall config,
and without the inventory's setting no firewall is made."""

from __future__ import annotations

import pytest
from sites import run_playbook, site_inventory

pytestmark = pytest.mark.cluster

SERVICE = 4301
GATEWAY = "10.77.0.1"  # the lab inventory's proxy, controller and nameserver (the bridge's address)


@pytest.fixture
def play(tmp_path, pve_api, edge_peers):
    count = iter(range(100))

    def run(playbook: str, inventory_overrides: dict | None = None, service_id: int = SERVICE, **variables):
        where = tmp_path / f"run{next(count)}"
        inventory = site_inventory(where, pve_api, edge_peers.settings, **(inventory_overrides or {}))
        done = run_playbook(inventory, where / "runs", playbook, service_id=service_id, **variables)
        assert done.ok, f"{playbook} failed: {done.failed_task}: {done.message}"
        return done

    return run


def firewall_of(pve, vmid: int) -> dict | None:
    return pve.call(pve.pve.guest_firewall, vmid)


def test_a_site_is_made_with_its_firewall_and_loses_it_with_its_container(pve, play):
    pve.call(pve.pve.set_datacenter_firewall, True)
    created = play("site_create.yml", plan="basic", public_ip="203.0.113.10")
    vmid, ip = created.stats["vmid"], created.stats["ip"]
    config = pve.call(lambda: dict(pve.pve.ct(vmid).config))
    assert "firewall=1" in config["net0"] and f"ip={ip}/16" in config["net0"]
    fw = firewall_of(pve, vmid)
    assert {k: fw["options"][k] for k in ("enable", "ipfilter", "policy_in", "policy_out")} == {
        "enable": 1,
        "ipfilter": 1,
        "policy_in": "DROP",
        "policy_out": "DROP",
    }
    assert fw["ipset"] == {"ipfilter-net0": [{"cidr": ip}]}
    rules = [
        (r["type"], r["action"], r.get("proto"), r.get("dport"), r.get("source"), r.get("dest"), r["enable"])
        for r in fw["rules"]
    ]
    assert rules == [
        ("in", "ACCEPT", "tcp", "80", GATEWAY, None, 1),
        ("in", "ACCEPT", "tcp", "22", GATEWAY, None, 1),
        ("out", "ACCEPT", "udp", "53", None, GATEWAY, 1),
        ("out", "ACCEPT", "tcp", "53", None, GATEWAY, 1),
        ("out", "DROP", "tcp", "81", None, GATEWAY, 1),
        ("out", "DROP", None, None, None, "10.77.0.0/16", 1),
        ("out", "ACCEPT", "tcp", "80,443", None, None, 1),
    ]

    again = play("site_create.yml", plan="basic", public_ip="203.0.113.10")
    assert again.changed == 0, f"the second create changed {again.changed} task(s)"
    assert firewall_of(pve, vmid)["rules"] == fw["rules"]

    play("site_delete.yml")
    assert firewall_of(pve, vmid) is None


def test_the_operators_networks_and_egress_become_rules_and_off_means_none(pve, play):
    settings = {
        "proxmoxwp_ct_firewall": {
            "enabled": True,
            "proxy_address": "10.77.0.2",
            "proxy_admin_port": 81,
            "controller_address": "10.77.0.3",
            "egress": [{"proto": "tcp", "dport": "443"}, {"proto": "tcp", "dport": "587", "dest": "192.0.2.25"}],
            "blocked_networks": ["192.168.10.0/24"],
        }
    }
    created = play("site_create.yml", settings, plan="basic", public_ip="203.0.113.10")
    rules = firewall_of(pve, created.stats["vmid"])["rules"]
    assert [(r["type"], r["action"], r.get("dport"), r.get("source"), r.get("dest")) for r in rules] == [
        ("in", "ACCEPT", "80", "10.77.0.2", None),
        ("in", "ACCEPT", "22", "10.77.0.3", None),
        ("out", "ACCEPT", "53", None, GATEWAY),
        ("out", "ACCEPT", "53", None, GATEWAY),
        ("out", "DROP", "81", None, "10.77.0.2"),
        ("out", "DROP", None, None, "10.77.0.0/16,192.168.10.0/24"),
        ("out", "ACCEPT", "443", None, None),
        ("out", "ACCEPT", "587", None, "192.0.2.25"),
    ]

    off = play(
        "site_create.yml",
        {"proxmoxwp_ct_firewall": {"enabled": False}},
        service_id=SERVICE + 1,
        plan="basic",
        public_ip="203.0.113.11",
    )
    assert firewall_of(pve, off.stats["vmid"]) is None
    assert "firewall" not in pve.call(lambda: pve.pve.ct(off.stats["vmid"]).config["net0"])

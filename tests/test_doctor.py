"""`proxmoxwp doctor` and `GET /health?deep=1`.

The doctor runs as an operator runs it (the command, with the environment of a worker) against the fake Proxmox VE,
the NPM double and the session's PowerDNS: everything green first, then one fault at a time, each reported with its
fix and a failing exit status. The deep health check is the API's cheap part of it, behind the bearer token.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, ROOT, TOKEN
from sites import site_ct, site_inventory

WRONG_PIN = "AB:" * 31 + "AB"


def ssh_key_pair(directory: Path) -> Path:
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    return key


@pytest.fixture
def make_inventory(tmp_path, pve, pve_api, edge_peers):
    """An inventory for the fake cluster and the edge, with a real SSH key pair and a container gateway that this
    machine reaches (loopback: tests never send anything beyond it), changed by `overrides`. The fake's datacenter
    firewall is on, as the production guide has the operator turn it on (docs/firewall.md)."""
    key = ssh_key_pair(tmp_path)
    pve.call(pve.pve.set_datacenter_firewall, True)
    count = iter(range(100))

    def make(**overrides) -> Path:
        settings = {
            "proxmoxwp_ct_ssh": {"user": "root", "port": 22, "private_key_file": str(key), "timeout": 30},
            "proxmoxwp_ct_gateway": "127.0.0.1",
            **overrides,
        }
        return site_inventory(tmp_path / f"site{next(count)}", pve_api, edge_peers.settings, **settings)

    make.key = key
    return make


@pytest.fixture
def doctor(runtime, process_env):
    """Run `proxmoxwp doctor --json` with an inventory; (exit status, {check id: finding})."""

    def run(inventory: Path, *options: str) -> tuple[int, dict[str, dict]]:
        env = {**process_env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}
        done = subprocess.run(
            [str(BIN / "proxmoxwp"), "doctor", "--json", *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        report = json.loads(done.stdout)
        assert report["ok"] is (done.returncode == 0), done.stdout
        return done.returncode, {check["id"]: check for check in report["checks"]}

    return run


def failing(found: dict[str, dict]) -> dict[str, dict]:
    return {name: check for name, check in found.items() if not check["ok"]}


@pytest.mark.cluster
def test_the_doctor_finds_the_lab_in_order(doctor, make_inventory):
    status, found = doctor(make_inventory())
    assert failing(found) == {}, json.dumps(failing(found), indent=1)
    assert status == 0
    for expected in (
        "inventory",
        "database",
        "queue",
        "ssh.key",
        "network.containers",
        "resolvers",
        "pve.api",
        "pve.privileges",
        "pve.nodes",
        "pve.storage",
        "pve.template",
        "pve.bridge",
        "pve.firewall",
        "pve.addresses",
        "npm.api",
        "npm.version",
        "npm.login",
        "dns.zone",
        "dns.write",
    ):
        assert expected in found, sorted(found)
    assert found["pve.privileges"]["summary"].startswith("The token proxmoxwp@pve!ansible holds the")


# Each fault: the inventory settings that make it (from the fake's connection and the edge's settings), the one check
# that must fail, words of its summary and of its fix.
FAULTS = {
    "wrong-tls-pin": (
        lambda pve_api, _edge: {"proxmoxwp_pve_api": {**pve_api, "fingerprint": WRONG_PIN}},
        "pve.api",
        "fingerprint is",
        "api.fingerprint",
    ),
    "missing-storage": (
        lambda _pve, _edge: {"proxmoxwp_pve_storage": "ceph-gone"},
        "pve.storage",
        "has no storage ceph-gone",
        "Datacenter > Storage",
    ),
    "missing-template": (
        lambda _pve, _edge: {"proxmoxwp_pve_ostemplate": "local:vztmpl/debian-13-missing.tar.zst"},
        "pve.template",
        "is not on the storage local of pve1",
        "pveam download",
    ),
    "ha-placement-missing": (
        lambda _pve, _edge: {"proxmoxwp_pve_ha_placement": "sites-eu"},
        "pve.ha_placement",
        "The node-affinity rule sites-eu does not exist (Proxmox VE 9",
        "Datacenter > HA > Affinity Rules",
    ),
    "address-range-outside-the-network": (
        lambda _pve, _edge: {"proxmoxwp_ct_addresses": {"ranges": ["10.99.0.10-10.99.0.20"], "exclude": []}},
        "pve.addresses",
        "'10.99.0.10-10.99.0.20' is not inside the containers' network 10.77.0.0/16",
        "proxmoxwp_ct_addresses",
    ),
    "dns-zone-missing": (
        lambda _pve, edge: {"proxmoxwp_dns": {**edge["proxmoxwp_dns"], "zone": "gone.example"}},
        "dns.zone",
        "has no zone gone.example",
        "Set proxmoxwp_dns.zone",
    ),
    "npm-wrong-credentials": (
        lambda _pve, edge: {"proxmoxwp_npm_api": {**edge["proxmoxwp_npm_api"], "secret": "not-the-password"}},
        "npm.login",
        "Logging in to Nginx Proxy Manager failed",
        "api.identity and api.secret",
    ),
}


@pytest.mark.cluster
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_doctor_names_each_fault_with_its_fix(doctor, make_inventory, pve_api, edge_peers, fault):
    overrides, check, summary, fix = FAULTS[fault]
    status, found = doctor(make_inventory(**overrides(pve_api, edge_peers.settings)))
    assert status == 1
    assert list(failing(found)) == [check], failing(found)
    assert summary in found[check]["summary"]
    assert fix in found[check]["fix"]


@pytest.mark.cluster
def test_the_doctor_names_a_datacenter_firewall_that_is_off(doctor, make_inventory, pve):
    inventory = make_inventory()
    # PVE's default: the datacenter firewall is off, and no container's rules apply.
    pve.call(pve.pve.set_datacenter_firewall, False)
    status, found = doctor(inventory)
    assert status != 0
    assert list(failing(found)) == ["pve.firewall"]
    assert "The datacenter firewall is off" in found["pve.firewall"]["summary"]
    assert "pvesh set /cluster/firewall/options --enable 1" in found["pve.firewall"]["fix"]
    # An operator who keeps the sites without a firewall is told what that means, and nothing fails.
    status, found = doctor(make_inventory(proxmoxwp_ct_firewall={"enabled": False}))
    assert status == 0 and found["pve.firewall"]["ok"]
    assert "can reach each other" in found["pve.firewall"]["summary"]


@pytest.mark.cluster
def test_the_doctor_names_guests_outside_the_project_that_use_addresses_of_the_pool(doctor, make_inventory, pve):
    def guests(model):
        site_ct(model, 150, 7, config={"net0": "name=eth0,bridge=vmbr0,ip=10.77.0.100/16,gw=10.77.0.1"})
        model.add_ct(151, name="resolver", config={"net0": "name=eth0,bridge=vmbr0,ip=10.77.0.101/16,gw=10.77.0.1"})
        model.add_vm(152, "backup", config={"ipconfig0": "ip=10.77.0.110/16,gw=10.77.0.1"})
        model.add_vm(153, "outside", config={"ipconfig0": "ip=10.77.0.99/16,gw=10.77.0.1"})

    pve.call(guests, pve.pve)
    ranges = {"ranges": ["10.77.0.100-10.77.0.119"], "exclude": ["10.77.0.101"]}
    status, found = doctor(make_inventory(proxmoxwp_ct_addresses=ranges))
    assert status == 1 and list(failing(found)) == ["pve.addresses"], failing(found)
    summary = found["pve.addresses"]["summary"]
    # the site is the project's, 10.77.0.99 lies outside the ranges and the resolver's address is excluded
    assert summary.split(": ", 1)[1].startswith("10.77.0.110 (VM 152 (backup)). New sites skip them"), summary
    assert "10.77.0.101" not in summary and "10.77.0.99" not in summary
    assert "proxmoxwp_ct_addresses.exclude" in found["pve.addresses"]["fix"]

    pve.call(lambda model: [model.vms.remove(vm) for vm in list(model.vms) if vm.vmid == 152], pve.pve)
    pve.call(lambda model: model.cts.remove(model.ct(151)), pve.pve)
    status, found = doctor(make_inventory(proxmoxwp_ct_addresses=ranges))
    assert status == 0
    # 20 addresses, one excluded, one the site's
    assert found["pve.addresses"]["summary"] == "18 of the 19 addresses of the pool 10.77.0.100-10.77.0.119 are free."


@pytest.mark.cluster
def test_the_doctor_names_a_privilege_the_token_lacks(doctor, make_inventory, pve):
    pve.call(pve.pve.take_privilege, "Sys.Audit")  # `pveum role modify` on a real cluster
    status, found = doctor(make_inventory())
    assert status == 1
    # the firewall's options are what the token may no longer read: that check says so, and points to this one
    assert sorted(failing(found)) == ["pve.firewall", "pve.privileges"], failing(found)
    assert "Permission check failed (/, Sys.Audit)" in found["pve.firewall"]["summary"]
    assert "lacks Sys.Audit on /" in found["pve.privileges"]["summary"]
    assert "--privs Sys.Audit" in found["pve.privileges"]["fix"]


@pytest.mark.cluster
def test_the_doctor_says_when_the_worker_cannot_read_the_ssh_key(doctor, make_inventory):
    inventory = make_inventory()
    status, found = doctor(inventory, "--worker-user", "nobody", "--local")
    assert status == 1
    assert list(failing(found)) == ["ssh.key"]
    assert "nobody, who runs the workers, cannot read" in found["ssh.key"]["summary"]
    assert f"chown nobody {make_inventory.key}" in found["ssh.key"]["fix"]
    make_inventory.key.chmod(0o644)
    status, found = doctor(inventory, "--local")
    assert "ssh refuses such a key" in found["ssh.key"]["summary"]
    assert found["ssh.key"]["fix"] == f"`chmod 600 {make_inventory.key}`."


@pytest.mark.db
def test_the_deep_health_check_needs_the_token_and_reports_the_cheap_checks(api, runtime):
    shallow = api.client.get("/health").get_json()
    assert shallow["status"] == "ok" and "checks" not in shallow
    refused = api.client.get("/health?deep=1")
    assert refused.status_code == 401
    deep = api.client.get("/health?deep=1", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    checks = {check["id"]: check for check in deep["checks"]}
    assert list(checks) == ["inventory", "database", "queue", "ssh.key"]
    assert checks["database"]["ok"] and checks["queue"]["ok"] and checks["inventory"]["ok"]
    # the test inventory names no SSH key: the API says so, and what to do
    assert not checks["ssh.key"]["ok"] and "private_key_file" in checks["ssh.key"]["summary"]
    assert deep["status"] == "failing"


@pytest.mark.cluster
def test_the_doctor_checks_each_api_host_and_names_the_one_that_is_down(doctor, make_inventory, pve):
    pve.call(lambda: "pve2" in pve.pve.nodes or pve.pve.add_node("pve2"))
    pve.serve_node("pve2")
    inventory = make_inventory(proxmoxwp_pve_api=pve.pve_api_hosts())
    first, second = (f"pve.api@127.0.0.1:{pve.endpoints[node].port}" for node in ("pve1", "pve2"))
    status, found = doctor(inventory)
    assert failing(found) == {}, json.dumps(failing(found), indent=1)
    assert status == 0 and first in found and second in found and "pve.api" not in found

    pve.stop_endpoint("pve1")
    status, found = doctor(inventory)
    assert status == 1
    # the one host down is named with its fix; the other checks ran through the second host
    assert list(failing(found)) == [first], failing(found)
    assert "Could not connect to the Proxmox VE API at 127.0.0.1:" in found[first]["summary"]
    assert "systemctl status pveproxy" in found[first]["fix"]
    assert found["pve.privileges"]["ok"] and found["pve.nodes"]["ok"]

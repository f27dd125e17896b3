"""A site's node fails: the site's operations wait for Proxmox VE's HA manager to move the site, then act on the new
node and report it; past the bound they fail saying so and change nothing (docs/operations.md, "A node fails")."""

from __future__ import annotations

import time

import pytest
from sites import load_client_module, run_playbook, site_ct, site_inventory

from lab.pve.capacity import GIB
from lab.pve.fake import DRBD

pytestmark = pytest.mark.cluster

SERVICE = 4301
VMID = 4301
# The fake's fencing and recovery time (PVE's is a minute or more): a couple of seconds.
HA_DELAY = 3.0


@pytest.fixture
def site(pve, pve_api, edge_peers, tmp_path):
    """A running HA site of SERVICE on pve2 of a three-node fake cluster; the playbooks talk to pve1's API."""

    def add(model):
        model.add_node("pve2", maxmem=32 * GIB)
        model.add_node("pve3", maxmem=16 * GIB)
        ct = site_ct(
            model, VMID, SERVICE, node="pve2", status="running", config={"rootfs": f"{DRBD}:vm-{VMID}-disk-0,size=8G"}
        )
        ct.ha_state = "started"

    pve.call(add, pve.pve)
    inventory = site_inventory(tmp_path, pve_api, edge_peers.settings)
    return lambda playbook, **v: run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **v)


def where(pve) -> tuple[str, str]:
    """(node, status) of the site's container as the fake holds it."""
    return pve.call(lambda: (pve.pve.ct(VMID).node, pve.pve.ct(VMID).status))


def status_on(pve, node: str) -> str:
    """The container's status read through the fake's API on its node."""
    client = load_client_module().PveClient(pve.pve_api(), task_timeout=60)
    return client.get(f"/nodes/{node}/lxc/{VMID}/status/current")["status"]


def test_a_restart_sent_while_the_node_is_down_waits_for_ha_and_acts_on_the_new_node(site, pve):
    failed_at = time.monotonic()
    pve.fail_node("pve2", recovery_delay=HA_DELAY)

    run = site("site_power.yml", power_action="restart")

    assert run.ok, run.message
    assert time.monotonic() - failed_at >= HA_DELAY
    node, status = where(pve)
    assert node in ("pve1", "pve3") and status == "running"
    assert run.stats["node"] == node
    assert status_on(pve, node) == "running"


def test_a_snapshot_and_a_suspend_follow_the_site_to_its_new_node(site, pve):
    pve.fail_node("pve2", recovery_delay=HA_DELAY)

    backup = site("backup_create.yml", bak="BAK01012026-1")
    assert backup.ok, backup.message
    node, _ = where(pve)
    assert node != "pve2" and backup.stats["node"] == node
    assert "BAK01012026-1" in pve.call(lambda: list(pve.pve.ct(VMID).snapshots))

    suspended = site("site_suspend.yml")
    assert suspended.ok, suspended.message
    assert suspended.stats["node"] == node and where(pve) == (node, "stopped")


def test_past_the_bound_the_operation_fails_clearly_and_changes_nothing(site, pve, monkeypatch):
    monkeypatch.setenv("PROXMOXWP_PVE_RELOCATION_TIMEOUT", "1")
    pve.fail_node("pve2", recovery_delay=120)

    run = site("site_power.yml", power_action="stop")

    assert not run.ok
    assert "node pve2 failed and the HA manager has not moved it to another node yet" in run.message
    assert "try again later" in run.message
    assert "node" not in run.stats
    assert where(pve) == ("pve2", "stopped")  # it died with the node; nothing was asked of it
    assert pve.call(lambda: pve.pve.ct(VMID).ha_state) == "started"


def test_a_site_without_ha_on_a_failed_node_fails_at_once(site, pve):
    pve.call(lambda: setattr(pve.pve.ct(VMID), "ha_state", None))
    pve.fail_node("pve2")

    started = time.monotonic()
    run = site("site_power.yml", power_action="restart")

    assert not run.ok
    assert "which does not answer" in run.message and "not an HA resource" in run.message
    assert time.monotonic() - started < 60
    assert where(pve)[0] == "pve2"

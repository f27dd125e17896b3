"""A site's node fails while the customer restarts the site through the API: the real worker's playbook waits for
Proxmox VE's HA manager to move the site (the fake's, after a couple of seconds), restarts it on its new node, and
/status shows that node (docs/operations.md, "A node fails")."""

from __future__ import annotations

import pytest
from conftest import ROOT, wait_job
from sites import site_inventory

from lab.pve.capacity import GIB

pytestmark = pytest.mark.db

SERVICE = 6401
PUBLIC_IP = "127.0.0.2"
HA_DELAY = 3.0


@pytest.fixture
def env(env, tmp_path, pve, edge_peers):
    """The API's environment with the real playbooks and an inventory that lists every node's API of a three-node
    fake cluster, sites placed on pve2 only."""

    def add(model):
        model.add_node("pve2", maxmem=32 * GIB)
        model.add_node("pve3", maxmem=16 * GIB)

    pve.call(add, pve.pve)
    for node in ("pve2", "pve3"):
        pve.serve_node(node)
    inventory = site_inventory(
        tmp_path / "site", pve.pve_api_hosts(), edge_peers.settings, proxmoxwp_pve_nodes=["pve2"]
    )
    return {**env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}


def test_a_restart_sent_while_the_sites_node_is_down_runs_on_the_new_node_and_status_shows_it(api, start_worker, pve):
    start_worker()
    created = api.post(
        "/create-site", {"service_id": SERVICE, "email": "owner@example.com", "plan": "basic", "public_ip": PUBLIC_IP}
    )
    assert created.status_code == 202, created.get_json()
    assert wait_job(api, created.get_json()["job_id"], timeout=300)["state"] == "succeeded"
    assert api.get("/status", service_id=SERVICE).get_json()["node"] == "pve2"
    vmid = pve.call(lambda: next(ct.vmid for ct in pve.pve.cts if ct.node == "pve2"))

    pve.fail_node("pve2", recovery_delay=HA_DELAY)
    restart = api.post("/action/power", {"service_id": SERVICE, "action": "restart"})
    assert restart.status_code == 202, restart.get_json()

    job = wait_job(api, restart.get_json()["job_id"], timeout=300)
    assert job["state"] == "succeeded", job
    node, status = pve.call(lambda: (pve.pve.ct(vmid).node, pve.pve.ct(vmid).status))
    assert node in ("pve1", "pve3") and status == "running"
    shown = api.get("/status", service_id=SERVICE).get_json()
    assert shown["node"] == node

"""Reconcile against the fake cluster: a site changed behind the project's back (in Proxmox VE, NPM and DNS) is
compared with the record by the real site_reconcile.yml, through `proxmoxwp reconcile` and a real worker."""

from __future__ import annotations

import subprocess

import pytest
import requests
from conftest import BIN, ROOT, wait_job, wait_until
from published_dns import patch, rrset
from sites import cluster, hand_run, site_inventory

pytestmark = pytest.mark.cluster

SERVICE = 5203
SITE = {"service_id": SERVICE, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


@pytest.fixture
def env(env, tmp_path, pve_api, edge_peers):
    """The API's environment with the real playbooks and an inventory that points at the fake cluster, a DNS zone
    of the test's own and the NPM double."""
    inventory = site_inventory(tmp_path / "site", pve_api, edge_peers.settings)
    return {**env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}


def done(api, answer) -> dict:
    assert answer.status_code == 202, answer.get_json()
    job = wait_job(api, answer.get_json()["job_id"], timeout=180)
    assert job["state"] == "succeeded", job
    return job


def reconcile(process_env) -> str:
    """`proxmoxwp reconcile --service-id SERVICE --wait`, as an operator runs it; its output."""
    command = [str(BIN / "proxmoxwp"), "reconcile", "--service-id", str(SERVICE), "--wait"]
    result = subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def status(api) -> dict:
    return api.get("/status", service_id=SERVICE).get_json()


def test_reconcile_repairs_what_is_safe_and_records_the_rest(api, worker, pve, pve_api, edge_peers, process_env, env):
    done(api, api.post("/create-site", SITE))
    bak = api.post("/action/mkbak", {"service_id": SERVICE})
    last = done(api, bak)
    bak = bak.get_json()["bak"]
    site = status(api)
    vmid, subdomain = site["vmid"], site["subdomain"]
    assert cluster(pve)[vmid]["ha"] == "started"

    # Behind the project's back: the backup's snapshot is deleted in Proxmox VE, the container stops on its own
    # before the HA manager's next pass, the proxy host is disabled in NPM and the DNS record is deleted.
    auth = {"Authorization": f"PVEAPIToken={pve_api['token_id']}={pve_api['token_secret']}"}
    url = f"{pve.url}/api2/json/nodes/{site['node']}/lxc/{vmid}/snapshot/{bak}"
    assert requests.delete(url, headers=auth, verify=pve.cafile, timeout=10).ok
    wait_until(lambda: bak not in cluster(pve)[vmid]["snapshots"], what="the snapshot to be deleted")
    pve.call(setattr, pve.pve, "ha_manager_enabled", False)
    pve.call(pve.pve.stop_behind_back, vmid)
    host = edge_peers.hosts()[subdomain]
    token = {"Authorization": f"Bearer {edge_peers.npm.token()}"}
    assert requests.post(f"{edge_peers.npm.url}/nginx/proxy-hosts/{host['id']}/disable", headers=token, timeout=10).ok
    patch(edge_peers.powerdns, edge_peers.zone, [rrset(subdomain, "A", [])])
    assert edge_peers.addresses(subdomain) == []
    starts_before = len(pve.call(pve.pve.requests_sent, "POST", "/status/start"))

    out = reconcile(process_env)
    assert f"repaired: Backup {bak} no longer exists on the cluster" in out, out
    assert f"repaired: The proxy host of {subdomain} was disabled" in out, out
    assert f"repaired: The DNS record of {subdomain} was missing" in out, out
    assert f"drift: Container {vmid} is stopped while the site is active" in out, out

    assert api.get("/action/getbak", service_id=SERVICE).get_json()["backups"] == []
    assert edge_peers.hosts()[subdomain]["enabled"] is True
    assert edge_peers.addresses(subdomain) == [SITE["public_ip"]]
    assert cluster(pve)[vmid]["status"] == "stopped", "reconcile leaves the start to the HA manager"
    assert len(pve.call(pve.pve.requests_sent, "POST", "/status/start")) == starts_before
    site = status(api)
    assert (site["state"], site["last_job"]["id"]) == ("active", last["id"]), "the customer's last job stays shown"
    (drift,) = site["drift"]  # and nothing else: the repaired parts and the HA resource are as recorded
    assert drift["key"] == "container_power" and drift["expected"] == "running"
    assert drift["found"] == "stopped (HA requested state started: the HA manager starts it)"

    # An operator's run knows no record: it checks what needs none and finds the container and the edge in place.
    run = hand_run(env["PROXMOXWP_INVENTORY"], "site_reconcile.yml", "-e", f"service_id={SERVICE}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 drift item(s)" in run.stdout, run.stdout

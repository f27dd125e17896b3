"""Certificates of sites made through the API by a real worker running the real playbooks, against the fake Proxmox
VE, the test's PowerDNS zone and an NPM double whose certbot takes a second and runs one at a time, as NPM
2.15.1's does: sites created at once all get theirs, and a certificate that fails says why in /status until a retry
issues it once the cause is gone."""

from __future__ import annotations

import pytest
from conftest import ROOT, wait_job
from edge import proxy_answering
from sites import site_inventory

pytestmark = pytest.mark.db

SERVICES = [6301, 6302, 6303, 6304, 6305]
# On loopback: the NPM module probes the public address of a name whose certificate failed.
PUBLIC_IP = "127.0.0.2"


@pytest.fixture
def env(env, tmp_path, pve_api, edge_peers):
    """The API's environment with the real playbooks and an inventory that points at the fake cluster, a DNS zone of
    the test's own and the NPM double."""
    inventory = site_inventory(tmp_path / "site", pve_api, edge_peers.settings)
    return {**env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}


def certificate(api, service_id: int) -> dict:
    (subdomain,) = api.get("/status", service_id=service_id).get_json()["certificates"]
    return subdomain


def test_sites_created_at_once_all_get_certificates_and_a_failed_one_says_why_until_retried(
    api, start_worker, pve, edge_peers
):
    npm = edge_peers.npm.state
    npm.issuance_seconds = 1.0
    # Let's Encrypt cannot reach the last site: port 80 of its public address does not answer (nothing listens on
    # the inventory's probe port yet).
    unreachable = SERVICES[-1]
    npm.fail_certificates(edge_peers.subdomain(unreachable))
    start_worker(concurrency=len(SERVICES))

    answers = [
        api.post(
            "/create-site", {"service_id": sid, "email": "owner@example.com", "plan": "basic", "public_ip": PUBLIC_IP}
        )
        for sid in SERVICES
    ]
    jobs = [wait_job(api, answer.get_json()["job_id"], timeout=300) for answer in answers]
    failures = [(job["service_id"], job["failed_task"], job["message"]) for job in jobs if job["state"] != "succeeded"]
    assert failures == []
    # The creations ran side by side, and NPM never saw two certificate requests at once: the workers' lock.
    assert max(job["started_at"] for job in jobs) < min(job["finished_at"] for job in jobs)
    assert npm.certbot_refusals == 0
    assert sorted(i.domain_names[0] for i in npm.issuances if i.succeeded) == sorted(
        edge_peers.subdomain(sid) for sid in SERVICES[:-1]
    )
    for sid in SERVICES[:-1]:
        assert certificate(api, sid)["state"] == "active"
        assert edge_peers.hosts()[edge_peers.subdomain(sid)]["ssl_forced"]

    failed = certificate(api, unreachable)
    assert failed["state"] == "error" and failed["next_retry_at"], failed
    assert f"port {edge_peers.http_port} of {PUBLIC_IP} does not answer" in failed["message"], failed
    assert api.get("/status", service_id=unreachable).get_json()["state"] == "active"  # served over HTTP meanwhile

    # The operator opens the port (the proxy answers there now) and Let's Encrypt can validate: the retry issues it.
    npm.clear_faults()
    with proxy_answering(PUBLIC_IP, edge_peers.http_port):
        retry = api.post("/action/ssl-retry", {"service_id": unreachable})
        assert retry.status_code == 202, retry.get_json()
        assert wait_job(api, retry.get_json()["job_id"], timeout=180)["state"] == "succeeded"
    active = certificate(api, unreachable)
    assert active["state"] == "active" and active["message"] is None and active["next_retry_at"] is None
    assert edge_peers.hosts()[edge_peers.subdomain(unreachable)]["ssl_forced"]

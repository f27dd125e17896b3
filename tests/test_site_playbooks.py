"""The lifecycle playbooks against the project's fake Proxmox VE (DRBD storage, stateful HA), run as the worker
runs them. Every playbook is run twice: the second run must change nothing."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest
from sites import cluster, hand_run, run_playbook, site_inventory

from lab.ports import free_port

pytestmark = pytest.mark.cluster

SERVICE = 4101
TODAY = datetime.now(UTC).strftime("%d%m%Y")
BAK = [f"BAK{TODAY}-{n}" for n in (1, 2, 3)]
PUBLIC_IP = "203.0.113.10"


@pytest.fixture
def inventory(tmp_path, pve_api, edge_peers):
    return site_inventory(tmp_path, pve_api, edge_peers.settings)


@pytest.fixture
def site(inventory, tmp_path):
    """Run a lifecycle playbook for the test's service; the run must succeed."""

    def play(playbook: str, expect_ok: bool = True, **variables):
        if playbook == "site_create.yml":
            variables.setdefault("public_ip", PUBLIC_IP)
        run = run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **variables)
        if expect_ok:
            assert run.ok, f"{playbook} failed: {run.failed_task}: {run.message}"
        return run

    return play


def twice(site, playbook: str, **variables):
    first = site(playbook, **variables)
    second = site(playbook, **variables)
    assert second.changed == 0, f"the second run of {playbook} {variables} changed {second.changed} task(s)"
    return first


def live(pve) -> tuple[int, dict]:
    sites = {vmid: ct for vmid, ct in cluster(pve).items() if "archive" not in ct["tags"]}
    assert len(sites) == 1, sites
    return next(iter(sites.items()))


def test_a_site_lives_and_dies_and_no_playbook_changes_anything_twice(site, pve, edge_peers):
    subdomain = edge_peers.subdomain(SERVICE)
    created = twice(site, "site_create.yml", plan="basic")
    vmid, ct = live(pve)
    assert created.changed > 0
    assert created.stats["vmid"] == vmid
    assert created.stats["ip"] == "10.77.0.100", "the first address of the lab inventory's pool"
    assert f"ip={created.stats['ip']}/16" in ct["config"]["net0"]
    assert created.stats["backups"] == []
    assert ct["status"] == "running" and ct["ha"] == "started"
    assert ct["tags"] == ["proxmoxwp", f"svc-{SERVICE}"]
    assert ct["config"]["hostname"] == subdomain
    assert edge_peers.addresses(subdomain) == [PUBLIC_IP]
    host = edge_peers.hosts()[subdomain]
    assert host["forward_host"] == created.stats["ip"] and host["enabled"] and host["ssl_forced"]
    assert host["certificate_id"] > 0 and created.stats["ssl"] == "active"
    assert ct["config"]["cores"] == 1 and ct["config"]["memory"] == 1024 and ct["config"]["swap"] == 512
    assert ct["config"]["rootfs"].startswith("drbd1:") and "size=8G" in ct["config"]["rootfs"]
    assert ct["config"]["unprivileged"] == 1 and "nesting=1" in ct["config"]["features"]
    assert f"ip={created.stats['ip']}/16" in ct["config"]["net0"]
    assert ct["snapshots"] == ["initial"]

    made = twice(site, "backup_create.yml", bak=BAK[0])
    assert made.stats["backups"] == [BAK[0]]
    assert live(pve)[1]["snapshots"] == ["initial", BAK[0]]

    twice(site, "site_upgrade.yml", plan="premium")
    ct = live(pve)[1]
    assert ct["config"]["cores"] == 2 and ct["config"]["memory"] == 2048 and ct["config"]["swap"] == 1024
    assert "size=16G" in ct["config"]["rootfs"]

    twice(site, "site_power.yml", power_action="stop")
    assert live(pve)[1]["status"] == "stopped" and live(pve)[1]["ha"] == "stopped"
    twice(site, "site_power.yml", power_action="start")
    assert live(pve)[1]["status"] == "running" and live(pve)[1]["ha"] == "started"

    twice(site, "site_suspend.yml")
    ct = live(pve)[1]
    assert ct["status"] == "stopped" and ct["ha"] == "stopped"
    assert "suspended" in ct["tags"] and ct["config"]["onboot"] == 0
    refused = site("site_power.yml", expect_ok=False, power_action="start")
    assert not refused.ok and "suspended" in refused.message
    twice(site, "site_unsuspend.yml")
    ct = live(pve)[1]
    assert ct["status"] == "running" and ct["ha"] == "started"
    assert "suspended" not in ct["tags"] and ct["config"]["onboot"] == 1

    deleted = twice(site, "backup_delete.yml", bak=BAK[0])
    assert deleted.stats["backups"] == []
    assert live(pve)[1]["snapshots"] == ["initial"]

    twice(site, "site_delete.yml")
    assert cluster(pve) == {}
    assert edge_peers.addresses(subdomain) == [] and edge_peers.hosts() == {} and edge_peers.certificates() == []


def test_a_plan_with_a_smaller_disk_is_refused_and_nothing_changes(site, pve):
    site("site_create.yml", plan="premium")
    before = live(pve)
    refused = site("site_upgrade.yml", expect_ok=False, plan="basic")
    assert not refused.ok
    assert "smaller than the container's disk" in refused.message
    assert live(pve) == before


def test_actions_are_done_once_per_job(site, pve):
    """Restart, reset and rollback are actions; the job id recorded on the container makes a retry a no-op. A
    rollback to the latest backup is done in place, even on DRBD."""
    site("site_create.yml", plan="basic")
    vmid, _ = live(pve)
    pid = pve.call(lambda: pve.pve.cts[0].pid)
    twice(site, "site_power.yml", power_action="restart", proxmoxwp_job_id=71)
    assert live(pve)[1]["status"] == "running"
    assert pve.call(lambda: pve.pve.cts[0].pid) != pid
    assert "job-71" in live(pve)[1]["tags"]
    pid = pve.call(lambda: pve.pve.cts[0].pid)
    site("site_power.yml", power_action="restart", proxmoxwp_job_id=72)
    assert pve.call(lambda: pve.pve.cts[0].pid) != pid, "another job restarts again"

    site("backup_create.yml", bak=BAK[0])
    site("backup_create.yml", bak=BAK[1])
    twice(site, "backup_rollback.yml", bak=BAK[1], proxmoxwp_job_id=73)
    assert live(pve)[0] == vmid, "the latest backup is rolled back to in place"
    assert live(pve)[1]["config"]["parent"] == BAK[1] and live(pve)[1]["status"] == "running"
    twice(site, "backup_rollback.yml", bak=BAK[0], proxmoxwp_job_id=74)
    twice(site, "site_power.yml", power_action="reset", proxmoxwp_job_id=75)
    assert live(pve)[1]["status"] == "running"
    assert sorted(n for ct in cluster(pve).values() for n in ct["snapshots"] if n != "initial") == BAK[:2]


def test_rollback_to_an_older_backup_on_drbd_keeps_every_backup(site, pve, edge_peers):
    subdomain, domain = edge_peers.subdomain(SERVICE), "www.customer-site.test"
    site("site_create.yml", plan="basic")
    assert site("domain_add.yml", domain=domain).stats["domain_state"] == "active"
    site("proxy_toggle.yml", proxy_enabled=False, subdomain=subdomain, domains=[domain])
    first_vmid, _ = live(pve)
    for name in BAK:
        site("backup_create.yml", bak=name)

    rolled = site("backup_rollback.yml", bak=BAK[0], domains=[domain])
    vmid, ct = live(pve)
    assert vmid != first_vmid, "DRBD cannot roll back to an older snapshot: the site must be a clone"
    hosts = edge_peers.hosts()
    assert {name: (h["forward_host"], h["enabled"]) for name, h in hosts.items()} == {
        subdomain: (rolled.stats["ip"], False),
        domain: (rolled.stats["ip"], False),
    }, "the proxy hosts follow the site to its new container and stay switched off"
    # The archive keeps its address while it exists: the new container has the pool's next one.
    assert rolled.stats["vmid"] == vmid and rolled.stats["ip"] == "10.77.0.101"
    assert f"ip={rolled.stats['ip']}/16" in ct["config"]["net0"]
    assert "ip=10.77.0.100/16" in cluster(pve)[first_vmid]["config"]["net0"]
    assert ct["status"] == "running" and ct["ha"] == "started" and ct["snapshots"] == []
    firewall = pve.call(pve.pve.guest_firewall, vmid)  # the new container is isolated as the old one was
    assert "firewall=1" in ct["config"]["net0"] and firewall["options"]["enable"] == 1
    assert firewall["ipset"] == {"ipfilter-net0": [{"cidr": rolled.stats["ip"]}]} and len(firewall["rules"]) == 7
    archive = cluster(pve)[first_vmid]
    assert "archive" in archive["tags"] and archive["status"] == "stopped" and archive["ha"] is None
    assert archive["snapshots"] == ["initial", *BAK]
    assert rolled.stats["backups"] == sorted(BAK)

    reset = site("site_power.yml", power_action="reset", domains=[domain])
    vmid_after_reset, ct = live(pve)
    assert vmid_after_reset not in (vmid, first_vmid)
    assert {h["forward_host"] for h in edge_peers.hosts().values()} == {reset.stats["ip"]}
    assert reset.stats["backups"] == sorted(BAK)
    assert vmid not in cluster(pve), "a replaced container without snapshots is destroyed, not archived"

    for name in BAK:
        site("backup_delete.yml", bak=name)
    assert first_vmid in cluster(pve), "the first container keeps `initial` while the site lives"
    site("site_delete.yml", domains=[domain])
    assert cluster(pve) == {}
    assert edge_peers.hosts() == {} and edge_peers.certificates() == []


def test_a_storage_that_rolls_back_to_any_snapshot_is_rolled_back_in_place(tmp_path, pve, pve_api, edge_peers):
    inventory = site_inventory(tmp_path, pve_api, edge_peers.settings, storage="local-lvm")
    run = lambda playbook, **v: run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **v)  # noqa: E731
    assert run("site_create.yml", plan="basic", public_ip=PUBLIC_IP).ok
    vmid, _ = live(pve)
    for name in BAK[:2]:
        assert run("backup_create.yml", bak=name).ok
    assert run("site_power.yml", power_action="reset").ok
    assert live(pve)[0] == vmid
    assert live(pve)[1]["config"]["parent"] == "initial"
    assert live(pve)[1]["snapshots"] == ["initial", *BAK[:2]]


def test_the_ha_manager_restarts_a_running_site_but_not_a_suspended_one(site, pve):
    site("site_create.yml", plan="basic")
    vmid, _ = live(pve)
    pve.call(pve.pve.stop_behind_back, vmid)
    pve.call(pve.pve.ha_converge)
    assert live(pve)[1]["status"] == "running", "HA starts a site that was stopped behind its back"
    site("site_suspend.yml")
    pve.call(pve.pve.ha_converge)
    assert live(pve)[1]["status"] == "stopped", "a suspended site stays stopped"


def test_operators_run_the_playbooks_by_hand_without_the_api(inventory, pve, tmp_path, edge_peers):
    def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
        return hand_run(inventory, name, "-e", f"service_id={SERVICE}", *args)

    subdomain = edge_peers.subdomain(SERVICE)
    checked = playbook("site_create.yml", "-e", "plan=basic", "-e", f"public_ip={PUBLIC_IP}", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert cluster(pve) == {}, "check mode creates nothing"
    assert edge_peers.addresses(subdomain) == [] and edge_peers.hosts() == {}
    created = playbook("site_create.yml", "-e", "plan=basic", "-e", f"public_ip={PUBLIC_IP}")
    assert created.returncode == 0, created.stdout + created.stderr
    assert live(pve)[1]["status"] == "running"
    assert edge_peers.addresses(subdomain) == [PUBLIC_IP] and subdomain in edge_peers.hosts()
    output = created.stdout + created.stderr
    assert pve_token_secret_absent(output, pve)
    assert edge_peers.npm.secret not in output and edge_peers.powerdns.api_key not in output
    deleted = playbook("site_delete.yml")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert cluster(pve) == {}
    assert edge_peers.addresses(subdomain) == [] and edge_peers.hosts() == {}


def pve_token_secret_absent(text: str, pve) -> bool:
    return pve.pve.token_secret not in text


def test_a_container_that_never_answers_ssh_fails_the_create_clearly_and_is_removed(tmp_path, pve, pve_api, edge_peers):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()  # a loopback port nothing listens on: the fake's container has no sshd
    inventory = site_inventory(
        tmp_path,
        pve_api,
        edge_peers.settings,
        proxmoxwp_ct_network="127.0.0.0/8",
        proxmoxwp_ct_gateway="127.0.0.1",
        proxmoxwp_ct_addresses={"ranges": ["127.0.0.100-127.0.0.199"], "exclude": []},
        proxmoxwp_ct_ssh={"user": "root", "port": port, "private_key_file": str(key), "timeout": 3},
        proxmoxwp_wordpress_install=True,
    )

    run = run_playbook(
        inventory, tmp_path / "runs", "site_create.yml",
        service_id=SERVICE, plan="basic", email="owner@example.com", admin_password="pw-0123456789",
        public_ip=PUBLIC_IP,
    )  # fmt: skip

    assert not run.ok
    assert "did not answer SSH within 3 seconds" in run.message
    assert cluster(pve) == {}
    assert pve.call(pve.pve.ha_resources_left) == []

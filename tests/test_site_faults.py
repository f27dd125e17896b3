"""Faults injected at the Proxmox steps of each operation on an existing site, run as the worker runs the
playbooks: the run fails with PVE's message, the site is left whole (nothing half-made, nothing lost) and
running the same playbook again after the fault clears succeeds. Provisioning's own faults go through the API
in test_site_lifecycle.py, which also shows the kinds of fault that every operation meets the same way (a task
status that does not answer, a node that is offline, a snapshot task that fails): tests/README.md."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sites import cluster, run_playbook, site_inventory

pytestmark = pytest.mark.cluster

SERVICE = 6303
TODAY = datetime.now(UTC).strftime("%d%m%Y")
BAK1, BAK2 = f"BAK{TODAY}-1", f"BAK{TODAY}-2"


def sites(pve) -> dict[int, dict]:
    return {vmid: ct for vmid, ct in cluster(pve).items() if "archive" not in ct["tags"]}


def backups(pve) -> list[str]:
    return sorted(n for ct in cluster(pve).values() for n in ct["snapshots"] if n.startswith("BAK"))


def whole(pve) -> None:
    """One live container, running under HA, whatever else is there."""
    live = sites(pve)
    assert len(live) == 1, cluster(pve)
    (ct,) = live.values()
    assert ct["status"] == "running" and ct["ha"] == "started", ct


# operation: (playbook, its variables, backups to take first, how to break it, text that must reach the error,
# what must hold after the failure besides the site being whole)
CASES = {
    "delbak, HTTP 500": (
        "backup_delete.yml",
        {"bak": BAK1},
        [BAK1],
        # for good: a 500 that clears within the modules' retries is ridden out
        lambda p: p.fail_http("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}", 500, "cfs-lock timeout", None),
        "cfs-lock timeout",
        lambda pve: backups(pve) == [BAK1],
    ),
    "upgrade, resize task error": (
        "site_upgrade.yml",
        {"plan": "premium"},
        [],
        lambda p: p.fail_task("PUT", "/resize", "lvextend failed: insufficient free space"),
        "insufficient free space",
        lambda pve: True,
    ),
    "rollback by clone, clone task error": (
        "backup_rollback.yml",
        {"bak": BAK1},
        [BAK1, BAK2],
        lambda p: p.fail_task("POST", "/clone", "clone failed: storage drbd1 is full"),
        "storage drbd1 is full",
        lambda pve: len(cluster(pve)) == 1 and backups(pve) == [BAK1, BAK2],
    ),
    "rollback by clone, HA refuses the new container": (
        "backup_rollback.yml",
        {"bak": BAK1},
        [BAK1, BAK2],
        lambda p: p.fail_http("POST", "/cluster/ha/resources", 500, "cfs-lock 'domain-ha' error: got lock timeout"),
        "got lock timeout",
        lambda pve: len(cluster(pve)) == 1 and backups(pve) == [BAK1, BAK2],
    ),
    "delete, destroy task error": (
        "site_delete.yml",
        {},
        [BAK1],
        lambda p: p.fail_task("DELETE", "/nodes/{node}/lxc/{vmid}", "can't remove CT - storage is busy"),
        "storage is busy",
        None,  # a half-deleted site is expected: the retry must finish it
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fault_fails_the_run_with_pves_message_and_a_retry_succeeds(tmp_path, pve, pve_api, edge_peers, case):
    playbook, variables, first, inject, expected, after = CASES[case]
    inventory = site_inventory(tmp_path, pve_api, edge_peers.settings)

    def play(name: str, **more):
        return run_playbook(inventory, tmp_path / "runs", name, service_id=SERVICE, **more)

    assert play("site_create.yml", plan="basic", public_ip="203.0.113.10").ok
    for name in first:
        assert play("backup_create.yml", bak=name).ok
    before = sites(pve)

    pve.call(inject, pve.pve)
    failed = play(playbook, **variables)
    assert not failed.ok
    assert expected in (failed.message or ""), failed.message
    pve.call(pve.pve.clear_faults)
    if after is not None:
        whole(pve)
        assert sites(pve).keys() == before.keys(), "the site is still the container it was"
        assert after(pve), cluster(pve)

    retried = play(playbook, **variables)
    assert retried.ok, f"{retried.failed_task}: {retried.message}"
    if playbook == "site_delete.yml":
        assert cluster(pve) == {} and pve.call(pve.pve.ha_resources_left) == []
    else:
        whole(pve)

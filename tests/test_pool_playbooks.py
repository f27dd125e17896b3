"""The warm pool's playbooks against the project's fake Proxmox VE, run as the worker runs them (docs/pool.md): members
made and checked, a site taking one over and ending up as a site made without it, a member that cannot be taken
over leaving the site a container of its own, and draining that never touches a site."""

from __future__ import annotations

import pytest
import yaml
from sites import cluster, run_playbook, site_inventory

from lab.ports import free_port

pytestmark = pytest.mark.cluster

SERVICE = 4301
PUBLIC_IP = "203.0.113.10"
MEMBER_TAGS = ["img-", "pool", "proxmoxwp"]


@pytest.fixture
def inventory(tmp_path, pve_api, edge_peers):
    return site_inventory(tmp_path, pve_api, edge_peers.settings)


@pytest.fixture
def play(inventory, tmp_path):
    def run(playbook: str, expect_ok: bool = True, **variables):
        result = run_playbook(inventory, tmp_path / "runs", playbook, **variables)
        if expect_ok:
            assert result.ok, f"{playbook} failed: {result.failed_task}: {result.message}"
        return result

    return run


def members(pve) -> dict[int, dict]:
    return {vmid: ct for vmid, ct in cluster(pve).items() if "pool" in ct["tags"]}


def shape(tags: list[str]) -> list[str]:
    return sorted("img-" if tag.startswith("img-") else tag for tag in tags)


def test_a_node_fills_to_its_count_and_a_site_takes_a_member_over_as_if_made_for_it(play, pve, edge_peers):
    made = play("pool_fill.yml", pool_node="pve1", pool_count=2)
    pool = members(pve)
    assert sorted(m["vmid"] for m in made.stats["pool_made"]) == sorted(pool), made.stats
    assert len(pool) == 2 and made.stats["pool_failed"] == {}
    for ct in pool.values():
        assert shape(ct["tags"]) == MEMBER_TAGS
        assert ct["status"] == "running" and ct["ha"] is None, "a member waits started, outside HA"
        assert ct["config"]["hostname"] == "proxmoxwp-pool"
        assert "size=8G" in ct["config"]["rootfs"] and ct["config"]["memory"] == 1024, "the pool plan's size"
    addresses = sorted(m["ip"] for m in made.stats["pool_made"])
    assert addresses == ["10.77.0.100", "10.77.0.101"], "members take the pool's lowest free addresses"

    again = play("pool_fill.yml", pool_node="pve1", pool_count=2)
    assert again.changed == 0 and again.stats["pool_made"] == [] and members(pve) == pool

    member = min(pool)
    ip = next(m["ip"] for m in made.stats["pool_made"] if m["vmid"] == member)
    site = play("site_create.yml", service_id=SERVICE, plan="premium", public_ip=PUBLIC_IP, pool_vmid=member)
    assert site.stats["vmid"] == member and site.stats["from_pool"] is True
    assert site.stats["ip"] == ip, "the site keeps the member's address"
    ct = cluster(pve)[member]
    subdomain = edge_peers.subdomain(SERVICE)
    # what test_site_playbooks asserts of a site made without the pool
    assert ct["tags"] == ["proxmoxwp", f"svc-{SERVICE}"]
    assert ct["config"]["hostname"] == subdomain
    assert ct["status"] == "running" and ct["ha"] == "started"
    assert ct["config"]["cores"] == 2 and ct["config"]["memory"] == 2048 and ct["config"]["swap"] == 1024
    assert "size=16G" in ct["config"]["rootfs"], "the member's disk grew to the plan's"
    assert ct["snapshots"] == ["initial"]
    assert edge_peers.addresses(subdomain) == [PUBLIC_IP]
    assert edge_peers.hosts()[subdomain]["forward_host"] == ip
    assert sorted(members(pve)) == [max(pool)], "the other member still waits"

    retried = play("site_create.yml", service_id=SERVICE, plan="premium", public_ip=PUBLIC_IP, pool_vmid=member)
    assert retried.changed == 0 and retried.stats["vmid"] == member, "a retry finds the site's container"

    checked = play("pool_check.yml")
    assert [(m["vmid"], m["ready"], m["reason"]) for m in checked.stats["pool_members"]] == [(max(pool), True, "")]


def test_a_member_taken_over_is_removed_with_the_rest_when_the_creation_fails(play, pve, edge_peers):
    made = play("pool_fill.yml", pool_node="pve1", pool_count=1)
    member = made.stats["pool_made"][0]["vmid"]
    # HA is given to a member while WordPress is set up in it: its failure still undoes the whole creation
    refusal = "cfs-lock 'domain-ha' error: got lock timeout"
    pve.call(lambda: pve.pve.fail_http("POST", "/cluster/ha/resources", 500, refusal, None))
    failed = play("site_create.yml", False, service_id=SERVICE, plan="basic", public_ip=PUBLIC_IP, pool_vmid=member)
    assert not failed.ok
    assert "The pool's container could not be made the site's" in failed.message and refusal in failed.message
    assert member not in cluster(pve), "the member it took over is removed, as a container made for it would be"
    subdomain = edge_peers.subdomain(SERVICE)
    assert edge_peers.addresses(subdomain) == [] and subdomain not in edge_peers.hosts()

    pve.call(pve.pve.clear_faults)
    retried = play("site_create.yml", service_id=SERVICE, plan="basic", public_ip=PUBLIC_IP, pool_vmid=member)
    assert retried.stats["from_pool"] is False, "the member is gone: the retry makes the site's container"
    assert cluster(pve)[retried.stats["vmid"]]["ha"] == "started"


def test_a_member_that_cannot_be_taken_over_is_left_and_the_site_gets_its_own(play, pve):
    made = play("pool_fill.yml", pool_node="pve1", pool_count=1)
    member = made.stats["pool_made"][0]["vmid"]
    pve.call(lambda: setattr(pve.pve.ct(member), "status", "stopped"))

    site = play("site_create.yml", service_id=SERVICE, plan="basic", public_ip=PUBLIC_IP, pool_vmid=member)
    assert site.stats["vmid"] != member and site.stats["from_pool"] is False
    assert shape(cluster(pve)[member]["tags"]) == MEMBER_TAGS, "the stopped member is left as it was"

    checked = play("pool_check.yml")
    assert [(m["vmid"], m["ready"], m["reason"]) for m in checked.stats["pool_members"]] == [
        (member, False, "it is stopped")
    ]

    gone = play("site_create.yml", service_id=SERVICE + 1, plan="basic", public_ip=PUBLIC_IP, pool_vmid=999)
    assert gone.stats["from_pool"] is False and gone.stats["vmid"] not in (member, 999)


def test_members_of_an_older_image_are_not_ready_and_draining_never_touches_a_site(play, pve, inventory):
    made = play("pool_fill.yml", pool_node="pve1", pool_count=2)
    first, second = sorted(m["vmid"] for m in made.stats["pool_made"])
    play("site_create.yml", service_id=SERVICE, plan="basic", public_ip=PUBLIC_IP, pool_vmid=first)
    older = "proxmoxwp;pool;img-000000000000"
    pve.call(lambda: pve.pve.ct(second).config.update(tags=older))

    checked = play("pool_check.yml")
    assert [(m["vmid"], m["ready"], m["reason"]) for m in checked.stats["pool_members"]] == [
        (second, False, "it was made from an older image")
    ]
    taken = play("site_create.yml", service_id=SERVICE + 1, plan="basic", public_ip=PUBLIC_IP, pool_vmid=second)
    assert taken.stats["from_pool"] is False, "a member of an older image is never given to a site"

    drained = play("pool_drain.yml", pool_vmids=[first, second])
    assert drained.stats["pool_removed"] == [second], "the site's container is not a member"
    assert members(pve) == {}
    assert first in cluster(pve) and taken.stats["vmid"] in cluster(pve)

    play("pool_fill.yml", pool_node="pve1", pool_count=1)
    everything = play("pool_drain.yml")
    assert len(everything.stats["pool_removed"]) == 1 and members(pve) == {}
    assert play("pool_drain.yml").changed == 0


def test_the_check_looks_inside_each_running_member_and_says_which_it_could_not(tmp_path, pve_api, edge_peers, pve):
    """With WordPress on, the check logs in to every running member. Here the members' addresses are on loopback and
    their SSH port is one nothing listens on: each is not ready, and the check says why instead of failing."""
    inventory = site_inventory(
        tmp_path, pve_api, edge_peers.settings,
        proxmoxwp_ct_network="127.0.0.0/8", proxmoxwp_ct_gateway="127.0.0.1",
        proxmoxwp_ct_addresses={"ranges": ["127.0.0.100-127.0.0.101"], "exclude": []},
    )  # fmt: skip
    made = run_playbook(inventory, tmp_path / "runs", "pool_fill.yml", pool_node="pve1", pool_count=2)
    assert made.ok, made.message
    with_wordpress = {
        "proxmoxwp_wordpress_install": True,
        "proxmoxwp_ct_ssh": {"user": "root", "port": free_port(), "private_key_file": "", "timeout": 5},
    }
    (inventory / "group_vars" / "all" / "zz_wordpress.yml").write_text(yaml.safe_dump(with_wordpress))
    checked = run_playbook(inventory, tmp_path / "runs", "pool_check.yml")
    assert checked.ok, f"{checked.failed_task}: {checked.message}"
    reasons = {m["vmid"]: (m["ready"], m["reason"]) for m in checked.stats["pool_members"]}
    assert sorted(reasons) == sorted(members(pve)) and len(reasons) == 2
    assert all(not ready and reason.startswith("it does not answer over SSH: ") for ready, reason in reasons.values())

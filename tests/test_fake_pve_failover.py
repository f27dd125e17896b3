"""A node of the fake PVE fails, as the project's token sees it over HTTPS: the node offline, calls to it answered
595 as pveproxy answers for an unreachable node, its guests' status unknown, and its HA guests fenced, then
recovered and started on another node after the HA delay (lab/pve/failover.py)."""

from __future__ import annotations

import time

import pytest
from conftest import wait_until
from test_fake_pve import Api, create_ct

from lab.pve.capacity import GIB

pytestmark = pytest.mark.cluster

DELAY = 1.0


@pytest.fixture
def cluster(pve):
    def add(model):
        model.add_node("pve2", maxmem=32 * GIB)
        model.add_node("pve3", maxmem=16 * GIB)

    pve.call(add, pve.pve)
    pve.serve_node("pve2")
    return pve


@pytest.fixture
def api(cluster) -> Api:
    return Api(cluster)


def guest(api: Api, vmid: int) -> dict:
    return next(item for item in api.ok("GET", "/cluster/resources", type="vm") if item["vmid"] == vmid)


def service(api: Api, sid: str) -> dict:
    return next(item for item in api.ok("GET", "/cluster/ha/status/current") if item["id"] == f"service:{sid}")


def node_states(api: Api) -> dict:
    return api.ok("GET", "/cluster/ha/status/manager_status")["manager_status"]["node_status"]


def test_a_failed_nodes_ha_guest_is_fenced_then_started_on_another_node(api, cluster):
    create_ct(api, 200, node="pve2", start=1, **{"ha-managed": 1})
    create_ct(api, 201, node="pve2", start=1)  # not under HA: nothing moves it
    create_ct(api, 202, node="pve1", **{"ha-managed": 1})  # pve1 runs an HA service already
    wait_until(lambda: guest(api, 200)["status"] == "running", what="CT 200 running under HA")

    failed_at = time.monotonic()
    cluster.fail_node("pve2", recovery_delay=DELAY)

    nodes = {item["node"]: item for item in api.ok("GET", "/cluster/resources", type="node")}
    assert nodes["pve2"]["status"] == "offline"
    assert guest(api, 200)["status"] == "unknown" and guest(api, 200)["hastate"] == "fence"
    assert service(api, "ct:200")["crm_state"] == "fence" and service(api, "ct:200")["node"] == "pve2"
    assert node_states(api)["pve2"] == "fence"
    lrm = next(item for item in api.ok("GET", "/cluster/ha/status/current") if item["id"] == "lrm:pve2")
    assert "old timestamp - dead?" in lrm["status"]
    # pveproxy on a live node cannot reach the failed one
    answer = api.request("GET", "/nodes/pve2/lxc/200/status/current")
    assert (answer.status_code, answer.reason) == (595, "No route to host")

    moved = wait_until(
        lambda: (g := guest(api, 200))["node"] != "pve2" and g["status"] == "running" and g, what="CT 200 recovered"
    )
    assert time.monotonic() - failed_at >= DELAY
    assert moved["node"] == "pve3"  # the live node with the fewest HA services
    assert moved["hastate"] == "started"
    assert api.ok("GET", "/nodes/pve3/lxc/200/status/current")["status"] == "running"
    assert service(api, "ct:200")["node"] == "pve3"
    assert node_states(api)["pve2"] == "unknown"
    left = guest(api, 201)
    assert (left["node"], left["status"]) == ("pve2", "unknown")

    cluster.restore_node("pve2")
    assert node_states(api)["pve2"] == "online"
    assert guest(api, 201)["status"] == "stopped"  # it died with the node
    assert guest(api, 200)["node"] == "pve3"  # recovery is not undone


def test_with_no_node_to_go_to_the_service_waits_in_recovery(api, cluster):
    create_ct(api, 200, node="pve2", start=1, **{"ha-managed": 1})
    wait_until(lambda: guest(api, 200)["status"] == "running", what="CT 200 running under HA")
    cluster.call(cluster.pve.node_maintenance, "pve1")
    cluster.call(cluster.pve.node_maintenance, "pve3")
    cluster.fail_node("pve2", recovery_delay=0.2)

    wait_until(lambda: service(api, "ct:200")["crm_state"] == "recovery", what="ct:200 in recovery")
    assert guest(api, 200)["node"] == "pve2"

    cluster.call(cluster.pve.node_maintenance, "pve1", False)
    moved = wait_until(lambda: (g := guest(api, 200))["status"] == "running" and g, what="CT 200 recovered")
    assert moved["node"] == "pve1"

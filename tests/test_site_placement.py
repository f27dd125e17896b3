"""Placement of new sites through the API, with a real worker running the real playbooks against a fake cluster of
three nodes of different free memory (docs/placement.md): a site lands on the node with the most room, never on
one that is offline or in HA maintenance, and with no room anywhere create-site answers 503 no_capacity before
anything is made."""

from __future__ import annotations

import pytest
from conftest import ROOT, wait_job
from sites import site_inventory
from sqlalchemy import select

from api.models import Job, Service
from lab.pve.capacity import GIB
from lab.pve.fake import DRBD

pytestmark = [pytest.mark.cluster, pytest.mark.db]

PUBLIC_IP = "203.0.113.40"
RESERVE = {"memory_mb": 512, "disk_gb": 4}


@pytest.fixture
def env(env, tmp_path, pve_api, edge_peers):
    """The API's environment with the real playbooks and an inventory whose allowed nodes are the fake's three."""
    inventory = site_inventory(
        tmp_path / "site",
        pve_api,
        edge_peers.settings,
        proxmoxwp_pve_nodes=["pve1", "pve2", "pve3"],
        proxmoxwp_pve_node_reserve=RESERVE,
    )
    return {**env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}


@pytest.fixture
def three_nodes(pve):
    """pve1 as the fake always had it (8 GiB, 2 GiB used: 5.5 GiB free after the reserve), pve2 with the most room
    (27.5 GiB free) and pve3 between them (14.5 GiB)."""

    def add(model):
        model.add_node("pve2", maxmem=32 * GIB, mem=4 * GIB)
        model.add_node("pve3", maxmem=16 * GIB, mem=1 * GIB)

    pve.call(add, pve.pve)
    return pve


def create(api, service_id: int):
    body = {"service_id": service_id, "email": "owner@example.com", "plan": "basic", "public_ip": PUBLIC_IP}
    return api.post("/create-site", body)


def created_on(api, pve, answer) -> str:
    """The node of the container the fake made for the site, once its job succeeded; /status says the same."""
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    job = wait_job(api, body["job_id"], timeout=180)
    assert job["state"] == "succeeded", job
    status = api.get("/status", service_id=body["service_id"]).get_json()
    (node,) = pve.call(lambda: [ct.node for ct in pve.pve.cts if ct.vmid == status["vmid"]])
    assert status["node"] == node
    return node


def test_sites_land_on_the_node_with_the_most_room_never_on_an_offline_or_maintenance_one(
    api, start_worker, three_nodes
):
    pve = three_nodes
    start_worker(concurrency=2)

    first = create(api, 6401)
    assert api.get("/status", service_id=6401).get_json()["node"] == "pve2"  # recorded at once, before the job
    assert api.get(f"/jobs/{first.get_json()['job_id']}").get_json()["job"]["params"]["node"] == "pve2"
    # pve2 goes into maintenance (ha-manager crm-command node-maintenance enable pve2): the next site goes to
    # pve3, the most room among the others
    pve.call(pve.pve.node_maintenance, "pve2")
    second = create(api, 6402)
    assert created_on(api, pve, first) == "pve2"
    assert created_on(api, pve, second) == "pve3"

    # pve3 fails: only pve1 is left, though it has the least room. The HA manager moves the second site there too,
    # and the creation waits for that before it picks an address (the moved site's is unreadable until then).
    pve.fail_node("pve3", recovery_delay=1.0)
    assert created_on(api, pve, create(api, 6403)) == "pve1"
    assert api.get("/status", service_id=6402).get_json()["ip"] != api.get("/status", service_id=6403).get_json()["ip"]


@pytest.mark.parametrize(
    "full",
    [
        pytest.param({"memory": True}, id="memory"),
        pytest.param({"disk": True}, id="disk"),
    ],
)
def test_with_no_room_anywhere_create_site_answers_503_no_capacity_and_makes_nothing(api, runtime, three_nodes, full):
    pve = three_nodes

    def fill(model):
        if full.get("memory"):
            # 1 GiB for the plan plus the 512 MiB reserve fits nowhere
            for node, size in (("pve1", 8), ("pve2", 32), ("pve3", 16)):
                model.set_node_capacity(node, mem=size * GIB - 1400 * 1024**2)
        if full.get("disk"):
            # the plan's 8 GiB plus the 4 GiB reserve does not fit on the shared DRBD storage
            model.storages[DRBD]["total"] = 11 * GIB

    pve.call(fill, pve.pve)
    reads_before = len(pve.pve.requests_sent("GET", "/cluster/resources"))

    answer = create(api, 6404)

    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json() == {
        "success": False,
        "code": "no_capacity",
        "error": "There is no room for a new site right now; nothing was made. Please try again later.",
    }
    assert len(pve.pve.requests_sent("GET", "/cluster/resources")) == reads_before + 1
    assert pve.call(lambda: list(pve.pve.cts)) == []
    assert api.get("/status", service_id=6404).status_code == 404
    with runtime.db.session() as session:
        assert session.scalars(select(Job)).all() == [] and session.scalars(select(Service)).all() == []

    # room again (a node added to the allowed ones, here pve2 emptied): the same request makes the site
    pve.call(lambda: (pve.pve.set_node_capacity("pve2", mem=4 * GIB), pve.pve.storages[DRBD].pop("total", None)))
    again = create(api, 6404)
    assert again.status_code == 202, again.get_json()
    assert api.get("/status", service_id=6404).get_json()["node"] == "pve2"


def test_when_proxmox_does_not_answer_create_site_answers_503_pve_unavailable_and_makes_nothing(api, runtime, pve):
    pve.call(pve.pve.fail_http, "GET", "/cluster/resources", 500, "proxy loop detected", None)
    answer = create(api, 6405)
    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json()["code"] == "pve_unavailable"
    assert api.get("/status", service_id=6405).status_code == 404
    with runtime.db.session() as session:
        assert session.scalars(select(Job)).all() == []

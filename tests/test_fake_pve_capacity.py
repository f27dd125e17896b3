"""The fake PVE's nodes and their room as the project's token reads them over HTTPS: each node's capacity and use
in /cluster/resources and /nodes (guests counting against their node, figures shown only to who may audit them),
offline nodes, and HA node maintenance as /cluster/ha/status shows it (lab/pve/capacity.py)."""

from __future__ import annotations

import pytest
from test_fake_pve import Api, create_ct

from lab.pve.capacity import CT_MEM, GIB
from lab.pve.fake import DRBD
from lab.pve.service import this_machine

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(pve) -> Api:
    return Api(pve)


@pytest.fixture
def three_nodes(pve):
    def add(model):
        model.add_node("pve2", maxmem=32 * GIB, mem=4 * GIB, maxcpu=16)
        model.add_node("pve3", maxmem=16 * GIB, mem=1 * GIB)

    pve.call(add, pve.pve)
    return pve


def by_id(api: Api, **params) -> dict[str, dict]:
    return {item["id"]: item for item in api.ok("GET", "/cluster/resources", **params)}


def test_each_node_shows_its_own_capacity_with_pves_fields_and_types(api, three_nodes):
    found = by_id(api, type="node")
    assert sorted(found) == ["node/pve1", "node/pve2", "node/pve3"]
    pve1, pve2 = found["node/pve1"], found["node/pve2"]
    # pve1 as it always was
    assert (pve1["maxmem"], pve1["mem"], pve1["maxcpu"], pve1["maxdisk"]) == (8 * GIB, 2 * GIB, 4, 64 * GIB)
    assert (pve2["maxmem"], pve2["mem"], pve2["maxcpu"]) == (32 * GIB, 4 * GIB, 16)
    for entry in found.values():
        assert entry["type"] == "node" and entry["status"] == "online" and entry["level"] == ""
        for key in ("mem", "maxmem", "disk", "maxdisk", "uptime"):
            assert type(entry[key]) is int, (key, entry)
        assert isinstance(entry["cpu"], float) and isinstance(entry["maxcpu"], int)
    assert {n["node"]: n["maxmem"] for n in api.ok("GET", "/nodes")} == {
        "pve1": 8 * GIB,
        "pve2": 32 * GIB,
        "pve3": 16 * GIB,
    }


def test_a_guest_counts_against_its_node_and_its_storage(api, three_nodes):
    before = by_id(api)
    create_ct(api, 200, node="pve2", memory=1024, start=1)
    create_ct(api, 201, storage="local-lvm", node="pve3", memory=1024, start=1)
    after = by_id(api)

    assert after["node/pve2"]["mem"] == before["node/pve2"]["mem"] + CT_MEM
    assert after["node/pve1"]["mem"] == before["node/pve1"]["mem"]
    # DRBD is shared: the 8 GiB volume is used as seen from every node
    for node in ("pve1", "pve2", "pve3"):
        drbd = after[f"storage/{node}/{DRBD}"]
        assert drbd["disk"] == before[f"storage/{node}/{DRBD}"]["disk"] + 8 * GIB, drbd
        assert (drbd["status"], drbd["shared"], drbd["plugintype"], drbd["node"]) == ("available", 1, "drbd", node)
    # local-lvm is each node's own: only pve3's holds the volume
    assert after["storage/pve3/local-lvm"]["disk"] == before["storage/pve3/local-lvm"]["disk"] + 8 * GIB
    assert after["storage/pve2/local-lvm"]["disk"] == before["storage/pve2/local-lvm"]["disk"]
    assert after["lxc/200"]["node"] == "pve2" and after["lxc/200"]["maxmem"] == 1024 * 1024**2


def test_an_offline_node_shows_its_sizes_only_and_its_storage_unknown(api, three_nodes):
    three_nodes.call(three_nodes.pve.node_offline, "pve3")
    found = by_id(api)
    node = found["node/pve3"]
    assert node["status"] == "offline" and node["maxmem"] == 16 * GIB
    assert not {"mem", "cpu", "disk", "uptime"} & set(node), node
    storage = found[f"storage/pve3/{DRBD}"]
    assert storage["status"] == "unknown" and "disk" not in storage and "maxdisk" not in storage


def test_usage_is_shown_only_to_who_may_audit_it(api, three_nodes):
    model = three_nodes.pve
    three_nodes.call(model.take_privilege, "Datastore.Audit")
    three_nodes.call(model.take_privilege, "Sys.Audit")
    found = by_id(api)
    assert not [key for key in found if key.startswith("storage/")]
    assert found["node/pve2"]["status"] == "online"
    assert not {"mem", "maxmem", "cpu", "maxcpu", "disk", "maxdisk"} & set(found["node/pve2"])


def test_a_node_in_maintenance_shows_in_the_ha_status_and_stays_online_in_resources(api, three_nodes):
    three_nodes.call(three_nodes.pve.node_maintenance, "pve2")
    status = api.ok("GET", "/cluster/ha/status/manager_status")
    assert status["manager_status"]["node_status"] == {"pve1": "online", "pve2": "maintenance", "pve3": "online"}
    assert status["lrm_status"]["pve2"]["mode"] == "maintenance"
    lrm = {e["node"]: e["status"] for e in api.ok("GET", "/cluster/ha/status/current") if e["type"] == "lrm"}
    assert lrm["pve2"].startswith("pve2 (maintenance mode, ") and "active" in lrm["pve1"]
    assert by_id(api, type="node")["node/pve2"]["status"] == "online"

    three_nodes.call(three_nodes.pve.node_maintenance, "pve2", False)
    status = api.ok("GET", "/cluster/ha/status/manager_status")
    assert status["manager_status"]["node_status"]["pve2"] == "online"


def test_the_served_labs_node_is_as_big_as_the_machine_it_runs_on(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n")
    figures = this_machine(meminfo)
    assert figures["maxmem"] == 24000000 * 1024 and figures["mem"] == 4000000 * 1024 and figures["maxcpu"] >= 1

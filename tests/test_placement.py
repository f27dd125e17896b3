"""The placement arithmetic (api/placement.py) on /cluster/resources entries shaped as Proxmox VE sends them."""

from __future__ import annotations

from api.placement import GIB, MIB, Reserve, Room, choose, maintenance_nodes, rooms

STORAGE = "drbd1"


def node(name: str, maxmem_gib: float, mem_gib: float, status: str = "online") -> dict:
    entry = {"id": f"node/{name}", "type": "node", "node": name, "status": status, "maxmem": int(maxmem_gib * GIB)}
    if status == "online":
        entry["mem"] = int(mem_gib * GIB)
    return entry


def storage(name: str, size_gib: float, used_gib: float, status: str = "available") -> dict:
    entry = {"id": f"storage/{name}/{STORAGE}", "type": "storage", "node": name, "storage": STORAGE, "status": status}
    if status == "available":
        entry.update(maxdisk=int(size_gib * GIB), disk=int(used_gib * GIB))
    return entry


def guest(vmid: int, name: str, maxmem_mib: int, status: str = "running") -> dict:
    return {
        "id": f"lxc/{vmid}",
        "type": "lxc",
        "vmid": vmid,
        "node": name,
        "status": status,
        "maxmem": maxmem_mib * MIB,
    }


def cluster(*nodes: tuple[str, float, float], disk: float = 100, used: float = 0) -> list[dict]:
    return [node(n, maxmem, mem) for n, maxmem, mem in nodes] + [storage(n, disk, used) for n, _, _ in nodes]


def test_the_node_with_the_most_free_memory_after_the_reserve_is_chosen():
    found = rooms(cluster(("pve1", 8, 2), ("pve2", 32, 4), ("pve3", 16, 1)), ["pve1", "pve2", "pve3"], STORAGE,
                  Reserve(memory_mb=1024, disk_gb=10))  # fmt: skip
    assert [r.free_memory // MIB for r in found] == [5 * 1024, 27 * 1024, 14 * 1024]
    assert [r.free_disk // GIB for r in found] == [90, 90, 90]
    assert choose(found, 1024 * MIB, 8 * GIB).node == "pve2"


def test_memory_promised_to_guests_counts_even_when_they_use_less_or_are_stopped():
    resources = [*cluster(("pve1", 8, 1)), guest(100, "pve1", 4096), guest(101, "pve1", 2048, status="stopped")]
    (room,) = rooms(resources, ["pve1"], STORAGE, Reserve())
    assert room.free_memory == 2 * GIB and room.running == 1
    assert choose([room], 2 * GIB, GIB) is room and choose([room], 2 * GIB + 1, GIB) is None


def test_templates_promise_no_memory():
    resources = [*cluster(("pve1", 8, 1)), dict(guest(100, "pve1", 4096, status="stopped"), template=1)]
    assert rooms(resources, ["pve1"], STORAGE, Reserve())[0].free_memory == 7 * GIB


def test_the_site_storage_must_have_room_after_its_reserve():
    found = rooms(cluster(("pve1", 64, 1), disk=100, used=85), ["pve1"], STORAGE, Reserve(disk_gb=8))
    assert found[0].free_disk == 7 * GIB
    assert choose(found, GIB, 8 * GIB) is None and choose(found, GIB, 7 * GIB).node == "pve1"


def test_ties_go_to_more_disk_then_fewer_running_guests_then_the_name():
    same = [Room("pve2", 4 * GIB, 50 * GIB, 3), Room("pve1", 4 * GIB, 50 * GIB, 3), Room("pve3", 4 * GIB, 50 * GIB, 1)]
    assert choose(same, GIB, GIB).node == "pve3"
    assert choose(same[:2], GIB, GIB).node == "pve1"
    assert choose([*same, Room("pve4", 4 * GIB, 60 * GIB, 9)], GIB, GIB).node == "pve4"


def test_offline_maintenance_unknown_and_unlisted_nodes_are_never_chosen():
    resources = [
        node("pve1", 64, 1, status="offline"),
        node("pve2", 64, 1),
        node("pve3", 64, 1),
        storage("pve1", 100, 0, status="unknown"),
        storage("pve2", 100, 0),
        storage("pve3", 100, 0, status="unknown"),
        node("pve5", 64, 1),
    ]
    found = rooms(resources, ["pve1", "pve2", "pve3", "pve4", "pve5"], STORAGE, Reserve(), maintenance=["pve2"])
    reasons = {r.node: r.unusable for r in found}
    assert reasons["pve1"] == "offline"
    assert reasons["pve2"] == "in maintenance"
    assert reasons["pve3"] == "the storage drbd1 is not available"
    assert reasons["pve4"] == "not a node of the cluster"
    assert "Datastore.Audit" in reasons["pve5"]  # no storage entry: not there, or hidden from the token
    assert choose(found, 0, 0) is None


def test_a_node_whose_figures_are_hidden_from_the_token_is_not_chosen():
    hidden = {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"}
    (room,) = rooms([hidden, storage("pve1", 100, 0)], ["pve1"], STORAGE, Reserve())
    assert "Sys.Audit" in room.unusable


def test_the_maintenance_nodes_come_from_the_ha_managers_node_status():
    status = {"manager_status": {"node_status": {"pve1": "online", "pve2": "maintenance", "pve3": "unknown"}}}
    assert maintenance_nodes(status) == {"pve2"}
    assert maintenance_nodes({}) == set()  # no HA manager has run on the cluster

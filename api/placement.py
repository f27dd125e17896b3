"""Which node a new site goes on: the arithmetic, on what Proxmox VE's /cluster/resources and HA manager status say.

Pure: no I/O, so it is tested on its own and the API's read of the cluster (api/pve_room.py) stays one GET of the
resources and one of the HA manager's status. docs/placement.md explains the rules to operators:

- only the allowed nodes (the inventory's `proxmoxwp_pve_nodes`), and of those only the ones that are online and
  not in HA maintenance, whose figures the token may see and where the site storage is available;
- free memory: the node's memory less the larger of what it uses now and what its guests may use (every guest's
  memory limit, running or not: a stopped site starts again, and a site just made uses little until it is
  visited), less the reserve;
- free disk: the site storage's size less what is used on it, as seen from that node, less the reserve;
- a node fits when both are at least the plan's memory and disk; of those that fit, the one with the most free
  memory, then the most free disk, then the fewest running guests, then the first by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIB = 1024**2
GIB = 1024**3
GUEST_TYPES = ("lxc", "qemu")


@dataclass(frozen=True)
class Reserve:
    """What placement leaves free on every node: memory for the host and disk on the site storage."""

    memory_mb: int = 0
    disk_gb: int = 0


@dataclass(frozen=True)
class Room:
    """A node as placement sees it: its free memory and disk (bytes, after the reserve; negative when the node is
    already over it), its running guests, and why it cannot take a site at all (None when it can, if it fits)."""

    node: str
    free_memory: int = 0
    free_disk: int = 0
    running: int = 0
    unusable: str | None = None

    def fits(self, memory: int, disk: int) -> bool:
        return self.unusable is None and self.free_memory >= memory and self.free_disk >= disk

    def describe(self) -> str:
        if self.unusable is not None:
            return f"{self.node}: {self.unusable}"
        return (
            f"{self.node}: {self.free_memory // MIB} MiB of memory and {self.free_disk // GIB} GiB of disk free "
            f"after the reserve, {self.running} guests running"
        )


def rooms(
    resources: Iterable[dict], allowed: Iterable[str], storage: str, reserve: Reserve, maintenance: Iterable[str] = ()
) -> list[Room]:
    """The room on each allowed node, in the order given, from the entries of GET /cluster/resources and the nodes
    the HA manager has in maintenance."""
    entries = list(resources)
    nodes = {e.get("node"): e for e in entries if e.get("type") == "node"}
    storages = {e.get("node"): e for e in entries if e.get("type") == "storage" and e.get("storage") == storage}
    guests = [e for e in entries if e.get("type") in GUEST_TYPES and not e.get("template")]
    in_maintenance = set(maintenance)
    found = []
    for name in allowed:
        on_node = [g for g in guests if g.get("node") == name]
        unusable = _unusable(name, nodes.get(name), storages.get(name), storage, in_maintenance)
        if unusable is not None:
            found.append(Room(name, unusable=unusable))
            continue
        node, volume = nodes[name], storages[name]
        committed = sum(int(g.get("maxmem") or 0) for g in on_node)
        used_memory = max(int(node["mem"]), committed)
        found.append(
            Room(
                name,
                free_memory=int(node["maxmem"]) - used_memory - reserve.memory_mb * MIB,
                free_disk=int(volume["maxdisk"]) - int(volume["disk"]) - reserve.disk_gb * GIB,
                running=sum(1 for g in on_node if g.get("status") == "running"),
            )
        )
    return found


def _unusable(name: str, node: dict | None, volume: dict | None, storage: str, maintenance: set[str]) -> str | None:
    if node is None:
        return "not a node of the cluster"
    if node.get("status") != "online":
        return f"{node.get('status') or 'unknown'}"
    if name in maintenance:
        return "in maintenance"
    if "mem" not in node or "maxmem" not in node:
        return "its memory is not shown to the token (Sys.Audit on /nodes)"
    if volume is None:
        return f"the storage {storage} is not there, or not shown to the token (Datastore.Audit on /storage)"
    if volume.get("status") != "available" or "maxdisk" not in volume:
        return f"the storage {storage} is not available"
    return None


def choose(found: Iterable[Room], memory: int, disk: int) -> Room | None:
    """The node for a site that needs `memory` and `disk` bytes: the fitting one with the most room, or None."""
    fitting = [room for room in found if room.fits(memory, disk)]
    if not fitting:
        return None
    return min(fitting, key=lambda r: (-r.free_memory, -r.free_disk, r.running, r.node))


def maintenance_nodes(manager_status: dict) -> set[str]:
    """The nodes in HA maintenance, from GET /cluster/ha/status/manager_status (node_status 'maintenance')."""
    status = (manager_status or {}).get("manager_status") or {}
    return {node for node, state in (status.get("node_status") or {}).items() if state == "maintenance"}

"""Nodes with their own capacity, usage shown in /cluster/resources as PVE shows it, and HA node maintenance.

fakepve gives every node the same fixed figures (8 GiB of memory, 2 GiB used), and every storage entry of
/cluster/resources 100 GiB with nothing used, whatever runs there. Placing sites by the room left needs the
figures to follow the guests, and PVE's rules about who sees them (pve-manager API2/Cluster.pm `resources`,
API2Tools.pm `extract_node_stats`, `extract_storage_stats`):

- a node entry is listed to everyone, but its usage (cpu, mem, disk, uptime and maxcpu, maxmem, maxdisk) only to
  those with Sys.Audit on /nodes/<node>; an offline node keeps its last maxcpu/maxmem/maxdisk and has no mem, cpu,
  disk or uptime;
- storage entries (`storage/<node>/<storage>`, one per node the storage is enabled on) are listed only with
  Datastore.Audit on /storage/<storage>; `disk` and `maxdisk` are the bytes used and the size, `status` is
  'available' with them; an offline node's storage here is 'unknown' without figures (the lab is never kinder);
- a node's memory in use is what its own processes use plus what its running guests use (the guests' `mem`);
  a shared storage has one size and use, seen alike from every node; a node-local one counts only the volumes
  of the guests on that node.

Maintenance: `ha-manager crm-command node-maintenance enable <node>` (PVE 7.3 and later) has no API call; the
API shows it in GET /cluster/ha/status/manager_status (`manager_status.node_status.<node>: maintenance`, the
node's `lrm_status.<node>.mode: maintenance`) and in /cluster/ha/status/current (the lrm entry's status reads
'<node> (maintenance mode, <time>)'), never in /cluster/resources, where the node stays 'online'.
node_maintenance() stands in for the command. The HA manager moving HA guests off such a node is not modelled.
"""

from __future__ import annotations

import json
import time

from fakepve import shapes
from fakepve.server import USER, ok

GIB = 1024**3
MIB = 1024**2
# pve1 as fakepve has always shown it: a node of 4 CPUs, 8 GiB of memory (2 GiB used by the host itself) and a
# root file system of 64 GiB (4 GiB used).
NODE_DEFAULTS = {"maxcpu": 4, "maxmem": 8 * GIB, "mem": 2 * GIB, "maxdisk": 64 * GIB, "disk": 4 * GIB, "cpu": 0.02}
# What a running container uses, as fakepve's status/current reports it.
CT_MEM = 64 * MIB
# The size of a storage that declares none (fakepve's own default).
STORAGE_SIZE = 100 * GIB
# PVE 8 and later run every node on the unified cgroup hierarchy (static-info's cgroup-mode).
CGROUP_MODE = 2
NODE_UPTIME = 3600


class Capacity:
    """Mixin of ProjectPve: per-node capacity, /nodes and /cluster/resources from it, node maintenance and GET
    /cluster/ha/status/manager_status."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # node -> its hardware and its own use (NODE_DEFAULTS' keys); guests' use is added when shown.
        self.node_sizes: dict[str, dict] = {}
        # Nodes in HA maintenance mode.
        self.maintenance: set[str] = set()

    def _routes_capacity(self):
        return [("GET", "/cluster/ha/status/manager_status", self._manager_status)]

    # ------------------------------------------------------------------------------------- what tests set

    def add_node(self, name, online=True, **sizes):
        """A node of the cluster (fakepve's add_node) with its hardware and its own use: maxcpu, maxmem, mem,
        maxdisk, disk (bytes), cpu (a fraction); what is not given is NODE_DEFAULTS'."""
        super().add_node(name, online)
        self.set_node_capacity(name, **sizes)

    def set_node_capacity(self, node: str, **sizes) -> None:
        """Change a node's hardware or its own use (keys of NODE_DEFAULTS)."""
        unknown = set(sizes) - set(NODE_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown node figures {sorted(unknown)}: {sorted(NODE_DEFAULTS)}")
        self.node_sizes.setdefault(node, {}).update(sizes)

    def node_maintenance(self, node: str, enable: bool = True) -> None:
        """`ha-manager crm-command node-maintenance enable|disable <node>`."""
        if node not in self.nodes:
            raise ValueError(f"no node {node}")
        if enable:
            self.maintenance.add(node)
        else:
            self.maintenance.discard(node)

    # ----------------------------------------------------------------------------------------- the figures

    def _guests_on(self, node: str) -> list:
        return [g for g in [*self.vms, *self.cts] if g.node == node]

    @staticmethod
    def _guest_mem(guest) -> int:
        if guest.status != "running":
            return 0
        return int(guest.stats.get("mem", CT_MEM))

    def node_usage(self, node: str) -> dict:
        """The node's figures as PVE shows them to someone who may audit it (online: all, offline: the sizes)."""
        sizes = dict(NODE_DEFAULTS, **self.node_sizes.get(node, {}))
        shown = {"maxcpu": sizes["maxcpu"], "maxmem": sizes["maxmem"], "maxdisk": sizes["maxdisk"]}
        if self.nodes.get(node, {}).get("online", True):
            used = sizes["mem"] + sum(self._guest_mem(g) for g in self._guests_on(node))
            shown.update(cpu=sizes["cpu"], mem=min(used, sizes["maxmem"]), disk=sizes["disk"], uptime=NODE_UPTIME)
        return shown

    def storage_usage(self, sid: str, node: str) -> tuple[int, int]:
        """(size, used) in bytes of the storage as seen from the node: a shared one whole, a local one counting the
        volumes of that node's guests."""
        store = self.storages[sid]
        # fakepve's view of a storage: allocated volumes and those the guests' configs name
        volumes = self._volumes(sid).values()
        if store.get("shared"):
            used = sum(int(v.get("size") or 0) for v in volumes)
        else:
            here = {g.vmid for g in self._guests_on(node)}
            used = sum(int(v.get("size") or 0) for v in volumes if v.get("vmid") in here)
        if "avail" in store:  # fakepve's stores with a free-space figure of their own (`local`)
            return int(store.get("total", store["avail"] + used)), used
        return int(store.get("total", STORAGE_SIZE)), used

    # ------------------------------------------------------------------------------------------ the routes

    def _node_entry(self, user, node: str, state: dict, listing: bool) -> dict:
        online = state.get("online", True)
        entry = {"node": node, "status": "online" if online else "offline", "level": ""}
        if listing:
            entry["id"] = f"node/{node}"
            entry["type"] = "node"
            entry["cgroup-mode"] = CGROUP_MODE
        if self.allowed(user, f"/nodes/{node}", "Sys.Audit"):
            entry.update(self.node_usage(node))
        return entry

    async def _nodes(self, request):
        """GET /nodes: fakepve's entries with each node's own figures, shown only with Sys.Audit on it."""
        answer = []
        for node, state in sorted(self.nodes.items()):
            entry = self._node_entry(request[USER], node, state, listing=False)
            entry.update(id=f"node/{node}", type="node", ssl_fingerprint=shapes.FINGERPRINT)
            answer.append(entry)
        return ok(answer)

    async def _resources(self, request):
        """GET /cluster/resources: fakepve's guests, then the nodes and storages as PVE lists them."""
        kind = request.query.get("type")
        answer = json.loads((await super()._resources(request)).body)["data"]
        answer = [item for item in answer if item.get("type") not in ("node", "storage")]
        user = request[USER]
        if kind in (None, "node"):
            answer += [self._node_entry(user, n, s, listing=True) for n, s in sorted(self.nodes.items())]
        if kind in (None, "storage"):
            for sid in sorted(self.storages):
                if not self.allowed(user, f"/storage/{sid}", "Datastore.Audit"):
                    continue
                answer += [self._storage_entry(sid, node) for node in self._storage_nodes(sid)]
        return ok(answer)

    def _storage_entry(self, sid: str, node: str) -> dict:
        store = self.storages[sid]
        entry = {
            "id": f"storage/{node}/{sid}",
            "storage": sid,
            "node": node,
            "type": "storage",
            "plugintype": store.get("type", "dir"),
            "status": "unknown",
            "shared": 1 if store.get("shared") else 0,
            "content": store.get("content", ""),
        }
        if store.get("active", 1) and self.nodes.get(node, {}).get("online", True):
            size, used = self.storage_usage(sid, node)
            entry.update(maxdisk=size, disk=used, status="available")
        return entry

    def ha_node_state(self, node: str) -> str:
        """The node's state in the CRM's manager_status (lab.pve.failover adds 'fence')."""
        if node in self.maintenance:
            return "maintenance"
        return "online" if self.nodes[node].get("online", True) else "unknown"

    async def _manager_status(self, v, user):
        """GET /cluster/ha/status/manager_status: the CRM's manager_status, each node's LRM status, the quorum."""
        now = int(time.time())
        first = self.ha_master()
        node_status, lrm = {}, {}
        for node, state in sorted(self.nodes.items()):
            online = state.get("online", True)
            node_status[node] = self.ha_node_state(node)
            lrm[node] = {
                "mode": "maintenance" if node in self.maintenance else "active",
                "state": "active" if online else "lost_agent_lock",
                "timestamp": now if online else now - 600,
                "results": {},
            }
        services = {}
        for sid, guest in self._ha_sync().items():
            services[sid] = {"node": guest.node, "state": self._ha_crm_state(sid, guest), "uid": sid}
        return {
            "manager_status": {
                "master_node": first,
                "node_status": node_status,
                "service_status": services,
                "timestamp": now,
            },
            "lrm_status": lrm,
            "quorum": {"node": first, "quorate": "1" if self.quorate else "0"},
        }

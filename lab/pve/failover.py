"""A node that fails, and the HA manager's fence and recovery of its HA-managed guests (docs/real-systems.md).

On a real cluster a node that drops out of the cluster is lost at once for everyone else: pveproxy on the other nodes
cannot reach it (every /nodes/<node>/... call answers 595 "No route to host"), /cluster/resources lists it offline
and its guests' status as unknown. Its HA services are fenced: the CRM marks the node and each running service
'fence' and waits until it may take the node's LRM lock (the node's watchdog has reset it by then, about a minute
later); then each service is recovered: the CRM picks another online node the resource may run on, moves the
guest's config there and the LRM starts it ('started' again, on the new node). Guests without HA stay on the dead
node. The guests themselves died with the node (power lost): nothing ran a shutdown.

Here `fail_node` does the loss and `restore_node` brings the node back; `ha_recovery_delay` (real seconds, not
scaled) stands for the fencing time, after which the HA manager's next pass recovers the node's services. With no
node to go to, a service stays in 'recovery' until one comes online. HA rules (node affinity) are not modelled: any
online node outside maintenance may take a service, the one with the fewest HA services first (PVE's basic
scheduler), by name on a tie.

LabPve inherits this: the power loss kills the real container (stop_now) and the recovery's start boots it again,
now recorded on the other node.
"""

from __future__ import annotations

import logging
import time

from fakepve.lxc import FakeCt

from .ha import requested

log = logging.getLogger("lab.pve.failover")


class Failover:
    """Mixin of ProjectPve, before Capacity and HaApi: fail_node, restore_node, the HA manager's fence and recovery."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Real seconds from a node's failure until the HA manager recovers its services elsewhere (PVE: ~1-2 min).
        self.ha_recovery_delay = 2.0
        # node -> monotonic time it failed, while it is down.
        self.failed_nodes: dict[str, float] = {}
        # sid -> the failed node, for the services that ran there and are fenced, until recovered.
        self._ha_fencing: dict[str, str] = {}

    # ------------------------------------------------------------------------------------- what tests do

    async def fail_node(self, node: str) -> None:
        """The node is gone (power lost, network cut): offline for the cluster, its guests dead; the HA manager
        fences its HA services and, ha_recovery_delay seconds later, recovers them on another node."""
        if node not in self.nodes:
            raise ValueError(f"no node {node}")
        if node in self.failed_nodes:
            return
        self.failed_nodes[node] = time.monotonic()
        running_ha = {
            sid
            for sid, guest in self._ha_sync().items()
            if guest.node == node and guest.status == "running" and requested(guest.ha_state) != "ignored"
        }
        for guest in self._guests_on(node):
            if guest.status == "running":
                await self._power_lost(guest)
        self.set_node_offline(node, True)
        for sid in running_ha:
            self._ha_fencing[sid] = node
        log.info("node %s failed; fencing %s", node, ", ".join(sorted(running_ha)) or "no HA service")

    async def restore_node(self, node: str) -> None:
        """The node is back in the cluster (rebooted): online again. The guests still recorded on it are stopped
        (the lab does not run a node's start-on-boot); HA services not yet recovered are started there again."""
        if node not in self.nodes:
            raise ValueError(f"no node {node}")
        self.failed_nodes.pop(node, None)
        for sid in [sid for sid, failed in self._ha_fencing.items() if failed == node]:
            del self._ha_fencing[sid]
        self.set_node_offline(node, False)

    async def _power_lost(self, guest) -> None:
        """The guest died with its node."""
        if isinstance(guest, FakeCt):
            await self.stop_now(guest)  # LabPve kills the real container here
        else:
            guest.status = guest.qmpstatus = "stopped"

    # ------------------------------------------------------------------------------------ the HA manager

    async def ha_converge(self) -> None:
        """Recover the services of nodes failed for ha_recovery_delay, then the manager's usual pass."""
        self._ha_recover()
        await super().ha_converge()

    def _ha_recover(self) -> None:
        now = time.monotonic()
        for sid, guest in self._ha_sync().items():
            failed_at = self.failed_nodes.get(guest.node)
            if failed_at is None or now - failed_at < self.ha_recovery_delay:
                continue
            if requested(guest.ha_state) == "ignored":
                continue
            target = self._ha_recovery_node()
            if target is None:
                continue  # stays in 'recovery' until a node can take it
            log.info("recover service '%s' from fenced node '%s' to node '%s'", sid, guest.node, target)
            guest.node = target
            self._ha_fencing.pop(sid, None)

    def _ha_recovery_node(self) -> str | None:
        """An online node outside maintenance with the fewest HA services, by name on a tie; None if there is none."""
        candidates = [
            node
            for node, state in self.nodes.items()
            if state.get("online", True) and node not in self.failed_nodes and node not in self.maintenance
        ]
        if not candidates:
            return None
        load = {node: 0 for node in candidates}
        for guest in self._ha_guests().values():
            if guest.node in load:
                load[guest.node] += 1
        return min(candidates, key=lambda node: (load[node], node))

    def _ha_crm_state(self, sid: str, guest) -> str:
        """'fence' while the CRM waits to fence the service's node, 'recovery' once it may recover it (and has no
        node for it yet); otherwise the manager's usual state."""
        failed = self._ha_fencing.get(sid)
        if failed is not None and failed == guest.node:
            waited = time.monotonic() - self.failed_nodes.get(failed, 0)
            return "fence" if waited < self.ha_recovery_delay else "recovery"
        return super()._ha_crm_state(sid, guest)

    def ha_node_state(self, node: str) -> str:
        """Capacity's node state, and 'fence' while the node's services are being fenced."""
        if node in self.failed_nodes:
            fencing = any(failed == node for failed in self._ha_fencing.values())
            if fencing and time.monotonic() - self.failed_nodes[node] < self.ha_recovery_delay:
                return "fence"
        return super().ha_node_state(node)

    # ---------------------------------------------------------------------------------- what PVE shows

    def ct_resources(self, user, kind=None):
        """/cluster/resources' containers: `hastate` is the service's state as the CRM has it (PVE reads it from
        the manager status), not the requested state fakepve shows."""
        items = super().ct_resources(user, kind)
        guests = self._ha_guests()
        for item in items:
            guest = guests.get(f"ct:{item.get('vmid')}")
            if "hastate" in item and guest is not None:
                item["hastate"] = self._ha_crm_state(f"ct:{guest.vmid}", guest)
        return items

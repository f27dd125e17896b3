"""Where create-site puts a new site: the allowed nodes and the reserve from the inventory, the room from Proxmox VE.

The settings are the playbooks' own (inventory group_vars, read as ansible-playbook reads them, vault included):
`proxmoxwp_pve_nodes` (or the older single `proxmoxwp_pve_node`), `proxmoxwp_pve_node_reserve`, the site storage
`proxmoxwp_pve_storage` and the connection `proxmoxwp_pve_api`. An inventory without a connection (the job engine's
test inventory) places nothing: the playbooks then use the first allowed node.

Two GETs per placement, outside any database transaction: /cluster/resources (nodes, storages and guests at once)
and /cluster/ha/status/manager_status (maintenance shows nowhere else). The arithmetic is api/placement.py.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from api.ansible_vars import read_variables
from api.config import ConfigError, Settings
from api.errors import unavailable
from api.inventory import Plan
from api.placement import GIB, MIB, Reserve, Room, choose, maintenance_nodes, rooms
from api.pve import load_collections, pve_client

log = logging.getLogger(__name__)

VARIABLES = (
    "proxmoxwp_pve_api",
    "proxmoxwp_pve_nodes",
    "proxmoxwp_pve_node",
    "proxmoxwp_pve_node_reserve",
    "proxmoxwp_pve_storage",
)
UNREACHABLE = "The hosting cluster cannot be reached right now; nothing was made. Try again shortly."
# Seconds for each GET: a create-site waits for them, and the billing panel for the create-site.
READ_TIMEOUT = 10


@dataclass(frozen=True)
class PlacementSettings:
    api: dict[str, Any]
    nodes: tuple[str, ...]
    storage: str
    reserve: Reserve


def placement_settings(settings: Settings) -> PlacementSettings | None:
    """The inventory's placement settings; None when it has no Proxmox VE connection. ConfigError if malformed."""
    load_collections(settings)  # the connection's lookups (ansible.builtin.env) need Ansible's loader
    found = read_variables(settings.inventory, VARIABLES, settings.vault_password_file)
    api = found.get("proxmoxwp_pve_api")
    if not isinstance(api, dict) or not api:
        return None
    nodes = found.get("proxmoxwp_pve_nodes")
    if nodes is None and found.get("proxmoxwp_pve_node"):
        nodes = [found["proxmoxwp_pve_node"]]  # an inventory from before placement: one node
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) and n for n in nodes):
        raise ConfigError("PROXMOXWP_INVENTORY: proxmoxwp_pve_nodes must list the nodes sites may be created on")
    reserve = found.get("proxmoxwp_pve_node_reserve") or {}
    try:
        kept = Reserve(**{key: int(value) for key, value in reserve.items()})
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(
            "PROXMOXWP_INVENTORY: proxmoxwp_pve_node_reserve takes memory_mb and disk_gb (whole numbers)"
        ) from None
    if kept.memory_mb < 0 or kept.disk_gb < 0:
        raise ConfigError("PROXMOXWP_INVENTORY: proxmoxwp_pve_node_reserve cannot be negative")
    storage = found.get("proxmoxwp_pve_storage")
    if not storage:
        raise ConfigError("PROXMOXWP_INVENTORY: proxmoxwp_pve_storage (the site storage) is not set")
    return PlacementSettings(api, tuple(nodes), str(storage), kept)


class Placer:
    """Chooses a new site's node; one per process (Runtime.placer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def config(self) -> PlacementSettings | None:
        return placement_settings(self.settings)

    @property
    def places(self) -> bool:
        """Whether create-site chooses a node here: the inventory has a Proxmox VE connection (or its placement
        settings are malformed, which node_for() answers with a 503)."""
        try:
            return self.config is not None
        except ConfigError:
            return True

    @cached_property
    def _client(self):
        assert self.config is not None
        api = dict(self.config.api, timeout=min(int(self.config.api.get("timeout") or READ_TIMEOUT), READ_TIMEOUT))
        return pve_client(self.settings, api)

    def rooms(self) -> list[Room] | None:
        """The room on each allowed node, or None when this inventory places nothing. ApiError 503 pve_unavailable
        when Proxmox VE does not answer or the settings are wrong."""
        try:
            config = self.config
            if config is None:
                return None
            with self._lock:  # one requests session: one read at a time
                resources, manager = self._read()
        except ConfigError as exc:  # the inventory's placement or connection settings: the operator's to mend
            log.error("placement: %s", exc)
            raise unavailable("pve_unavailable", UNREACHABLE) from None
        return rooms(resources, config.nodes, config.storage, config.reserve, maintenance_nodes(manager))

    def node_for(self, plan: Plan) -> str | None:
        """The node a new site of `plan` goes on, or None when this inventory places nothing. ApiError 503
        no_capacity when no allowed node has room, pve_unavailable when Proxmox VE does not answer."""
        found = self.rooms()
        if found is None:
            return None
        room = choose(found, plan.memory_mb * MIB, plan.disk_gb * GIB)
        seen = "; ".join(r.describe() for r in found)
        if room is None:
            log.warning("no node has room for a site of %s MiB and %s GiB: %s", plan.memory_mb, plan.disk_gb, seen)
            raise unavailable(
                "no_capacity", "There is no room for a new site right now; nothing was made. Please try again later."
            )
        log.info("site placed on %s (%s)", room.node, seen)
        return room.node

    def _read(self) -> tuple[list, dict]:
        client, api_error = self._client
        try:
            return client.get("/cluster/resources") or [], client.get("/cluster/ha/status/manager_status") or {}
        except api_error as exc:
            log.warning("placement could not read the cluster: %s", exc.message)
            raise unavailable("pve_unavailable", UNREACHABLE) from None

# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A container whose node failed: wait (bounded) until Proxmox VE's HA manager has moved it, or say why not.

When a node fails, /cluster/resources shows its guests' status as `unknown` and every call to the node answers 595.
An HA-managed container is fenced and then recovered on another node, a minute or more later (docs/real-systems.md);
its entry then names the new node and a real status again. A container without HA stays on the dead node until the
node is back, so there is nothing to wait for. The container's node is therefore always read again from
/cluster/resources, never taken from what the caller remembers.
"""

import time

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import from_environment
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (
    MissingContainer,
    as_int,
    find_container,
    find_guest,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import PveApiError

RELOCATION_TIMEOUT = 300
RELOCATION_ENV = "PROXMOXWP_PVE_RELOCATION_TIMEOUT"
KNOWN = ("running", "stopped")
# HA states in which the HA manager will not move a guest off a dead node.
NOT_MOVED = (None, "", "ignored")
POLL = 2.0


class NodeDown(PveApiError):
    """The container's node does not answer and the container was not moved (yet)."""


def relocation_argument_spec():
    """The option relocation_timeout (doc fragment proxmoxwp.hosting.proxmoxwp_relocation)."""
    return {"relocation_timeout": from_environment(RELOCATION_ENV, type="int", default=RELOCATION_TIMEOUT)}


def waits_for_relocation(entry):
    """Whether the /cluster/resources entry is a container on a node that does not answer, which HA will move."""
    return entry.get("status") not in KNOWN and entry.get("hastate") not in NOT_MOVED


def settled(client, entry, timeout, warn=None, sleep=time.sleep):
    """The container's /cluster/resources entry once its node answers: at once when it does, else after the HA
    manager moved it (polling for at most `timeout` seconds). NodeDown when it is not an HA resource or was not moved
    in time; MissingContainer when it disappeared meanwhile."""
    if entry.get("status") in KNOWN:
        return entry
    vmid, node = as_int(entry.get("vmid")), entry.get("node")
    if entry.get("hastate") in NOT_MOVED:
        raise NodeDown(
            f"CT {vmid} is on node {node}, which does not answer (its status is {entry.get('status') or 'unknown'}), "
            "and it is not an HA resource that the HA manager would move to another node; bring the node back, "
            "then try again"
        )
    if warn is not None and timeout > 0:
        warn(
            f"CT {vmid}'s node {node} does not answer; waiting up to {timeout} s (relocation_timeout) for the HA "
            f"manager to move it to another node (HA state: {entry.get('hastate')})"
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        entry = find_guest(client, vmid)
        if entry is None:
            raise MissingContainer(f"CT {vmid} disappeared from the cluster while its node {node} was down")
        if entry.get("status") in KNOWN:
            return entry
    raise NodeDown(
        f"CT {vmid}'s node {node} failed and the HA manager has not moved it to another node yet (HA state: "
        f"{entry.get('hastate')}) within {timeout} s (relocation_timeout); nothing was changed, try again later"
    )


def find_settled(client, vmid, node=None, warn=None, timeout=RELOCATION_TIMEOUT):
    """find_container, then settled: the container's entry on the node where it answers now."""
    return find_container(client, vmid, node, warn=warn, settle=lambda entry: settled(client, entry, timeout, warn))

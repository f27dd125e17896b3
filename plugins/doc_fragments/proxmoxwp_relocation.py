# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The modules that act on one container: how long they wait for Proxmox VE's HA manager to move it off a node that
failed (plugins/module_utils/proxmoxwp_relocation.py)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  relocation_timeout:
    description:
      - The container's node is always read from C(/cluster/resources), never from what the task was told or a
        record. When that node does not answer (it failed, so the container's status is C(unknown)) and the container
        is an HA resource, the HA manager fences the node and recovers the container on another node, a minute or
        more later. The module waits up to this many seconds for that, then acts on the new node.
      - Past it, or at once when the container is not an HA resource (nothing would move it), the module fails
        saying the container's node failed and it has not been moved yet, without changing anything; try again
        later.
      - When left out, the environment variable E(PROXMOXWP_PVE_RELOCATION_TIMEOUT) gives it, else the default.
    type: int
    default: 300
"""

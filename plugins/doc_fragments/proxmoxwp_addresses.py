# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The modules that make a container: where its address comes from (plugins/module_utils/proxmoxwp_address.py,
docs/addresses.md)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  addresses:
    description:
      - The pool a new container's address is taken from. It gets the lowest address of O(addresses.ranges) that no
        guest of the cluster has configured (a container's C(netN), a VM's cloud-init C(ipconfigN)) and that no
        other creation is taking at the same time (a lock through the workers' lock broker, when there is one).
      - An archive kept by a restore keeps its address until it is destroyed; an existing container is never
        given another address.
      - To read which addresses are taken, the module reads every guest's config. An HA guest on a node that does
        not answer is waited for as C(relocation_timeout) says; a guest without HA there is passed over with a
        warning, its address not avoided.
    type: dict
    default: {}
    suboptions:
      ranges:
        description:
          - Ranges handed out, each C(FIRST-LAST) or a CIDR block, inside O(network); in the order given, lowest
            first within each.
          - Empty, the whole O(network).
        type: list
        elements: str
        default: []
      exclude:
        description:
          - Addresses (or CIDR blocks) never handed out, for hosts the cluster does not know about. The network
            and broadcast addresses and O(gateway) are never handed out either.
        type: list
        elements: str
        default: []
"""

# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The modules that make a container (a site's, or the warm pool's): the settings a new container is made with, and
never changed afterwards (plugins/module_utils/proxmoxwp_create.py)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  storage:
    description: Storage of a new container's root disk.
    type: str
  unprivileged:
    description: Make the container unprivileged (PVE's own default for a create).
    type: bool
    default: true
  nesting:
    description: Enable the C(nesting) feature (systemd in recent distributions needs it).
    type: bool
    default: true
  bridge:
    description: Bridge of C(net0).
    type: str
    default: vmbr0
  network:
    description:
      - Network of the containers in CIDR notation, for example C(10.77.0.0/16). A new container's address is taken
        from it as O(addresses) says.
    type: str
  gateway:
    description: Default gateway of C(net0).
    type: str
  nameserver:
    description: DNS server(s) of a new container; PVE uses the host's when omitted.
    type: str
  ssh_public_keys:
    description: Public SSH keys for root, one per line, OpenSSH format.
    type: str
notes:
  - O(storage), O(unprivileged), O(nesting), O(bridge), O(network), O(gateway), O(nameserver) and
    O(ssh_public_keys) are used when a container is made, and never change an existing one.
"""

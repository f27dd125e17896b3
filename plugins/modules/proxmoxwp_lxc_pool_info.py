#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_pool_info
short_description: List the warm pool's containers on Proxmox VE
description:
  - Lists the members of the warm pool (docs/pool.md), the containers tagged C(proxmoxwp) and C(pool) and no
    C(svc-*) tag, from C(/cluster/resources), with their address from their config. No database is needed.
  - With O(ostemplate), each member says whether it was made from that image (RV(members[].current)).
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.attributes
  - proxmoxwp.hosting.attributes.info_module
options:
  node:
    description: List only the members on this node.
    type: str
  ostemplate:
    description: The golden image members should be made from now.
    type: str
"""

EXAMPLES = r"""
- name: List the pool
  proxmoxwp.hosting.proxmoxwp_lxc_pool_info:
    ostemplate: "{{ proxmoxwp_pve_ostemplate }}"
  register: pool
"""

RETURN = r"""
members:
  description: The members, by vmid.
  returned: always
  type: list
  elements: dict
  contains:
    vmid:
      description: The member's vmid.
      type: int
    node:
      description: Its node.
      type: str
    ip:
      description: Its address (net0) without prefix.
      type: str
    image:
      description: "Its C(img-*) tag: the image it was made from."
      type: str
    status:
      description: C(running), C(stopped), or C(unknown) on a node that does not answer.
      type: str
    lock:
      description: Its lock, for example C(create) or C(backup); null when it has none.
      type: str
    current:
      description: Whether it was made from O(ostemplate) (only with O(ostemplate)).
      type: bool
  sample: [{vmid: 120, node: pve1, ip: 10.77.1.9, image: img-3fa2b1c4d5e6, status: running, lock: null}]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pool import (  # noqa: E402
    describe_member,
    image_tag,
    pool_entries,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(node={"type": "str"}, ostemplate={"type": "str"}),
        supports_check_mode=True,
    )
    client = connect(module)
    image = image_tag(module.params["ostemplate"]) if module.params["ostemplate"] else None
    try:
        found = [describe_member(client, entry) for entry in pool_entries(client, module.params["node"])]
    except PveApiError as exc:
        module.fail_json(msg=exc.message)
    if image is not None:
        for member in found:
            member["current"] = member["image"] == image
    module.exit_json(changed=False, members=found)


if __name__ == "__main__":
    main()

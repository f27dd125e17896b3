#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_info
short_description: Find the Proxmox VE containers of a ProxmoxWP service by their tags
description:
  - Lists the LXC containers tagged C(proxmoxwp) and C(svc-<service_id>) in C(/cluster/resources), with their
    configuration, snapshots, HA resource and power state. No database is needed.
  - A container tagged C(archive) is an archive (a stopped container kept only for its snapshots); every other
    one is the service's live container. More than one live container is an error.
  - A container on a node that does not answer (status C(unknown)) is reported without config or snapshots, with a
    warning; but when it is the live container and an HA resource, the module first waits (up to
    O(relocation_timeout); V(0) does not wait) for the HA manager to move it to another node, and fails past that.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_relocation
  - proxmoxwp.hosting.attributes
  - proxmoxwp.hosting.attributes.info_module
options:
  service_id:
    description: The service id (Paymenter's numeric id) whose containers to find.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Find the containers of service 42
  proxmoxwp.hosting.proxmoxwp_lxc_info:
    api: "{{ proxmoxwp_pve_api }}"
    service_id: 42
  register: site
  delegate_to: localhost

- name: Show the live container's address
  ansible.builtin.debug:
    msg: "{{ site.live.vmid }} on {{ site.live.node }}, newest snapshot {{ site.live.latest_snapshot }}"
  when: site.live is not none
"""

RETURN = r"""
live:
  description: The live (non-archive) container of the service, or null if it has none.
  returned: always
  type: dict
  sample:
    vmid: 105
    node: pve1
    hostname: site-42
    status: running
    tags: [proxmoxwp, svc-42]
    archive: false
    suspended: false
    ha: {sid: "ct:105", state: started}
    config: {hostname: site-42, memory: 1024, rootfs: "drbd1:vm-105-disk-0,size=10G"}
    snapshots: [{name: initial, snaptime: 1767225600, description: "", parent: null}]
    snapshot_names: [initial]
    latest_snapshot: initial
    disk_gb: 10
    cores: 1
    memory: 1024
    swap: 512
    onboot: true
    ip: 10.77.0.105
archives:
  description: The archive containers (tag C(archive)), in the same form as RV(live), by vmid.
  returned: always
  type: list
  elements: dict
containers:
  description:
    - Every container of the service (live and archives), by vmid. Each has these keys.
    - C(vmid) (int), C(node) (str), C(hostname) (str), C(status) (C(running), C(stopped) or C(unknown) when its node
      is offline; config and snapshots are then empty), C(tags) (list of lower-case tags), C(archive) and
      C(suspended) (bool, from the tags), C(ha) (null or a dict with C(sid) and the requested C(state)),
      C(config) (the container config as C(GET /nodes/{node}/lxc/{vmid}/config) returns it, pending values
      included), C(snapshots) (list of dicts with C(name), C(snaptime), C(description), C(parent); oldest first,
      without PVE's C(current) entry), C(snapshot_names) (their names, in the same order), C(latest_snapshot) (newest
      snapshot name or null), C(disk_gb) (rootfs size
      in GiB, a number), C(cores), C(memory) and C(swap) (MiB) as integers or null, C(onboot) (bool), C(ip) (the
      IPv4 address of net0 without prefix, or null).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    container_details,
    ha_resources,
    service_containers,
    split_live,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import (  # noqa: E402
    relocation_argument_spec,
    settled,
    waits_for_relocation,
)


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(service_id={"type": "int", "required": True}, **relocation_argument_spec()),
        supports_check_mode=True,
    )
    client = connect(module)
    service_id = module.params["service_id"]
    try:
        entries = service_containers(client, service_id)
        live, _archives = split_live(service_id, entries)
        timeout = module.params["relocation_timeout"]
        if live is not None and timeout > 0 and waits_for_relocation(live):
            moved = settled(client, live, timeout, module.warn)
            entries = [moved if entry is live else entry for entry in entries]
        listing = ha_resources(client) if entries else {}
        containers = []
        for entry in entries:
            if entry.get("status") not in ("running", "stopped"):
                module.warn(
                    "CT {} is on node {}, which does not answer; its config and snapshots are not reported".format(
                        entry.get("vmid"), entry.get("node")
                    )
                )
            containers.append(container_details(client, entry, listing))
    except PveApiError as exc:
        module.fail_json(msg=exc.message)
    live = [c for c in containers if not c["archive"]]
    module.exit_json(
        changed=False,
        live=live[0] if live else None,
        archives=[c for c in containers if c["archive"]],
        containers=containers,
    )


if __name__ == "__main__":
    main()

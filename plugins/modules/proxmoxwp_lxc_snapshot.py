#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_snapshot
short_description: Take, delete or roll back to a snapshot of a Proxmox VE container
description:
  - V(present) takes the snapshot when the container has none of that name (C(POST snapshot)); when it exists and
    O(description) differs, the description is updated (C(PUT snapshot/<name>/config)).
  - V(absent) deletes the snapshot when it exists (C(DELETE snapshot/<name>)).
  - V(rolled_back) rolls the container back to the snapshot (C(POST snapshot/<name>/rollback)). A rollback is an
    action, so it always reports a change. PVE hard-stops the container and leaves it stopped unless O(start=true).
    The module does not deal with HA; stop the container through its HA resource first
    (M(proxmoxwp.hosting.proxmoxwp_ha_resource)), or the HA manager starts it again during the rollback.
  - Storages such as DRBD/LINSTOR and ZFS roll back only to the most recent snapshot; PVE refuses the others and the
    module reports PVE's message (see docs/backups.md for the restore-by-clone strategy).
  - Every task is waited for and must end with exit status OK.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_relocation
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details:
      - O(state=present) and O(state=absent) report the snapshot names, or the description, before and after; a
        rollback reports no diff.
options:
  vmid:
    description: vmid of the container.
    type: int
    required: true
  node:
    description:
      - Node the container is expected on. Optional; the node is always taken from C(/cluster/resources) (a warning
        says so when it differs).
    type: str
  name:
    description:
      - Name of the snapshot, C(^[A-Za-z][A-Za-z0-9_-]{1,39}$) (2 to 40 characters), not C(current).
    type: str
    required: true
  state:
    description: What to do with the snapshot.
    type: str
    choices: [present, absent, rolled_back]
    default: present
  description:
    description: Description of the snapshot (O(state=present)).
    type: str
  start:
    description: Start the container after the rollback (PVE's C(start) parameter; O(state=rolled_back) only).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Take the snapshot "initial"
  proxmoxwp.hosting.proxmoxwp_lxc_snapshot:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    name: initial
    description: WordPress as provisioned
  delegate_to: localhost

- name: Roll back to a backup and start again
  proxmoxwp.hosting.proxmoxwp_lxc_snapshot:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    name: BAK01012026-1
    state: rolled_back
    start: true
  delegate_to: localhost

- name: Delete a backup
  proxmoxwp.hosting.proxmoxwp_lxc_snapshot:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    name: BAK01012026-1
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
snapshots:
  description: Names of the container's snapshots afterwards (in check mode, as they would be), oldest first.
  returned: success
  type: list
  elements: str
  sample: [initial, BAK01012026-1]
vmid:
  description: vmid of the container.
  returned: always
  type: int
  sample: 105
node:
  description: Node of the container.
  returned: success
  type: str
  sample: pve1
status:
  description: Status of the container after a rollback (C(running) with O(start=true), else C(stopped)).
  returned: state is rolled_back and not in check mode
  type: str
  sample: stopped
"""

import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    MissingContainer,
    check_mode_missing,
    snapshots,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import (  # noqa: E402
    find_settled,
    relocation_argument_spec,
)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,39}$")


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            vmid={"type": "int", "required": True},
            node={"type": "str"},
            name={"type": "str", "required": True},
            state={"type": "str", "default": "present", "choices": ["present", "absent", "rolled_back"]},
            description={"type": "str"},
            start={"type": "bool", "default": False},
            **relocation_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    if not NAME.match(name) or name.lower() == "current":
        module.fail_json(
            msg=f"snapshot name {name!r} is not valid: 2 to 40 characters, a letter first, then letters, digits, '_' "
            "or '-', and not 'current'"
        )
    if p["start"] and p["state"] != "rolled_back":
        module.fail_json(msg="start applies to state=rolled_back only")
    client = connect(module)
    vmid = p["vmid"]
    result = {"changed": False, "vmid": vmid}
    try:
        try:
            node = find_settled(client, vmid, p["node"], warn=module.warn, timeout=p["relocation_timeout"])["node"]
        except MissingContainer:
            if not module.check_mode or p["state"] != "present":
                raise
            check_mode_missing(module, vmid)
            module.exit_json(changed=True, vmid=vmid, node=p["node"], snapshots=[name])
        result["node"] = node
        path = f"/nodes/{node}/lxc/{vmid}/snapshot"
        before = snapshots(client, node, vmid)
        names = [s["name"] for s in before]
        existing = next((s for s in before if s["name"] == name), None)
        if p["state"] == "present":
            if existing is None:
                result.update(
                    changed=True, diff={"before": {"snapshots": names}, "after": {"snapshots": [*names, name]}}
                )
                if not module.check_mode:
                    client.run(
                        "POST",
                        path,
                        f"snapshot {name} of CT {vmid}",
                        snapname=name,
                        description=p["description"],
                    )
                names = [*names, name]
            elif p["description"] is not None and p["description"] != existing["description"]:
                result.update(
                    changed=True,
                    diff={
                        "before": {"description": existing["description"]},
                        "after": {"description": p["description"]},
                    },
                )
                if not module.check_mode:
                    client.put(f"{path}/{name}/config", description=p["description"])
        elif p["state"] == "absent":
            if existing is not None:
                remaining = [n for n in names if n != name]
                result.update(changed=True, diff={"before": {"snapshots": names}, "after": {"snapshots": remaining}})
                if not module.check_mode:
                    client.run("DELETE", f"{path}/{name}", f"deletion of snapshot {name} of CT {vmid}")
                names = remaining
        else:
            if existing is None:
                raise PveApiError(
                    "CT {} has no snapshot {!r} to roll back to (it has: {})".format(
                        vmid, name, ", ".join(names) or "none"
                    )
                )
            result["changed"] = True
            if not module.check_mode:
                client.run(
                    "POST",
                    f"{path}/{name}/rollback",
                    f"rollback of CT {vmid} to {name}",
                    start=p["start"],
                )
                wanted = "running" if p["start"] else "stopped"
                result["status"] = client.wait_ct_status(node, vmid, wanted).get("status")
        if not module.check_mode and result["changed"]:
            names = [s["name"] for s in snapshots(client, node, vmid)]
        result["snapshots"] = names
    except PveApiError as exc:
        module.fail_json(msg=exc.message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

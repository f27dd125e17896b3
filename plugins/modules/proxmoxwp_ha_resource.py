#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_ha_resource
short_description: Make a Proxmox VE container an HA resource, change its requested state, or remove it
description:
  - Manages the HA resource C(ct:<vmid>) in C(/cluster/ha/resources). The resource is looked up in the list (a GET of
    a missing resource is not a reliable "not found").
  - O(state=present) adds the resource when it is missing (C(POST)), or changes only the settings that differ
    (C(PUT)). O(state=absent) removes it (C(DELETE)) when it is there; the container keeps running or stopped as it is.
  - HA calls are synchronous (no task). With O(wait=true) the module then waits until the container's status matches
    the requested state (C(running) for V(started), C(stopped) for V(stopped) and V(disabled)).
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
    support: full
options:
  vmid:
    description: vmid of the container; the HA resource is C(ct:<vmid>).
    type: int
    required: true
  state:
    description: Whether the HA resource exists.
    type: str
    choices: [present, absent]
    default: present
  requested_state:
    description: Requested state of the HA resource (O(state=present)).
    type: str
    choices: [started, stopped, disabled]
    default: started
  max_restart:
    description:
      - Tries to restart the container on its node after a failed start.
      - Omitted, left as it is (PVE's default is 1).
    type: int
  max_relocate:
    description:
      - Tries to relocate the container to another node after a failed start.
      - Omitted, left as it is (PVE's default is 1).
    type: int
  comment:
    description: Comment of the HA resource. Omitted, left as it is.
    type: str
  wait:
    description:
      - Wait until the container's status matches O(requested_state) (O(state=present) only).
      - The HA resource's settings are cluster-wide and are set even while the container's node is down; the wait
        then lasts until the HA manager moved the container (at most O(relocation_timeout)) and it reached the state.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Put the site's container under HA, started
  proxmoxwp.hosting.proxmoxwp_ha_resource:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    requested_state: started
    max_restart: 2
    comment: site-42
    wait: true
  delegate_to: localhost

- name: Suspend the site by stopping it through HA
  proxmoxwp.hosting.proxmoxwp_ha_resource:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    requested_state: stopped
    wait: true
  delegate_to: localhost

- name: Take it out of HA
  proxmoxwp.hosting.proxmoxwp_ha_resource:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
sid:
  description: The HA resource id.
  returned: always
  type: str
  sample: "ct:105"
state:
  description: Requested state of the HA resource at the end, or null when there is none.
  returned: always
  type: str
  sample: started
status:
  description: Status of the container at the end, when O(wait=true).
  returned: when wait is true and state is present
  type: str
  sample: running
diff:
  description: The settings that changed, as C(before) and C(after).
  returned: changed
  type: dict
  sample: {before: {state: started}, after: {state: stopped}}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    MissingContainer,
    as_int,
    check_mode_missing,
    find_container,
    ha_resource,
    ha_sid,
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

TARGET = {"started": "running", "stopped": "stopped", "disabled": "stopped"}


def differences(params, current):
    before, after = {}, {}
    wanted = {
        "state": params["requested_state"],
        "max_restart": params["max_restart"],
        "max_relocate": params["max_relocate"],
        "comment": params["comment"],
    }
    for key, value in wanted.items():
        if value is None:
            continue
        have = current.get(key)
        if key in ("max_restart", "max_relocate"):
            have = as_int(have)
            if have is None:
                have = 1
        elif key == "comment":
            have = have or ""
        if have != value:
            before[key], after[key] = have, value
    return before, after


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            vmid={"type": "int", "required": True},
            state={"type": "str", "default": "present", "choices": ["present", "absent"]},
            requested_state={"type": "str", "default": "started", "choices": ["started", "stopped", "disabled"]},
            max_restart={"type": "int"},
            max_relocate={"type": "int"},
            comment={"type": "str"},
            wait={"type": "bool", "default": False},
            **relocation_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for key in ("max_restart", "max_relocate"):
        if p[key] is not None and p[key] < 0:
            module.fail_json(msg=f"{key} must not be negative")
    client = connect(module)
    vmid = p["vmid"]
    sid = ha_sid(vmid)
    path = "/cluster/ha/resources"
    result = {"changed": False, "sid": sid}
    try:
        current = ha_resource(client, vmid)
        result["state"] = current.get("state") if current else None
        if p["state"] == "absent":
            if current is not None:
                result.update(changed=True, state=None, diff={"before": {"sid": sid}, "after": {}})
                if not module.check_mode:
                    client.delete(f"{path}/{sid}")
            module.exit_json(**result)
        try:
            guest = find_container(client, vmid)
        except MissingContainer:
            if not module.check_mode or current is not None:
                raise
            check_mode_missing(module, vmid)
            guest = None
        if current is None:
            after = {"sid": sid, "state": p["requested_state"]}
            for key in ("max_restart", "max_relocate", "comment"):
                if p[key] is not None:
                    after[key] = p[key]
            result.update(changed=True, state=p["requested_state"], diff={"before": {}, "after": after})
            if not module.check_mode:
                client.post(path, **after)
        else:
            before, after = differences(p, current)
            if after:
                result.update(changed=True, state=p["requested_state"], diff={"before": before, "after": after})
                if not module.check_mode:
                    client.put(f"{path}/{sid}", **after)
        if p["wait"] and not module.check_mode and guest is not None:
            status = client.wait_ct_status(
                guest["node"],
                vmid,
                TARGET[p["requested_state"]],
                resolve_node=lambda v: find_settled(client, v, warn=module.warn, timeout=p["relocation_timeout"])[
                    "node"
                ],
            )
            result["status"] = status.get("status")
    except PveApiError as exc:
        module.fail_json(msg=exc.message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

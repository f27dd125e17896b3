#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_power
short_description: Start, stop or restart a Proxmox VE container, through its HA resource when it has one
description:
  - A container that is an HA resource (C(ct:<vmid>) in C(/cluster/ha/resources)) is started and stopped by setting
    the requested state of its HA resource (C(PUT /cluster/ha/resources/ct:<vmid>)); stopping it directly would
    only make the HA manager start it again. The module then waits until the container's status matches.
  - Any other container is started or stopped with C(status/start) or C(status/stop) (a hard stop); the task is
    waited for and the status confirmed.
  - V(restarted) reboots a running container (C(status/reboot); through HA, stopped then started) and starts a
    stopped one. It always reports a change.
  - Idempotent for V(started) and V(stopped); PVE refuses to start a running or stop a stopped container, so the
    status is read first.
  - The container's node is read from C(/cluster/resources); when that node failed, the module waits (up to
    O(relocation_timeout)) for the HA manager to move the container, then acts on the new node (RV(node)).
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_relocation
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is changed; RV(status) is the status the container would reach.
  diff_mode:
    support: none
options:
  vmid:
    description: vmid of the container.
    type: int
    required: true
  node:
    description:
      - Node the container is expected on. Optional; the node is always taken from C(/cluster/resources) (a warning
        says so when it differs, for example after an HA relocation).
    type: str
  state:
    description: The power state to reach.
    type: str
    required: true
    choices: [started, stopped, restarted]
"""

EXAMPLES = r"""
- name: Start the site's container (through HA when it is an HA resource)
  proxmoxwp.hosting.proxmoxwp_lxc_power:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    state: started
  delegate_to: localhost

- name: Restart it
  proxmoxwp.hosting.proxmoxwp_lxc_power:
    api: "{{ proxmoxwp_pve_api }}"
    vmid: 105
    node: pve1
    state: restarted
  delegate_to: localhost
"""

RETURN = r"""
status:
  description: Status of the container at the end (C(running) or C(stopped)).
  returned: always
  type: str
  sample: running
ha_state:
  description: Requested state of the container's HA resource at the end, or null when it is not an HA resource.
  returned: always
  type: str
  sample: started
vmid:
  description: vmid of the container.
  returned: always
  type: int
  sample: 105
node:
  description: Node of the container at the end (another one than given after an HA relocation).
  returned: always
  type: str
  sample: pve1
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    MissingContainer,
    check_mode_missing,
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

TARGET = {"started": "running", "stopped": "stopped"}


class Power:
    def __init__(self, module, client, vmid, node):
        self.module = module
        self.client = client
        self.vmid = vmid
        self.node = node

    @property
    def path(self):
        return f"/nodes/{self.node}/lxc/{self.vmid}"

    def _resolve(self, vmid):
        """The container's node again (status/current failed: its node may have failed and HA moved it)."""
        self.node = find_settled(
            self.client, vmid, warn=self.module.warn, timeout=self.module.params["relocation_timeout"]
        )["node"]
        return self.node

    def wait(self, status):
        current = self.client.wait_ct_status(self.node, self.vmid, status, resolve_node=self._resolve)
        return current.get("status")

    def ha_set(self, state):
        self.client.put(f"/cluster/ha/resources/{ha_sid(self.vmid)}", state=state)
        return self.wait(TARGET[state])

    def direct(self, action, status):
        self.client.run("POST", f"{self.path}/status/{action}", f"{action} of CT {self.vmid}")
        return self.wait(status)


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            vmid={"type": "int", "required": True},
            node={"type": "str"},
            state={"type": "str", "required": True, "choices": ["started", "stopped", "restarted"]},
            **relocation_argument_spec(),
        ),
        supports_check_mode=True,
    )
    client = connect(module)
    vmid, state = module.params["vmid"], module.params["state"]
    result = {"changed": False, "vmid": vmid}
    try:
        try:
            guest = find_settled(
                client, vmid, module.params["node"], warn=module.warn, timeout=module.params["relocation_timeout"]
            )
        except MissingContainer:
            if not module.check_mode:
                raise
            check_mode_missing(module, vmid)
            status = "stopped" if state == "stopped" else "running"
            module.exit_json(changed=True, vmid=vmid, node=module.params["node"], status=status, ha_state=None)
        power = Power(module, client, vmid, guest["node"])
        result["node"] = guest["node"]
        status = client.ct_status(power.node, vmid).get("status")
        ha = ha_resource(client, vmid)
        ha_state = ha.get("state") if ha else None
        result.update(status=status, ha_state=ha_state)
        if state in TARGET:
            wanted = TARGET[state]
            needs_ha = ha is not None and ha_state != state
            if status == wanted and not needs_ha:
                module.exit_json(**result)
            result.update(changed=True, status=wanted, ha_state=state if ha else None)
            if module.check_mode:
                module.exit_json(**result)
            if ha is not None:
                if needs_ha:
                    result["status"] = power.ha_set(state)
                else:
                    # Already requested; the HA manager is on its way.
                    result["status"] = power.wait(wanted)
            elif wanted == "running":
                result["status"] = power.direct("start", "running")
            else:
                result["status"] = power.direct("stop", "stopped")
        else:
            result.update(changed=True, status="running", ha_state="started" if ha else None)
            if module.check_mode:
                module.exit_json(**result)
            if ha is not None:
                if status == "running" or ha_state == "started":
                    power.ha_set("stopped")
                result["status"] = power.ha_set("started")
            elif status == "running":
                result["status"] = power.direct("reboot", "running")
            else:
                result["status"] = power.direct("start", "running")
        result["node"] = power.node
    except PveApiError as exc:
        module.fail_json(msg=exc.message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

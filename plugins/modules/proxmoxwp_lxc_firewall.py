#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_firewall
short_description: Hold a Proxmox VE container's firewall to a given set of rules, policies and IP filter
description:
  - Makes the container's own firewall (C(/nodes/{node}/lxc/{vmid}/firewall)) exactly what is asked for, through the
    Proxmox VE API, and reports a change only when something differed.
  - O(state=present) sets C(firewall=1) on C(net0) (C(PUT config); PVE filters a network device only with it), the
    IP set C(ipfilter-net0) holding only O(address) (PVE's IP filter then drops whatever the container sends from
    another address, and its ARP for one), the rules in the order of O(rules), and the options C(enable),
    C(ipfilter), C(policy_in), C(policy_out). The options come last, so the firewall is never on without its
    rules.
  - PVE puts a new rule first whatever position it is given; when the rules differ in any way, the module deletes
    the container's rules and creates the wanted ones last to first.
  - O(state=absent) turns the container's firewall off (C(enable=0)) and removes its rules and the IP set;
    C(net0) keeps its flag. Destroying a container removes its firewall config anyway (PVE's C(remove_vmfw_conf)).
  - The rules do nothing while the datacenter firewall is off (Datacenter > Firewall > Options); the module then
    warns, and C(proxmoxwp doctor) names it.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  vmid:
    description: vmid of the container.
    type: int
    required: true
  state:
    description: Whether the container's firewall is on with these rules, or off and empty.
    type: str
    choices: [present, absent]
    default: present
  address:
    description:
      - The one address the container may use (the IP set C(ipfilter-net0)). Left out, the address of C(net0)'s
        C(ip=).
    type: str
  ipfilter:
    description: Turn PVE's IP filter on (the container may send only from O(address)).
    type: bool
    default: true
  policy_in:
    description: What happens to incoming traffic no rule accepts.
    type: str
    choices: [ACCEPT, REJECT, DROP]
    default: DROP
  policy_out:
    description: What happens to outgoing traffic no rule accepts.
    type: str
    choices: [ACCEPT, REJECT, DROP]
    default: DROP
  rules:
    description:
      - The container's rules, first match wins. Each is enabled.
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: C(in) (to the container) or C(out) (from it).
        type: str
        required: true
        choices: [in, out]
      action:
        description: What the rule does.
        type: str
        required: true
        choices: [ACCEPT, REJECT, DROP]
      proto:
        description: IP protocol (C(tcp), C(udp), ...); needed with O(rules[].dport).
        type: str
      dport:
        description: Destination ports (C(80), C(80,443), C(8000:8080)).
        type: str
      source:
        description: Source address, network or list.
        type: str
      dest:
        description: Destination address, network or list.
        type: str
      macro:
        description: A PVE firewall macro (C(DNS), C(Web)) instead of proto and ports.
        type: str
      iface:
        description: The container's interface (C(net0)); left out, all.
        type: str
      comment:
        description: What the rule is for, shown in PVE's firewall view.
        type: str
"""

EXAMPLES = r"""
- name: Let in only the proxy and the controller, and out only DNS and the web
  proxmoxwp.hosting.proxmoxwp_lxc_firewall:
    vmid: 105
    rules:
      - {type: in, action: ACCEPT, proto: tcp, dport: "80", source: 10.77.0.2, comment: the proxy}
      - {type: in, action: ACCEPT, proto: tcp, dport: "22", source: 10.77.0.3, comment: the controller}
      - {type: out, action: ACCEPT, proto: udp, dport: "53", dest: 10.77.0.1, comment: DNS}
      - {type: out, action: DROP, dest: 10.77.0.0/16, comment: no other site}
      - {type: out, action: ACCEPT, proto: tcp, dport: "80,443", comment: web}
  delegate_to: localhost
"""

RETURN = r"""
vmid:
  description: vmid of the container.
  returned: always
  type: int
  sample: 105
node:
  description: Node of the container.
  returned: when the container exists
  type: str
  sample: pve1
address:
  description: The address the IP filter allows.
  returned: O(state=present)
  type: str
  sample: 10.77.0.105
rules:
  description: The rules the container has at the end, first to last, as the module compares them.
  returned: always
  type: list
  elements: dict
datacenter_enabled:
  description: Whether the datacenter firewall is on (without it no guest rule applies).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    MissingContainer,
    as_bool,
    as_int,
    check_mode_missing,
    find_container,
    parse_props,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)

IPSET = "ipfilter-net0"  # the name PVE's IP filter reads for net0
RULE_FIELDS = ("type", "action", "macro", "proto", "dport", "source", "dest", "iface", "comment")
ACTIONS = ["ACCEPT", "REJECT", "DROP"]


def wanted_rule(rule):
    """A rule as PVE lists it back: its fields that are set, enabled."""
    out = {key: str(rule[key]) for key in RULE_FIELDS if rule.get(key) not in (None, "")}
    out["enable"] = 1
    return out


def current_rule(entry):
    out = {key: str(entry[key]) for key in RULE_FIELDS if entry.get(key) not in (None, "")}
    out["enable"] = as_int(entry.get("enable")) or 0
    return out


def with_firewall_flag(net0):
    """net0's property string with firewall=1, or None when it has it already."""
    props = parse_props(net0)[1]
    if as_bool(props.get("firewall")):
        return None
    parts = [part for part in str(net0).split(",") if part and not part.startswith("firewall=")]
    return ",".join([*parts, "firewall=1"])


class Firewall:
    def __init__(self, module, client, node, vmid):
        self.module = module
        self.client = client
        self.base = f"/nodes/{node}/lxc/{vmid}"
        self.fw = f"{self.base}/firewall"
        self.before = {}
        self.after = {}

    def change(self, key, before, after):
        self.before[key], self.after[key] = before, after

    def send(self, method, path, **params):
        if not self.module.check_mode:
            getattr(self.client, method)(path, **params)

    # ---------------------------------------------------------------------------------------------- parts

    def net0(self, config):
        net0 = config.get("net0")
        if not net0:
            raise PveApiError(f"CT {self.base.rsplit('/', 1)[1]} has no net0 to filter")
        flagged = with_firewall_flag(net0)
        if flagged is not None:
            self.change("net0", net0, flagged)
            self.send("put", f"{self.base}/config", net0=flagged)

    def ipset(self, address):
        """ipfilter-net0 holding only address; address None: no such IP set."""
        exists = any(entry.get("name") == IPSET for entry in self.client.get(f"{self.fw}/ipset") or [])
        have = sorted(str(e.get("cidr")) for e in self.client.get(f"{self.fw}/ipset/{IPSET}") or []) if exists else None
        wanted = [address] if address else None
        if have == wanted:
            return
        self.change(IPSET, have, wanted)
        if wanted is None:
            self.send("delete", f"{self.fw}/ipset/{IPSET}", force=1)
            return
        if not exists:
            self.send("post", f"{self.fw}/ipset", name=IPSET, comment="ProxmoxWP: the site's own address")
        for cidr in have or []:
            if cidr not in wanted:
                self.send("delete", f"{self.fw}/ipset/{IPSET}/{cidr}")
        for cidr in wanted:
            if cidr not in (have or []):
                self.send("post", f"{self.fw}/ipset/{IPSET}", cidr=cidr)

    def rules(self, wanted):
        have = [current_rule(entry) for entry in sorted(self.client.get(f"{self.fw}/rules") or [], key=_pos)]
        if have == wanted:
            return have
        self.change("rules", have, wanted)
        for pos in reversed(range(len(have))):
            self.send("delete", f"{self.fw}/rules/{pos}")
        for rule in reversed(wanted):
            self.send("post", f"{self.fw}/rules", **rule)
        return wanted

    def options(self, wanted):
        have = self.client.get(f"{self.fw}/options") or {}
        differ = {key: value for key, value in wanted.items() if _option(have.get(key)) != value}
        if differ:
            self.change("options", {key: _option(have.get(key)) for key in differ}, differ)
            self.send("put", f"{self.fw}/options", **differ)


def _pos(entry):
    return as_int(entry.get("pos")) or 0


def _option(value):
    """An option as PVE gives it back (booleans as 0/1), or None when unset."""
    number = as_int(value)
    return number if number is not None else value


def container_address(config):
    ip = parse_props(config.get("net0"))[1].get("ip", "")
    address = ip.split("/", 1)[0]
    return address if address and address not in ("dhcp", "manual") else None


def main():
    rule_spec = {
        "type": {"type": "str", "required": True, "choices": ["in", "out"]},
        "action": {"type": "str", "required": True, "choices": ACTIONS},
        "proto": {"type": "str"},
        "dport": {"type": "str"},
        "source": {"type": "str"},
        "dest": {"type": "str"},
        "macro": {"type": "str"},
        "iface": {"type": "str"},
        "comment": {"type": "str"},
    }
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            vmid={"type": "int", "required": True},
            state={"type": "str", "default": "present", "choices": ["present", "absent"]},
            address={"type": "str"},
            ipfilter={"type": "bool", "default": True},
            policy_in={"type": "str", "default": "DROP", "choices": ACTIONS},
            policy_out={"type": "str", "default": "DROP", "choices": ACTIONS},
            rules={"type": "list", "elements": "dict", "default": [], "options": rule_spec},
        ),
        supports_check_mode=True,
    )
    p = module.params
    client = connect(module)
    vmid = p["vmid"]
    result = {"changed": False, "vmid": vmid, "rules": []}
    try:
        datacenter = client.get("/cluster/firewall/options") or {}
        result["datacenter_enabled"] = bool(as_int(datacenter.get("enable")))
        try:
            guest = find_container(client, vmid)
        except MissingContainer:
            if not module.check_mode or p["state"] == "absent":
                if p["state"] == "absent":
                    module.exit_json(**result)  # PVE removed its firewall config with it
                raise
            check_mode_missing(module, vmid)
            module.exit_json(changed=True, **{k: v for k, v in result.items() if k != "changed"})
        result["node"] = guest["node"]
        firewall = Firewall(module, client, guest["node"], vmid)
        if p["state"] == "absent":
            firewall.options({"enable": 0})
            result["rules"] = firewall.rules([])
            firewall.ipset(None)
        else:
            config = client.get(f"{firewall.base}/config") or {}
            address = p["address"] or container_address(config)
            if p["ipfilter"] and not address:
                module.fail_json(msg=f"CT {vmid} has no static address on net0: give address for the IP filter")
            result["address"] = address
            firewall.ipset(address if p["ipfilter"] else None)
            result["rules"] = firewall.rules([wanted_rule(rule) for rule in p["rules"]])
            firewall.options(
                {
                    "enable": 1,
                    "ipfilter": 1 if p["ipfilter"] else 0,
                    "policy_in": p["policy_in"],
                    "policy_out": p["policy_out"],
                }
            )
            firewall.net0(config)
            if not result["datacenter_enabled"]:
                module.warn(
                    "The datacenter firewall is off, so no container's rules apply: turn it on in Datacenter > "
                    "Firewall > Options, or `pvesh set /cluster/firewall/options --enable 1`"
                )
        if firewall.after:
            result.update(changed=True, diff={"before": firewall.before, "after": firewall.after})
    except PveApiError as exc:
        module.fail_json(msg=exc.message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

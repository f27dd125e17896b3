#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_pve_check
short_description: Check that a Proxmox VE cluster has what ProxmoxWP's sites need
description:
  - Asks the Proxmox VE API, without changing anything, whether a site could be made there; each finding says in an
    operator's words what is wrong and how to fix it. It is what C(proxmoxwp doctor) runs (playbooks/doctor.yml).
  - The API answers, its certificate is trusted (O(api.ca_file) or O(api.fingerprint)) and the token is valid (with
    O(api.hosts), each host on its own, one finding per host, naming the host that does not answer); the
    token holds every privilege the collection's modules need, on the paths they use (C(GET /access/permissions));
    every node is online; the container storage exists on every node with the content type C(rootdir); the
    template is on the creating node's template storage; the container bridge exists on every node; the HA
    placement named, if any, exists (an HA group before Proxmox VE 9, a node-affinity rule from 9 on); with
    O(firewall), the datacenter firewall is on (without it no container's rules apply); with O(network), the
    address pool (O(addresses)) is valid, has free addresses, and no guest that is not one of ProxmoxWP's (tag
    C(proxmoxwp)) has an address of it configured.
  - A finding never fails the task; the task fails only on wrong options.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_addresses
  - proxmoxwp.hosting.attributes
  - proxmoxwp.hosting.attributes.info_module
options:
  node:
    description: The node new containers are created on.
    type: str
    required: true
  storage:
    description: The storage of the containers' disks.
    type: str
    required: true
  ostemplate:
    description: The template new containers are made from, as a volume id (C(local:vztmpl/<file>)).
    type: str
    required: true
  bridge:
    description: The bridge the containers' network device is on.
    type: str
    required: true
  ha_placement:
    description:
      - The HA group (Proxmox VE 8) or node-affinity rule (Proxmox VE 9) the sites are placed with; none is checked
        when left out.
    type: str
  privileged:
    description: Whether the containers are privileged (creating one then needs C(Sys.Modify) on C(/)).
    type: bool
    default: false
  firewall:
    description:
      - Whether the sites are isolated by their containers' firewall (the inventory's C(proxmoxwp_ct_firewall)); the
        datacenter firewall must then be on. Off, the finding C(pve.firewall) says the sites are not isolated.
    type: bool
    default: false
  network:
    description: The containers' network (CIDR); the address pool (finding C(pve.addresses)) is checked only when given.
    type: str
  gateway:
    description: The containers' gateway, never handed out.
    type: str
"""

EXAMPLES = r"""
- name: Check the cluster
  proxmoxwp.hosting.proxmoxwp_pve_check:
    node: pve1
    storage: drbd1
    ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    bridge: vmbr0
  register: cluster

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ cluster.checks | rejectattr('ok') | map(attribute='summary') | list }}"
"""

RETURN = r"""
checks:
  description:
    - One entry per check, in the order they ran. A check that could not run because an earlier one failed (no
      answer from the API) is left out.
    - C(id) (str, for example C(pve.api) or C(pve.privileges); C(pve.api@<host>:<port>) for each entry of
      O(api.hosts)), C(ok) (bool), C(summary) (what was found) and C(fix) (how to fix it; empty when C(ok)).
  returned: always
  type: list
  elements: dict
  sample:
    - {id: pve.api, ok: true, summary: "Proxmox VE 8.4.1 answers at pve.example.net:8006 with the token.", fix: ""}
version:
  description: The Proxmox VE version the API reported, or null when it did not answer.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_address import (  # noqa: E402
    AddressPool,
    address_argument_spec,
    describe,
    guest_addresses,
    guest_label,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_findings import finding  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    PROJECT_TAG,
    parse_tags,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_privileges import (  # noqa: E402
    needed_privileges,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    CONNECT_TIMEOUT,
    PveApiError,
    PveClient,
    api_argument_spec,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import KNOWN  # noqa: E402


def check_api(client, check_id="pve.api", listed=False):
    """The version, or a finding that the API does not answer, is not trusted or does not take the token. `listed`:
    the host is one entry of api.hosts, checked on its own."""
    try:
        version = client.get("/version")
    except PveApiError as exc:
        if exc.status == 401:
            fix = (
                "Check api.token_id and api.token_secret (Datacenter > Permissions > API Tokens); a token shown once "
                "at creation cannot be read again, make a new one if it is lost."
            )
        elif "TLS verification" in exc.message and listed:
            fix = (
                f"Each node has its own certificate (/etc/pve/nodes/<node>/pve-ssl.pem): pin {client.where}'s own "
                "in its api.hosts entry (fingerprint: `openssl x509 -noout -fingerprint -sha256 -in "
                "/etc/pve/local/pve-ssl.pem` on that node), or give ca_file the cluster's CA "
                "(/etc/pve/pve-root-ca.pem), which signed every node's."
            )
        elif "TLS verification" in exc.message:
            fix = (
                "Pin the certificate with api.fingerprint (Proxmox VE > node > System > Certificates, or "
                "`openssl x509 -noout -fingerprint -sha256 -in /etc/pve/local/pve-ssl.pem`), or give api.ca_file."
            )
        elif listed:
            fix = (
                f"Bring the API of {client.where} back (`systemctl status pveproxy` on that node; is the node up?), "
                "check its host and port in api.hosts and that the controller reaches it; if the node left the "
                "cluster, remove it from api.hosts. Meanwhile the modules ask the other hosts."
            )
        else:
            fix = "Check api.host and api.port, and that the controller reaches the cluster on that port (8006)."
        return None, finding(check_id, False, exc.message, fix)
    text = str(version.get("version", "?"))
    return text, finding(check_id, True, f"Proxmox VE {text} answers at {client.where} with the token.")


def check_hosts(client, api, task_timeout):
    """With api.hosts, each host on its own (one finding each, `pve.api@<host>:<port>`): it answers, through its pin
    or CA, with the token. The version of the first that answered, or None."""
    version = None
    checks = []
    for host in client.hosts:
        alone = dict(api, hosts=None, host=host.host, port=host.port)
        # a host that drops packets holds the doctor no longer than the modules' connect timeout per try
        alone.update(fingerprint=host.fingerprint, ca_file=host.ca_file, timeout=min(client.timeout, CONNECT_TIMEOUT))
        answered, checked = check_api(PveClient(alone, task_timeout), f"pve.api@{host.where}", listed=True)
        version = version or answered
        checks.append(checked)
    return version, checks


def _major(version):
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def effective(answer, path):
    """The privileges held on `path`, from an answer of GET /access/permissions (privilege: 1 when it propagates,
    0 when it does not). Its own entry counts whatever the flag; else the nearest parent's propagating ones."""
    if path in answer:
        return set(answer[path] or {})
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        if path in answer:
            return {name for name, propagates in (answer[path] or {}).items() if propagates}
    return set()


def check_privileges(client, token_id, wanted):
    """Each (path, privilege) the modules need, against the token's effective privileges on that path."""
    answers = {}
    missing = []
    for need in wanted:
        path = need["path"]
        if path not in answers:
            answers[path] = effective(client.get("/access/permissions", path=path) or {}, path)
        if need["privilege"] not in answers[path]:
            missing.append(need)
    if not missing:
        return finding("pve.privileges", True, f"The token {token_id} holds the {len(wanted)} privileges needed.")
    by_path = {}
    for item in missing:
        by_path.setdefault(item["path"], []).append(item["privilege"])
    listed = "; ".join("{} on {}".format(", ".join(privileges), path) for path, privileges in by_path.items())
    if len(missing) <= 3:
        listed += " (needed by {})".format("; ".join(item["why"] for item in missing))
    privileges = ",".join(sorted({m["privilege"] for m in missing}))
    return finding(
        "pve.privileges",
        False,
        f"The token {token_id} lacks {listed}.",
        f"Add {privileges} to the token's role (`pveum role modify <role> --append 1 --privs {privileges}`), and "
        "make sure the role is granted to both the user and the token on / (a token with privilege separation has "
        "only what both hold).",
    )


def check_nodes(client, node):
    nodes = client.get("/nodes") or []
    online = sorted(n["node"] for n in nodes if n.get("status") == "online")
    offline = sorted(n["node"] for n in nodes if n.get("status") != "online")
    if node not in online + offline:
        return online, finding(
            "pve.nodes",
            False,
            f"The node {node} is not in the cluster (nodes: {', '.join(online + offline) or 'none'}).",
            "Set proxmoxwp_pve_node to one of the cluster's nodes.",
        )
    if offline:
        return online, finding(
            "pve.nodes",
            False,
            f"The nodes {', '.join(offline)} are not online.",
            "Bring them back (or remove them from the cluster): HA cannot move sites to a node that is down.",
        )
    return online, finding("pve.nodes", True, f"Every node is online: {', '.join(online)}.")


def check_storage(client, nodes, storage):
    wrong = []
    for node in nodes:
        found = {s["storage"]: s for s in client.get(f"/nodes/{node}/storage") or []}
        entry = found.get(storage)
        if entry is None:
            wrong.append(f"{node} has no storage {storage}")
        elif "rootdir" not in str(entry.get("content", "")).split(","):
            wrong.append(f"{storage} on {node} does not hold container disks (content {entry.get('content')})")
        elif not entry.get("active", 1) or not entry.get("enabled", 1):
            wrong.append(f"{storage} on {node} is not active")
    if wrong:
        return finding(
            "pve.storage",
            False,
            "; ".join(wrong) + ".",
            f"Add the storage {storage} to every node with the content 'Container' (rootdir) "
            "(Datacenter > Storage), or set proxmoxwp_pve_storage to a storage that has it.",
        )
    return finding("pve.storage", True, f"The storage {storage} holds container disks on every node.")


def check_template(client, node, ostemplate):
    template_storage = ostemplate.partition(":")[0]
    content = client.get(f"/nodes/{node}/storage/{template_storage}/content", content="vztmpl") or []
    if any(item.get("volid") == ostemplate for item in content):
        return finding("pve.template", True, f"The template {ostemplate} is on {node}.")
    return finding(
        "pve.template",
        False,
        f"The template {ostemplate} is not on the storage {template_storage} of {node}.",
        "Upload the golden image (`proxmoxwp image build`, then `proxmoxwp image upload`; for a Debian template "
        "`pveam download`), or set proxmoxwp_pve_ostemplate to a template there.",
    )


def check_bridge(client, nodes, bridge):
    lacking = [
        node
        for node in nodes
        if bridge not in {i.get("iface") for i in client.get(f"/nodes/{node}/network", type="any_bridge") or []}
    ]
    if lacking:
        return finding(
            "pve.bridge",
            False,
            f"The bridge {bridge} is missing on {', '.join(lacking)}.",
            f"Create {bridge} on those nodes (node > System > Network), or set proxmoxwp_ct_bridge: HA moves sites "
            "to any node, and a container cannot start where its bridge is missing.",
        )
    return finding("pve.bridge", True, f"The bridge {bridge} exists on every node.")


def check_firewall(client, wanted):
    """Guest rules apply only while the datacenter firewall is on (its `enable` is 0, or the time it was set on)."""
    if not wanted:
        return finding(
            "pve.firewall",
            True,
            "The sites' containers have no firewall (proxmoxwp_ct_firewall.enabled is false): they can reach each "
            "other.",
        )
    try:
        options = client.get("/cluster/firewall/options") or {}
    except PveApiError as exc:
        # a token without Sys.Audit on / may not read them: pve.privileges names the grant
        return finding(
            "pve.firewall",
            False,
            f"Whether the datacenter firewall is on could not be read: {exc.message}",
            "Grant what pve.privileges names; this check then says whether the firewall is on.",
        )
    try:
        enabled = int(options.get("enable") or 0) > 0
    except (TypeError, ValueError):
        enabled = False
    if not enabled:
        return finding(
            "pve.firewall",
            False,
            "The datacenter firewall is off, so the sites' firewall rules do not apply: sites can reach each other.",
            "Turn it on: Datacenter > Firewall > Options > Firewall: Yes, or `pvesh set /cluster/firewall/options "
            "--enable 1` on a node (first allow 8006 and 22 to the nodes from where you manage them).",
        )
    return finding("pve.firewall", True, "The datacenter firewall is on: each site's rules apply.")


def check_addresses(client, network, gateway, addresses):
    """The pool is valid and has room, and no guest outside the project has configured one of its addresses."""
    fix = "Set proxmoxwp_ct_addresses: ranges (FIRST-LAST or CIDR) inside proxmoxwp_ct_network, and exclude."
    try:
        pool = AddressPool(network, gateway, addresses.get("ranges"), addresses.get("exclude"))
    except ValueError as exc:
        return finding("pve.addresses", False, f"The address pool is not valid: {exc}.", fix)
    strangers, unread, used = [], [], set()
    for entry in client.get("/cluster/resources", type="vm") or []:
        if entry.get("status") not in KNOWN:  # its node does not answer
            unread.append(f"{guest_label(entry)} on {entry.get('node')}")
            continue
        ours = PROJECT_TAG in parse_tags(entry.get("tags"))
        for address in sorted(guest_addresses(client, entry)):
            if pool.usable(address):  # an excluded address is the operator's answer to such a guest already
                used.add(address)
                if not ours:
                    strangers.append(f"{address} ({guest_label(entry)})")
    total = free = 0
    for address in pool.candidates():
        total += 1
        free += address not in used
    where = describe(pool)
    if strangers:
        return finding(
            "pve.addresses",
            False,
            f"Guests that are not ProxmoxWP sites use addresses of the pool {where}: {', '.join(strangers)}. New "
            "sites skip them, but a guest's plan and the sites' overlap, and an address set inside a guest rather "
            "than in its Proxmox VE config is not seen at all.",
            "Move those guests out of the pool's ranges, or add their addresses to proxmoxwp_ct_addresses.exclude.",
        )
    if unread:
        return finding(
            "pve.addresses",
            False,
            f"The addresses of {', '.join(unread)} cannot be read: the node does not answer. New sites wait for the "
            "HA manager to move such guests, and fail when one will not move.",
            "Bring the node back.",
        )
    if not free:
        return finding("pve.addresses", False, f"Every address of the pool {where} is taken ({total}).", fix)
    return finding("pve.addresses", True, f"{free} of the {total} addresses of the pool {where} are free.")


def check_placement(client, version, placement):
    if _major(version) >= 9:
        names = {r.get("rule") for r in client.get("/cluster/ha/rules") or []}
        kind, where = "node-affinity rule", "Datacenter > HA > Affinity Rules"
    else:
        names = {g.get("group") for g in client.get("/cluster/ha/groups") or []}
        kind, where = "HA group", "Datacenter > HA > Groups"
    if placement in names:
        return finding("pve.ha_placement", True, f"The {kind} {placement} exists.")
    return finding(
        "pve.ha_placement",
        False,
        f"The {kind} {placement} does not exist (Proxmox VE {version}).",
        f"Create it ({where}) or change the placement the inventory names.",
    )


def run_checks(client, params):
    if params["api"].get("hosts"):
        version, checks = check_hosts(client, params["api"], params["task_timeout"])
    else:
        version, answered = check_api(client)
        checks = [answered]
    if version is None:
        return None, checks
    wanted = needed_privileges(
        storage=params["storage"],
        template_storage=params["ostemplate"].partition(":")[0],
        bridge=params["bridge"],
        privileged=params["privileged"],
    )
    checks.append(_guarded("pve.privileges", lambda: check_privileges(client, params["api"]["token_id"], wanted)))
    try:
        nodes, nodes_finding = check_nodes(client, params["node"])
    except PveApiError as exc:
        return version, [*checks, _error("pve.nodes", exc)]
    checks.append(nodes_finding)
    checks.append(_guarded("pve.storage", lambda: check_storage(client, nodes, params["storage"])))
    checks.append(_guarded("pve.template", lambda: check_template(client, params["node"], params["ostemplate"])))
    checks.append(_guarded("pve.bridge", lambda: check_bridge(client, nodes, params["bridge"])))
    checks.append(_guarded("pve.firewall", lambda: check_firewall(client, params["firewall"])))
    if params["network"]:
        addresses = (params["network"], params["gateway"], params["addresses"])
        checks.append(_guarded("pve.addresses", lambda: check_addresses(client, *addresses)))
    if params["ha_placement"]:
        checks.append(_guarded("pve.ha_placement", lambda: check_placement(client, version, params["ha_placement"])))
    return version, checks


def _error(check_id, exc):
    return finding(check_id, False, exc.message, "See the message: Proxmox VE refused the question.")


def _guarded(check_id, step):
    try:
        return step()
    except PveApiError as exc:
        return _error(check_id, exc)


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            node={"type": "str", "required": True},
            storage={"type": "str", "required": True},
            ostemplate={"type": "str", "required": True},
            bridge={"type": "str", "required": True},
            ha_placement={"type": "str"},
            privileged={"type": "bool", "default": False},
            firewall={"type": "bool", "default": False},
            network={"type": "str"},
            gateway={"type": "str"},
            **address_argument_spec(),
        ),
        supports_check_mode=True,
    )
    api = module.params["api"]
    missing = [name for name in ("host", "token_id", "token_secret") if not api.get(name)]
    if api.get("hosts"):
        missing = [name for name in missing if name != "host"]
    if missing:
        module.exit_json(
            changed=False,
            version=None,
            checks=[
                finding(
                    "pve.api",
                    False,
                    "The Proxmox VE connection lacks {}.".format(", ".join("api." + name for name in missing)),
                    "Set them in proxmoxwp_pve_api (the token secret in Ansible Vault) or in PROXMOXWP_PVE_* "
                    "variables.",
                )
            ],
        )
    try:
        client = PveClient(api, task_timeout=module.params["task_timeout"], warn=module.warn)
    except PveApiError as exc:
        module.exit_json(changed=False, version=None, checks=[finding("pve.api", False, exc.message, exc.message)])
    version, checks = run_checks(client, module.params)
    module.exit_json(changed=False, version=version, checks=checks)


if __name__ == "__main__":
    main()

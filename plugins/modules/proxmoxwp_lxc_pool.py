#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc_pool
short_description: Make, remove and hand over the warm pool's containers on Proxmox VE
description:
  - The warm pool (docs/pool.md) is containers made from a golden image ahead of time, with no site's identity, so
    that a new site only has to be given its own. Members carry the tags C(proxmoxwp), C(pool) and C(img-<digest>)
    of the image they were made from, and no C(svc-*) tag; they are found by those tags, without a database.
  - O(state=present) makes members on O(node) from O(ostemplate) until the node has O(count) members of that image,
    each with the lowest free address of the pool (O(addresses)), stopped. Starting them, their firewall and their
    checks are the playbook's (playbooks/pool_fill.yml).
  - O(state=absent) removes the members in O(vmids), or every member (of O(node), when given), with their disks. A
    vmid that is not a member (a site's container, or one already taken over) is never touched.
  - O(state=claimed) hands member O(vmid) over to service O(service_id) in one config change guarded by the config's
    digest, so two claims of one member cannot both win. It gets the service's tags, O(hostname) and
    O(description); its resources are proxmoxwp_lxc's to set. When the member cannot be given (gone, locked, not
    running, of another image, already taken) nothing changes and RV(claimed) is false with the reason, so that
    the caller makes the site's container anew. When the service already has its container (a retry), that is
    reported and nothing changes.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_container
  - proxmoxwp.hosting.proxmoxwp_addresses
  - proxmoxwp.hosting.proxmoxwp_relocation
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is made, removed or handed over; what would be is reported.
  diff_mode:
    support: none
options:
  state:
    description: Make members (V(present)), remove them (V(absent)) or hand one over to a site (V(claimed)).
    type: str
    choices: [present, absent, claimed]
    default: present
  node:
    description:
      - O(state=present) - the node to make members on. Required.
      - O(state=absent) - remove only the members on this node (when O(vmids) is not given).
    type: str
  count:
    description: O(state=present) - how many members of O(ostemplate) the node should have.
    type: int
    default: 1
  vmids:
    description: O(state=absent) - the members to remove. Omitted, every member (of O(node), when given).
    type: list
    elements: int
  vmid:
    description: O(state=claimed) - the member to hand over. Required.
    type: int
  service_id:
    description: O(state=claimed) - the service that takes the member over. Required.
    type: int
  hostname:
    description: O(state=claimed) - the site's host name. Required.
    type: str
  description:
    description: O(state=claimed) - the site container's description (notes).
    type: str
  ostemplate:
    description:
      - The golden image the members are made from. Required for O(state=present).
      - O(state=claimed) - when given, a member made from another image is not handed over.
    type: str
  disk_gb:
    description: Size of a new member's root disk in GiB; a site takes it over only if its plan's disk is as large.
    type: int
  cores:
    description: CPU cores of a new member.
    type: int
  memory:
    description: Memory of a new member in MiB.
    type: int
  swap:
    description: Swap of a new member in MiB.
    type: int
notes:
  - A member holds its address while it waits; the site that takes it over keeps that address (docs/pool.md).
  - Members are not HA resources and start on boot only if they were running; a site's HA resource is made when it
    takes a member over.
"""

EXAMPLES = r"""
- name: Keep two members of the golden image on pve1
  proxmoxwp.hosting.proxmoxwp_lxc_pool:
    node: pve1
    count: 2
    ostemplate: local:vztmpl/proxmoxwp-wordpress-golden.tar.zst
    storage: drbd1
    disk_gb: 10
    cores: 1
    memory: 1024
    network: 10.77.0.0/16
    gateway: 10.77.0.1
  register: pool

- name: Hand member 120 over to service 42
  proxmoxwp.hosting.proxmoxwp_lxc_pool:
    state: claimed
    vmid: 120
    service_id: 42
    hostname: site-42.example.com
    ostemplate: local:vztmpl/proxmoxwp-wordpress-golden.tar.zst

- name: Remove every member
  proxmoxwp.hosting.proxmoxwp_lxc_pool:
    state: absent
"""

RETURN = r"""
members:
  description:
    - The pool's members after the run (of O(node), when given), each with C(vmid), C(node), C(ip), C(image) (its
      C(img-*) tag), C(status) and C(lock).
  returned: state is present or absent
  type: list
  elements: dict
  sample: [{vmid: 120, node: pve1, ip: 10.77.1.9, image: img-3fa2b1c4d5e6, status: stopped, lock: null}]
created:
  description: The members made by this run (that would be, in check mode), as in RV(members).
  returned: state is present
  type: list
  elements: dict
removed:
  description: vmids of the members removed (that would be, in check mode).
  returned: state is absent
  type: list
  elements: int
claimed:
  description: Whether the member was handed over to the service.
  returned: state is claimed
  type: bool
reason:
  description: Why the member was not handed over.
  returned: state is claimed and claimed is false
  type: str
  sample: CT 120 is not running
vmid:
  description: The service's container after the run (the member handed over, or the one the service had).
  returned: state is claimed and the service has a container
  type: int
node:
  description: The node of the member handed over.
  returned: state is claimed and claimed is true
  type: str
  sample: pve1
ip:
  description: The address of the member handed over, which the site keeps (without its prefix).
  returned: state is claimed and claimed is true
  type: str
  sample: 10.77.1.9
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_address import (  # noqa: E402
    AddressPool,
    NoAddress,
    address_argument_spec,
    taken_address,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_create import (  # noqa: E402
    CreateFailed,
    container_argument_spec,
    container_params,
    create_container,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    PROJECT_TAG,
    as_int,
    container_ip,
    destroy_container,
    find_guest,
    format_tags,
    ha_resources,
    parse_tags,
    service_containers,
    service_tag,
    split_live,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pool import (  # noqa: E402
    IMAGE_TAG_PREFIX,
    MEMBER_HOSTNAME,
    POOL_TAG,
    describe_member,
    image_of,
    image_tag,
    is_member,
    pool_entries,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import (  # noqa: E402
    relocation_argument_spec,
)

PRESENT_REQUIRED = ("node", "ostemplate", "storage", "disk_gb", "network", "gateway")


class ModuleFailure(Exception):
    """Ends the module with this message (and the result so far)."""


def members(client, node=None):
    return [describe_member(client, entry) for entry in pool_entries(client, node)]


# ------------------------------------------------------------------- present


def fill(module, client, result):
    p = module.params
    image = image_tag(p["ostemplate"])
    have = [m for m in members(client, p["node"]) if m["image"] == image]
    try:
        pool = AddressPool(p["network"], p["gateway"], p["addresses"]["ranges"], p["addresses"]["exclude"])
    except ValueError as exc:
        raise ModuleFailure(f"Cannot make pool members: {exc}") from None
    created = result["created"] = []
    for _number in range(max(p["count"] - len(have), 0)):
        result["changed"] = True
        if module.check_mode:
            created.append({"vmid": None, "node": p["node"], "ip": None, "image": image, "status": None, "lock": None})
            continue
        try:
            with taken_address(client, pool, p["relocation_timeout"], module.warn) as ip:
                vmid = make_member(client, p, ip, image)
        except NoAddress as exc:
            raise ModuleFailure(f"Cannot make a pool member on {p['node']}: {exc}") from None
        created.append({"vmid": vmid, "node": p["node"], "ip": ip, "image": image, "status": "stopped", "lock": None})


def make_member(client, p, ip, image):
    description = f"ProxmoxWP warm pool member, made from {p['ostemplate']}; a new site takes it over."
    params = container_params(p, ip, MEMBER_HOSTNAME, description, [PROJECT_TAG, POOL_TAG, image], True)
    try:
        return create_container(client, p["node"], params, f"for the pool on {p['node']}", is_member)
    except CreateFailed as exc:
        raise ModuleFailure(str(exc)) from None


# -------------------------------------------------------------------- absent


def drain(module, client, result):
    p = module.params
    entries = pool_entries(client, p["node"] if p["vmids"] is None else None)
    if p["vmids"] is not None:
        wanted = set(p["vmids"])
        entries = [e for e in entries if as_int(e.get("vmid")) in wanted]
    result["removed"] = [as_int(e["vmid"]) for e in entries]
    if not entries:
        return
    result["changed"] = True
    if module.check_mode:
        return
    listing = ha_resources(client)
    for entry in entries:
        destroy_container(client, entry["node"], as_int(entry["vmid"]), listing)


# ------------------------------------------------------------------- claimed


def claim(module, client, result):
    p = module.params
    service_id, vmid = p["service_id"], p["vmid"]
    live, _archives = split_live(service_id, service_containers(client, service_id))
    if live is not None:
        result.update(claimed=False, vmid=as_int(live["vmid"]), reason=f"service {service_id} has its container")
        return
    entry = find_guest(client, vmid)
    reason = unusable(entry, vmid, p["ostemplate"])
    if reason:
        result.update(claimed=False, reason=reason)
        return
    path = "/nodes/{}/lxc/{}/config".format(entry["node"], vmid)
    config = client.get(path) or {}
    # the member's own tags go: from now on it is the site's container, as one made for it would be
    kept = [t for t in parse_tags(config.get("tags")) if t != POOL_TAG and not t.startswith(IMAGE_TAG_PREFIX)]
    result.update(claimed=True, changed=True, vmid=vmid, node=entry["node"], ip=container_ip(config))
    if module.check_mode:
        return
    try:
        client.run(
            "PUT",
            path,
            f"hand-over of CT {vmid} to service {service_id}",
            tags=format_tags([*kept, PROJECT_TAG, service_tag(service_id)]),
            hostname=p["hostname"],
            description=p["description"],
            digest=config.get("digest"),
        )
    except PveApiError as exc:
        if "detected modified configuration" in exc.message:  # PVE's words when the digest no longer matches
            result.update(claimed=False, changed=False, reason=f"CT {vmid} was changed meanwhile: {exc.message}")
            for key in ("vmid", "node", "ip"):
                result.pop(key)
            return
        raise


def unusable(entry, vmid, ostemplate):
    """Why CT `vmid` cannot be handed over, or None."""
    if entry is None:
        return f"CT {vmid} does not exist"
    tags = parse_tags(entry.get("tags"))
    if entry.get("type") != "lxc" or not is_member(tags):
        return f"CT {vmid} is not a member of the pool"
    if ostemplate and image_of(tags) != image_tag(ostemplate):
        return f"CT {vmid} was made from another image"
    if entry.get("lock"):
        return "CT {} is locked ({})".format(vmid, entry["lock"])
    if entry.get("status") != "running":
        return "CT {} is not running ({})".format(vmid, entry.get("status"))
    return None


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            state={"type": "str", "default": "present", "choices": ["present", "absent", "claimed"]},
            node={"type": "str"},
            count={"type": "int", "default": 1},
            vmids={"type": "list", "elements": "int"},
            vmid={"type": "int"},
            service_id={"type": "int"},
            hostname={"type": "str"},
            description={"type": "str"},
            ostemplate={"type": "str"},
            disk_gb={"type": "int"},
            cores={"type": "int"},
            memory={"type": "int"},
            swap={"type": "int"},
            **container_argument_spec(),
            **address_argument_spec(),
            **relocation_argument_spec(),
        ),
        required_if=[
            ("state", "present", PRESENT_REQUIRED),
            ("state", "claimed", ("vmid", "service_id", "hostname")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["count"] < 0:
        module.fail_json(msg="count cannot be negative")
    for key in ("disk_gb", "cores", "memory"):
        if p[key] is not None and p[key] < 1:
            module.fail_json(msg=f"{key} must be at least 1")
    client = connect(module)
    result = {"changed": False}
    try:
        if p["state"] == "present":
            fill(module, client, result)
        elif p["state"] == "absent":
            drain(module, client, result)
        else:
            claim(module, client, result)
        if p["state"] != "claimed":
            result["members"] = members(client, p["node"])
    except (PveApiError, ModuleFailure) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

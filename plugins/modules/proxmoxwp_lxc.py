#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_lxc
short_description: Create, size or remove the Proxmox VE container of a ProxmoxWP service
description:
  - The service's containers are found by their tags C(proxmoxwp) and C(svc-<service_id>) (see
    M(proxmoxwp.hosting.proxmoxwp_lxc_info)), so the module is idempotent without a database.
  - O(state=present) creates the live container when the service has none, or brings the existing one in line
    with O(cores), O(memory), O(swap), O(onboot), the C(suspended) tag and a larger O(disk_gb). It never starts
    the container.
  - A new container's address is the lowest free one of the pool (O(addresses)); when the pool has none left,
    or its settings are wrong, creation fails before anything is made. An existing container keeps its address.
  - On create without O(vmid), the module asks C(/cluster/nextid) and passes that id; when another client took
    it in the meantime (PVE answers "already exists"), it asks again (5 tries).
  - If the create task fails, the module makes sure no half-made container is left (PVE normally removes it;
    one still listed is destroyed).
  - A container disk cannot shrink; a smaller O(disk_gb) fails before any change.
  - O(ostemplate), O(description) and O(hostname) are used at creation only, as are the options of a new
    container (O(storage), O(network), ...). Creating needs O(node), O(hostname), O(ostemplate), O(storage),
    O(disk_gb), O(network) and O(gateway).
  - O(state=absent) removes every container of the service (live and archives), or only the one given as O(vmid),
    with its HA resource, its snapshots and its disks, stopping it first.
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
      - No change is made; what would change is reported, in RV(diff) too.
  diff_mode:
    support: full
options:
  state:
    description: Whether the service has a live container (V(present)) or no container at all (V(absent)).
    type: str
    choices: [present, absent]
    default: present
  service_id:
    description: The service id (Paymenter's numeric id); the containers carry the tag C(svc-<service_id>).
    type: int
    required: true
  create:
    description:
      - With V(false), a service without a live container is an error instead of a reason to create one (for
        operations that only change an existing site, such as resize and suspend).
    type: bool
    default: true
  node:
    description:
      - Node to create the container on. Required to create.
      - An existing container is left where it is.
    type: str
  vmid:
    description:
      - O(state=present) - vmid of the container to create. Without it, the next free id (C(/cluster/nextid)) is
        used. When the service already has a live container with another vmid, the module fails.
      - O(state=absent) - remove only this container of the service (for example an archive left without
        snapshots). A vmid that is not one of the service's containers removes nothing.
    type: int
  hostname:
    description: Host name of the container (creation only). Required to create.
    type: str
  ostemplate:
    description:
      - OS template volume, for example C(local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst) (creation only).
      - Required to create.
    type: str
  disk_gb:
    description:
      - Size of the root disk in GiB. Required to create.
      - An existing container's disk is grown to it (C(PUT resize)); a smaller value fails, a disk cannot shrink.
        Omitted, the disk is left as it is.
    type: int
  cores:
    description: CPU cores. Reconciled on an existing container. Omitted, PVE's default (all host cores) applies.
    type: int
  memory:
    description: Memory in MiB. Reconciled on an existing container. Omitted, PVE's default (512) applies.
    type: int
  swap:
    description: Swap in MiB. Reconciled on an existing container. Omitted, PVE's default (512) applies.
    type: int
  onboot:
    description:
      - Start the container when its node boots. Reconciled on an existing container when given.
      - Omitted, a new container gets V(true) and an existing one keeps its setting (a suspended site keeps
        V(false)).
    type: bool
  description:
    description: Description (notes) of the container (creation only).
    type: str
  suspended:
    description:
      - V(true) adds the C(suspended) tag, V(false) removes it, omitted leaves the tags as they are.
      - The tag only marks the site; stopping it is M(proxmoxwp.hosting.proxmoxwp_lxc_power)'s job.
    type: bool
  job_id:
    description:
      - Records on the container, as the tag C(job-<job_id>), the job whose action (a rollback, a restart) was
        carried out last, so that a retry of the same job can see that it is done. Replaces an earlier
        C(job-*) tag; omitted leaves it.
    type: int
notes:
  - Booleans are sent to PVE as 1/0; every task (UPID) is waited for and must end with exit status OK (C(WARNINGS)
    is accepted and reported as a warning).
"""

EXAMPLES = r"""
- name: Create or size the container of service 42
  proxmoxwp.hosting.proxmoxwp_lxc:
    api: "{{ proxmoxwp_pve_api }}"
    service_id: 42
    node: pve1
    hostname: site-42
    ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    storage: drbd1
    disk_gb: 10
    cores: 1
    memory: 1024
    swap: 512
    network: 10.77.0.0/16
    gateway: 10.77.0.1
    ssh_public_keys: "{{ lookup('file', 'files/deploy.pub') }}"
  register: ct
  delegate_to: localhost

- name: Mark the site suspended
  proxmoxwp.hosting.proxmoxwp_lxc:
    api: "{{ proxmoxwp_pve_api }}"
    service_id: 42
    node: pve1
    hostname: site-42
    ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    storage: drbd1
    disk_gb: 10
    network: 10.77.0.0/16
    gateway: 10.77.0.1
    suspended: true
  delegate_to: localhost

- name: Remove every container of service 42
  proxmoxwp.hosting.proxmoxwp_lxc:
    api: "{{ proxmoxwp_pve_api }}"
    service_id: 42
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
created:
  description: Whether the container was created by this run (would be, in check mode).
  returned: state is present
  type: bool
  sample: true
vmid:
  description: vmid of the live container (in check mode, the one that would be used).
  returned: state is present
  type: int
  sample: 105
node:
  description: Node of the live container.
  returned: state is present
  type: str
  sample: pve1
ip:
  description: IPv4 (or IPv6) address of the container, without prefix.
  returned: state is present
  type: str
  sample: 10.77.0.105
hostname:
  description: Host name of the container.
  returned: state is present
  type: str
  sample: site-42
removed:
  description: vmids of the containers removed (that would be, in check mode).
  returned: state is absent
  type: list
  elements: int
  sample: [105, 112]
diff:
  description: What changed, as C(before) and C(after) dicts of the changed settings (C(disk_gb), C(memory), ...).
  returned: changed
  type: dict
  sample: {before: {memory: 1024, disk_gb: 10}, after: {memory: 2048, disk_gb: 20}}
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
    next_vmid,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    PROJECT_TAG,
    SUSPENDED_TAG,
    as_bool,
    as_int,
    container_ip,
    destroy_container,
    find_guest,
    format_tags,
    ha_resources,
    parse_tags,
    rootfs_gib,
    service_containers,
    service_tag,
    split_live,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import (  # noqa: E402
    PveApiError,
    api_argument_spec,
    connect,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import (  # noqa: E402
    relocation_argument_spec,
)

JOB_TAG_PREFIX = "job-"
CREATE_REQUIRED = ("node", "hostname", "ostemplate", "storage", "disk_gb", "network", "gateway")
PVE_DEFAULTS = {"memory": 512, "swap": 512}


class ModuleFailure(Exception):
    """Ends the module with this message (and the result so far)."""


def wanted_tags(service_id, tags, suspended, job_id=None):
    out = set(tags) | {PROJECT_TAG, service_tag(service_id)}
    if suspended is True:
        out.add(SUSPENDED_TAG)
    elif suspended is False:
        out.discard(SUSPENDED_TAG)
    if job_id is not None:
        out = {tag for tag in out if not tag.startswith(JOB_TAG_PREFIX)} | {f"{JOB_TAG_PREFIX}{job_id}"}
    return out


# ------------------------------------------------------------------- create


def create(module, client, result):
    p = module.params
    service_id = p["service_id"]
    try:
        pool = AddressPool(p["network"], p["gateway"], p["addresses"]["ranges"], p["addresses"]["exclude"])
    except ValueError as exc:
        raise ModuleFailure(f"Cannot create the container of service {service_id}: {exc}") from None
    try:
        with taken_address(client, pool, p["relocation_timeout"], module.warn) as ip:
            create_at(module, client, result, ip)
    except NoAddress as exc:
        raise ModuleFailure(f"Cannot create the container of service {service_id}: {exc}") from None


def create_at(module, client, result, ip):
    """Create the container with address `ip` (held by the caller until the create task has ended)."""
    p = module.params
    service_id = p["service_id"]
    pinned = p["vmid"]
    if pinned is not None:
        taken = find_guest(client, pinned)
        if taken is not None:
            raise ModuleFailure(
                "vmid {} is already used by {} {!r} on {}".format(
                    pinned, taken.get("type"), taken.get("name"), taken.get("node")
                )
            )
    onboot = True if p["onboot"] is None else p["onboot"]
    tags = wanted_tags(service_id, [], p["suspended"])
    params = container_params(p, ip, p["hostname"], p["description"], tags, onboot)
    vmid = pinned if pinned is not None or not module.check_mode else next_vmid(client)
    result.update(created=True, changed=True, vmid=vmid, node=p["node"], ip=ip, hostname=p["hostname"])
    after = {"vmid": vmid, **{k: v for k, v in params.items() if v is not None and k not in ("ssh-public-keys",)}}
    after["disk_gb"] = p["disk_gb"]
    result["diff"] = {"before": {}, "after": after}
    if module.check_mode:
        return

    def owned(tags):
        return PROJECT_TAG in tags and service_tag(service_id) in tags

    try:
        result["vmid"] = create_container(client, p["node"], params, f"for service {service_id}", owned, pinned)
    except CreateFailed as exc:
        raise ModuleFailure(str(exc)) from None
    after["vmid"] = result["vmid"]


# ---------------------------------------------------------------- reconcile


def reconcile(module, client, live, result):
    p = module.params
    vmid, node = as_int(live["vmid"]), live["node"]
    if p["vmid"] is not None and p["vmid"] != vmid:
        raise ModuleFailure(
            "Service {} already has container {}, not {}; its vmid cannot change".format(
                p["service_id"], vmid, p["vmid"]
            )
        )
    path = f"/nodes/{node}/lxc/{vmid}"
    config = client.get(path + "/config") or {}
    current_disk = rootfs_gib(config)
    result.update(
        created=False,
        vmid=vmid,
        node=node,
        ip=container_ip(config),
        hostname=config.get("hostname") or live.get("name"),
    )
    if p["disk_gb"] is not None and current_disk is None:
        raise ModuleFailure("Cannot read the size of CT {}'s rootfs ({!r})".format(vmid, config.get("rootfs")))
    if p["disk_gb"] is not None and p["disk_gb"] < current_disk:
        raise ModuleFailure(
            "The plan's disk ({} GiB) is smaller than the container's disk ({} GiB); a container disk cannot "
            "shrink.".format(p["disk_gb"], current_disk)
        )
    before, after, changes = {}, {}, {}
    for key in ("cores", "memory", "swap"):
        have = as_int(config.get(key))
        if have is None:
            have = PVE_DEFAULTS.get(key)
        if p[key] is not None and p[key] != have:
            before[key], after[key] = have, p[key]
            changes[key] = p[key]
    onboot = as_bool(config.get("onboot"))
    if p["onboot"] is not None and p["onboot"] != onboot:
        before["onboot"], after["onboot"] = onboot, p["onboot"]
        changes["onboot"] = p["onboot"]
    tags = parse_tags(config.get("tags"))
    new_tags = wanted_tags(p["service_id"], tags, p["suspended"], p["job_id"])
    if new_tags != set(tags):
        before["tags"], after["tags"] = format_tags(tags), format_tags(new_tags)
        changes["tags"] = format_tags(new_tags)
    grow = p["disk_gb"] is not None and p["disk_gb"] > current_disk
    if grow:
        before["disk_gb"], after["disk_gb"] = current_disk, p["disk_gb"]
    if not before:
        return
    result.update(changed=True, diff={"before": before, "after": after})
    if module.check_mode:
        return
    if changes:
        client.run("PUT", path + "/config", f"config change of CT {vmid}", **changes)
    if grow:
        client.run(
            "PUT",
            path + "/resize",
            "resize of CT {} to {} GiB".format(vmid, p["disk_gb"]),
            disk="rootfs",
            size="{}G".format(p["disk_gb"]),
        )


# ------------------------------------------------------------------- absent


def remove_all(module, client, entries, result):
    result["removed"] = [as_int(e["vmid"]) for e in entries]
    if not entries:
        return
    result["changed"] = True
    result["diff"] = {"before": {"containers": list(result["removed"])}, "after": {"containers": []}}
    if module.check_mode:
        return
    listing = ha_resources(client)
    for entry in entries:
        destroy_container(client, entry["node"], as_int(entry["vmid"]), listing)


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            state={"type": "str", "default": "present", "choices": ["present", "absent"]},
            create={"type": "bool", "default": True},
            service_id={"type": "int", "required": True},
            node={"type": "str"},
            vmid={"type": "int"},
            hostname={"type": "str"},
            ostemplate={"type": "str"},
            disk_gb={"type": "int"},
            cores={"type": "int"},
            memory={"type": "int"},
            swap={"type": "int"},
            onboot={"type": "bool"},
            description={"type": "str"},
            suspended={"type": "bool"},
            job_id={"type": "int"},
            **container_argument_spec(),
            **address_argument_spec(),
            **relocation_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for key in ("disk_gb", "cores", "memory"):
        if p[key] is not None and p[key] < 1:
            module.fail_json(msg=f"{key} must be at least 1")
    if p["vmid"] is not None and p["vmid"] < 100:
        module.fail_json(msg="vmid must be at least 100")
    client = connect(module)
    result = {"changed": False}
    try:
        entries = service_containers(client, p["service_id"])
        if p["state"] == "absent":
            if p["vmid"] is not None:
                entries = [e for e in entries if as_int(e.get("vmid")) == p["vmid"]]
            remove_all(module, client, entries, result)
        else:
            live, _archives = split_live(p["service_id"], entries)
            if live is None:
                if not p["create"]:
                    raise ModuleFailure(
                        "Service {} has no live container (create=false: nothing is created)".format(p["service_id"])
                    )
                missing = [key for key in CREATE_REQUIRED if p[key] is None]
                if missing:
                    raise ModuleFailure(
                        "Service {} has no live container; creating one needs {}".format(
                            p["service_id"], ", ".join(missing)
                        )
                    )
                create(module, client, result)
            else:
                reconcile(module, client, live, result)
    except (PveApiError, ModuleFailure) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

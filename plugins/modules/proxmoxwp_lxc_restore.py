# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
module: proxmoxwp_lxc_restore
short_description: Restore a site's snapshot into a new container that takes over the site
description:
  - For storages that roll back only to their latest snapshot (DRBD/LINSTOR, ZFS), bring a site back to any
    snapshot without losing the others. The snapshot is cloned in full into a new container, which takes the
    site's tags, hostname, an address of its own from the pool (O(addresses)), the HA resource and a start.
  - The old container, kept as an archive, keeps its address until it is destroyed.
  - The container that was live is stopped and loses its HA resource. It is kept, tagged C(archive) and not
    started at boot, when it holds snapshots (the customer's other backups), and destroyed when it holds none.
  - Every step can be undone. When the clone fails it is destroyed; when the new container cannot take over,
    it is destroyed and the old one gets back its tags, HA resource and power state.
  - A restore is an action, not a state, so it always reports a change.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_api
  - proxmoxwp.hosting.proxmoxwp_addresses
  - proxmoxwp.hosting.proxmoxwp_relocation
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: partial
    details:
      - Checks the service, its live container, the source container and the snapshot, and reports the change;
        nothing is done, and RV(vmid), RV(ip), RV(archived) and RV(destroyed) are null.
  diff_mode:
    support: none
options:
  service_id:
    description: The service whose containers carry the tags C(proxmoxwp) and C(svc-<service_id>).
    type: int
    required: true
  source_vmid:
    description: The container of the service (live or archive) that holds the snapshot.
    type: int
    required: true
  snapshot:
    description: The snapshot to restore.
    type: str
    required: true
  storage:
    description: The storage for the new container's disks.
    type: str
    required: true
  newid:
    description: The vmid of the new container; the cluster's next free id when omitted.
    type: int
  network:
    description: The network of the containers' addresses, in CIDR notation.
    type: str
    required: true
  gateway:
    description: The default gateway of the containers.
    type: str
    required: true
  bridge:
    description: The bridge of net0.
    type: str
    default: vmbr0
  ha:
    description: Put the new container under HA as C(ct:<vmid>) with requested state started.
    type: bool
    default: true
  ha_max_restart:
    description: The HA resource's max_restart.
    type: int
    default: 1
  ha_max_relocate:
    description: The HA resource's max_relocate.
    type: int
    default: 1
"""

EXAMPLES = r"""
- name: Restore BAK26112026-1 into a new container
  proxmoxwp.hosting.proxmoxwp_lxc_restore:
    api: "{{ proxmoxwp_pve_api }}"
    service_id: 123
    source_vmid: 100
    snapshot: BAK26112026-1
    storage: drbd1
    network: 10.77.0.0/16
    gateway: 10.77.0.1
"""

RETURN = r"""
vmid:
  description: The new live container.
  type: int
  returned: success
node:
  description: Its node.
  type: str
  returned: success
ip:
  description: Its address (the vmid rule).
  type: str
  returned: success
archived:
  description: The previous live container, kept as an archive because it holds snapshots.
  type: int
  returned: success
destroyed:
  description: The previous live container, destroyed because it held no snapshot.
  type: int
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_address import (  # noqa: E402
    AddressPool,
    NoAddress,
    address_argument_spec,
    net0,
    taken_address,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (  # noqa: E402
    ARCHIVE_TAG,
    PROJECT_TAG,
    destroy_container,
    find_guest,
    format_tags,
    ha_resource,
    ha_sid,
    parse_tags,
    service_containers,
    service_tag,
    snapshots,
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

NEXTID_TRIES = 5


class Restore:
    def __init__(self, module, client):
        self.module, self.client, self.p = module, client, module.params

    def ct_path(self, node, vmid, suffix=""):
        return f"/nodes/{node}/lxc/{vmid}{suffix}"

    def run(self):
        p = self.p
        containers = service_containers(self.client, p["service_id"])
        live, _archives = split_live(p["service_id"], containers)
        if live is None:
            raise PveApiError("Service {} has no live container to replace".format(p["service_id"]))
        source = next((c for c in containers if int(c["vmid"]) == p["source_vmid"]), None)
        if source is None:
            raise PveApiError("CT {} is not a container of service {}".format(p["source_vmid"], p["service_id"]))
        names = [s["name"] for s in snapshots(self.client, source["node"], source["vmid"])]
        if p["snapshot"] not in names:
            raise PveApiError("CT {} has no snapshot {}".format(source["vmid"], p["snapshot"]))
        if self.module.check_mode:
            return dict(changed=True, vmid=None, node=live["node"], ip=None, archived=None, destroyed=None)
        new = self.clone(source, live)
        old = self.describe(live)
        try:
            self.retire(old)
            self.take_over(new)
        except PveApiError as exc:
            self.give_back(new, old)
            raise exc
        result = dict(changed=True, vmid=new["vmid"], node=new["node"], ip=new["ip"], archived=None, destroyed=None)
        if old["snapshots"]:
            result["archived"] = old["vmid"]
        else:
            destroy_container(self.client, old["node"], old["vmid"])
            result["destroyed"] = old["vmid"]
        return result

    def next_id(self):
        if self.p["newid"]:
            return self.p["newid"]
        return int(self.client.get("/cluster/nextid"))

    def clone(self, source, live):
        """A full clone of the snapshot, configured as the site; destroyed again if any step fails."""
        p = self.p
        try:
            pool = AddressPool(p["network"], p["gateway"], p["addresses"]["ranges"], p["addresses"]["exclude"])
            # Held until the clone's net0 names it, so that no creation at the same time takes it too.
            with taken_address(self.client, pool, p["relocation_timeout"], self.module.warn) as ip:
                return self.clone_at(source, live, ip)
        except (ValueError, NoAddress) as exc:
            raise PveApiError(f"Cannot restore service {p['service_id']} into a new container: {exc}") from None

    def clone_at(self, source, live, ip):
        live_config = self.client.get(self.ct_path(live["node"], live["vmid"], "/config"))
        for attempt in range(NEXTID_TRIES):
            newid = self.next_id()
            try:
                self.client.run(
                    "POST",
                    self.ct_path(source["node"], source["vmid"], "/clone"),
                    "clone CT {} snapshot {} to CT {}".format(source["vmid"], self.p["snapshot"], newid),
                    newid=newid,
                    snapname=self.p["snapshot"],
                    full=True,
                    storage=self.p["storage"],
                    hostname=live_config.get("hostname"),
                    description="ProxmoxWP site restored from {} of CT {}".format(self.p["snapshot"], source["vmid"]),
                )
                break
            except PveApiError as exc:
                if "already exists" in exc.pve_message and not self.p["newid"] and attempt + 1 < NEXTID_TRIES:
                    continue
                self.destroy_if_there(newid)
                raise
        node = source["node"]
        try:
            self.client.put(
                self.ct_path(node, newid, "/config"),
                net0=net0(self.p["bridge"], ip, self.p["network"], self.p["gateway"]),
                tags=format_tags([PROJECT_TAG, service_tag(self.p["service_id"])]),
                onboot=live_config.get("onboot", 0),
            )
        except PveApiError:
            self.destroy_if_there(newid)
            raise
        return {"vmid": newid, "node": node, "ip": ip}

    def describe(self, live):
        """What is needed to give the live container its role back."""
        node, vmid = live["node"], int(live["vmid"])
        config = self.client.get(self.ct_path(node, vmid, "/config"))
        running = self.client.ct_status(node, vmid).get("status") == "running"
        old = {"node": node, "vmid": vmid, "ha": ha_resource(self.client, vmid), "running": running}
        old.update(tags=config.get("tags", ""), onboot=config.get("onboot", 0))
        old["snapshots"] = [s["name"] for s in snapshots(self.client, node, vmid)]
        return old

    def retire(self, old):
        """Stop the live container, take away its HA resource and tag it archive."""
        node, vmid, ha = old["node"], old["vmid"], old["ha"]
        if ha:
            self.client.delete(f"/cluster/ha/resources/{ha_sid(vmid)}")
        if self.client.ct_status(node, vmid).get("status") == "running":
            self.client.run("POST", self.ct_path(node, vmid, "/status/stop"), f"stop CT {vmid}")
            self.client.wait_ct_status(node, vmid, "stopped")
        self.client.put(
            self.ct_path(node, vmid, "/config"),
            tags=format_tags([*parse_tags(old["tags"]), ARCHIVE_TAG]),
            onboot=False,
        )

    def take_over(self, new):
        node, vmid = new["node"], new["vmid"]
        if self.p["ha"]:
            self.client.post(
                "/cluster/ha/resources",
                sid=ha_sid(vmid),
                state="started",
                max_restart=self.p["ha_max_restart"],
                max_relocate=self.p["ha_max_relocate"],
                comment="ProxmoxWP service {}".format(self.p["service_id"]),
            )
        else:
            self.client.run("POST", self.ct_path(node, vmid, "/status/start"), f"start CT {vmid}")
        self.client.wait_ct_status(node, vmid, "running")

    def give_back(self, new, old):
        """Undo a failed take-over: the new container goes, the old one is the site again as it was."""
        try:
            destroy_container(self.client, new["node"], new["vmid"])
            node, vmid = old["node"], old["vmid"]
            self.client.put(self.ct_path(node, vmid, "/config"), tags=old["tags"] or None, onboot=old["onboot"])
            if old["ha"]:
                self.client.post(
                    "/cluster/ha/resources",
                    sid=ha_sid(vmid),
                    state=old["ha"].get("state", "started"),
                    max_restart=old["ha"].get("max_restart"),
                    max_relocate=old["ha"].get("max_relocate"),
                    comment=old["ha"].get("comment"),
                )
            elif old["running"]:
                self.client.run("POST", self.ct_path(node, vmid, "/status/start"), f"start CT {vmid}")
        except PveApiError as exc:
            self.module.warn(f"Undoing the failed restore was incomplete: {exc.message}")

    def destroy_if_there(self, vmid):
        guest = find_guest(self.client, vmid)
        if guest is not None and guest.get("type") == "lxc":
            try:
                destroy_container(self.client, guest["node"], vmid)
            except PveApiError as exc:
                self.module.warn(f"CT {vmid} of the failed restore could not be removed: {exc.message}")


def main():
    module = AnsibleModule(
        argument_spec=api_argument_spec(
            service_id=dict(type="int", required=True),
            source_vmid=dict(type="int", required=True),
            snapshot=dict(type="str", required=True),
            storage=dict(type="str", required=True),
            newid=dict(type="int"),
            network=dict(type="str", required=True),
            gateway=dict(type="str", required=True),
            bridge=dict(type="str", default="vmbr0"),
            ha=dict(type="bool", default=True),
            ha_max_restart=dict(type="int", default=1),
            ha_max_relocate=dict(type="int", default=1),
            **address_argument_spec(),
            **relocation_argument_spec(),
        ),
        supports_check_mode=True,
    )
    client = connect(module)
    try:
        module.exit_json(**Restore(module, client).run())
    except (PveApiError, ValueError) as exc:
        module.fail_json(msg=getattr(exc, "message", str(exc)))


if __name__ == "__main__":
    main()

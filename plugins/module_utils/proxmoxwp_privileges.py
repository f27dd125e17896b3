# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The Proxmox VE privileges the collection's modules need: one list, per API call they make.

CALLS holds, for each (method, path) a proxmoxwp_* module sends, what PVE checks before it carries the call out:
the method's `permissions` in PVE's API schema, and the checks its code makes beyond them (container create
names its privileges only in words; a config change checks each option it sets; a network device needs
`SDN.Use` on its bridge since PVE 8). A token whose role holds ROLE_PRIVILEGES on `/` can run every module.

Everything else is read from here: the production example's role (inventory/production.example, the `pveum`
lines of pveum_commands()), the table in docs/modules.md, the doctor (proxmoxwp_pve_check, via
needed_privileges()) and the lab's Proxmox VE, whose token holds exactly this role (tests/test_privileges.py
checks each of them against this list, and the cluster tests run under it).

Nothing here imports Ansible: the lab loads this file on its own.
"""

from collections import namedtuple

ROLE = "ProxmoxWP"
TOKEN_ID = "proxmoxwp@pve!ansible"  # noqa: S105 - the token's name, not its secret

# privileges: the one needed, or alternatives ("A|B" in need(): PVE's check_any, one of them is enough; the role
# holds the first). path: the ACL path PVE checks, with the call's {vmid}, {newid}, {storage},
# {template_storage}, {bridge}.
# when: the case in which PVE checks it ("" for always); optional: only when an operator asks for what the
# project does not do by default (a privileged container), so not in the role.
Need = namedtuple("Need", "privileges path when optional")
Call = namedtuple("Call", "method path needs purpose")


def need(privileges, path, when="", optional=False):
    return Need(tuple(privileges.split("|")), path, when, optional)


VM = "/vms/{vmid}"
STORAGE = "/storage/{storage}"
BRIDGE = "/sdn/zones/localnetwork/{bridge}"

CALLS = (
    Call("GET", "/cluster/nextid", (), "a free vmid for a new container"),
    Call(
        "GET",
        "/cluster/resources",
        (
            need("VM.Audit", VM, "PVE lists only the guests the token may audit"),
            need("Sys.Audit", "/nodes/{node}", "PVE shows a node's memory, CPU and disk only with it"),
            need("Datastore.Audit", STORAGE, "PVE lists a storage's size and use only with it"),
        ),
        "find a site's containers by vmid, hostname and tags; the room on each node (the API's placement); the "
        "guests whose addresses a new container must not take",
    ),
    Call(
        "GET",
        "/cluster/ha/status/manager_status",
        (need("Sys.Audit", "/"),),
        "the nodes in HA maintenance, where no site is placed (the API's placement)",
    ),
    Call("GET", "/cluster/ha/resources", (need("Sys.Audit", "/"),), "whether a container is HA-managed"),
    Call("GET", "/cluster/ha/resources/{sid}", (need("Sys.Audit", "/"),), "read a container's HA resource"),
    Call("POST", "/cluster/ha/resources", (need("Sys.Console", "/"),), "make a container HA-managed"),
    Call("PUT", "/cluster/ha/resources/{sid}", (need("Sys.Console", "/"),), "start or stop a container through HA"),
    Call("DELETE", "/cluster/ha/resources/{sid}", (need("Sys.Console", "/"),), "remove a container from HA"),
    Call(
        "POST",
        "/nodes/{node}/lxc",
        (
            need("VM.Allocate", VM),
            need("Datastore.AllocateSpace|Datastore.Audit", "/storage/{template_storage}", "the template"),
            need("Datastore.AllocateSpace", STORAGE, "the rootfs volume"),
            need("VM.Config.Disk", VM, "rootfs"),
            need("VM.Config.CPU", VM, "cores"),
            need("VM.Config.Memory", VM, "memory, swap"),
            need("VM.Config.Network", VM, "net0, hostname, nameserver"),
            need("VM.Config.Options", VM, "onboot, tags, description"),
            need("SDN.Use", BRIDGE, "the bridge of net0 (PVE 8 and later)"),
            need("Sys.Modify", "/", "a privileged container (unprivileged: false)", optional=True),
        ),
        "create a site's container or a member of the warm pool",
    ),
    Call(
        "GET",
        "/nodes/{node}/lxc/{vmid}/config",
        (need("VM.Audit", VM),),
        "read a container's config; the addresses taken by the cluster's containers",
    ),
    Call(
        "GET",
        "/nodes/{node}/qemu/{vmid}/config",
        (need("VM.Audit", VM),),
        "the addresses taken by the cluster's VMs (cloud-init ipconfig)",
    ),
    Call(
        "PUT",
        "/nodes/{node}/lxc/{vmid}/config",
        (
            need("VM.Config.CPU", VM, "cores"),
            need("VM.Config.Memory", VM, "memory, swap"),
            need("VM.Config.Options", VM, "onboot, tags, description"),
            need(
                "VM.Config.Network", VM, "net0 of a restored container, net0's firewall flag, a pool member's hostname"
            ),
            need("SDN.Use", BRIDGE, "net0 of a restored container, net0's firewall flag"),
        ),
        "apply a plan, tag, suspend or restore a container; filter its net0; hand a pool member over to a site",
    ),
    Call(
        "PUT",
        "/nodes/{node}/lxc/{vmid}/resize",
        (need("VM.Config.Disk", VM), need("Datastore.AllocateSpace", STORAGE)),
        "grow a container's disk to its plan",
    ),
    Call("GET", "/nodes/{node}/lxc/{vmid}/status/current", (need("VM.Audit", VM),), "a container's status"),
    Call("POST", "/nodes/{node}/lxc/{vmid}/status/start", (need("VM.PowerMgmt", VM),), "start a container"),
    Call("POST", "/nodes/{node}/lxc/{vmid}/status/stop", (need("VM.PowerMgmt", VM),), "stop a container"),
    Call("POST", "/nodes/{node}/lxc/{vmid}/status/reboot", (need("VM.PowerMgmt", VM),), "reboot a container"),
    Call("DELETE", "/nodes/{node}/lxc/{vmid}", (need("VM.Allocate", VM),), "destroy a container"),
    Call("GET", "/nodes/{node}/lxc/{vmid}/snapshot", (need("VM.Audit", VM),), "list a container's backups"),
    Call("POST", "/nodes/{node}/lxc/{vmid}/snapshot", (need("VM.Snapshot", VM),), "take a backup"),
    Call(
        "PUT",
        "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config",
        (need("VM.Snapshot", VM),),
        "describe a backup",
    ),
    Call("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}", (need("VM.Snapshot", VM),), "delete a backup"),
    Call(
        "POST",
        "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback",
        (
            need("VM.Snapshot|VM.Snapshot.Rollback", VM),
            need("VM.PowerMgmt", VM, "start: 1, to start it again"),
        ),
        "roll a container back to a backup in place",
    ),
    Call(
        "POST",
        "/nodes/{node}/lxc/{vmid}/clone",
        (
            need("VM.Clone", VM),
            need("VM.Allocate", "/vms/{newid}"),
            need("Datastore.AllocateSpace", STORAGE, "the target storage"),
            need("SDN.Use", BRIDGE, "the bridges of the source (PVE 8 and later)"),
        ),
        "restore a backup by a full clone",
    ),
    Call(
        "GET",
        "/nodes/{node}/tasks/{upid}/status",
        (),
        "wait for a task (the token's own tasks; others' need Sys.Audit on /nodes/{node})",
    ),
    Call("GET", "/nodes/{node}/tasks/{upid}/log", (), "the log of a failed task (the token's own)"),
    Call(
        "GET",
        "/cluster/firewall/options",
        (need("Sys.Audit", "/"),),
        "whether the datacenter firewall is on (doctor, proxmoxwp_lxc_firewall)",
    ),
    Call("GET", "/nodes/{node}/lxc/{vmid}/firewall/options", (need("VM.Audit", VM),), "a site's firewall options"),
    Call(
        "PUT",
        "/nodes/{node}/lxc/{vmid}/firewall/options",
        (need("VM.Config.Network", VM),),
        "turn a site's firewall and IP filter on, policies DROP",
    ),
    Call("GET", "/nodes/{node}/lxc/{vmid}/firewall/rules", (need("VM.Audit", VM),), "a site's firewall rules"),
    Call("POST", "/nodes/{node}/lxc/{vmid}/firewall/rules", (need("VM.Config.Network", VM),), "add a site's rule"),
    Call(
        "DELETE",
        "/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}",
        (need("VM.Config.Network", VM),),
        "remove a site's rule that differs",
    ),
    Call("GET", "/nodes/{node}/lxc/{vmid}/firewall/ipset", (need("VM.Audit", VM),), "a site's IP sets"),
    Call(
        "POST",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset",
        (need("VM.Config.Network", VM),),
        "the IP filter's set ipfilter-net0",
    ),
    Call(
        "GET",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}",
        (need("VM.Audit", VM),),
        "the addresses a site may use",
    ),
    Call(
        "POST",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}",
        (need("VM.Config.Network", VM),),
        "the site's own address in its IP filter",
    ),
    Call(
        "DELETE",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}/{cidr}",
        (need("VM.Config.Network", VM),),
        "an address the site may no longer use",
    ),
    Call(
        "DELETE",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}",
        (need("VM.Config.Network", VM),),
        "the IP filter's set, when the firewall is turned off",
    ),
    Call("GET", "/access/permissions", (), "the token's own effective privileges (doctor)"),
    Call("GET", "/version", (), "the version of PVE (doctor)"),
    Call("GET", "/nodes", (), "the nodes and whether they are online (doctor)"),
    Call(
        "GET",
        "/nodes/{node}/storage",
        (need("Datastore.AllocateSpace|Datastore.Audit", STORAGE, "PVE lists only these storages"),),
        "the containers' storage on each node (doctor)",
    ),
    Call(
        "GET",
        "/nodes/{node}/storage/{storage}/content",
        (need("Datastore.AllocateSpace|Datastore.Audit", "/storage/{template_storage}"),),
        "the template on the creating node (doctor)",
    ),
    Call(
        "POST",
        "/nodes/{node}/storage/{storage}/upload",
        (need("Datastore.AllocateTemplate", "/storage/{template_storage}"),),
        "upload the golden image to the template storage (proxmoxwp image upload)",
    ),
    Call("GET", "/nodes/{node}/network", (), "the containers' bridge on each node (doctor)"),
    Call("GET", "/cluster/ha/groups", (need("Sys.Audit", "/"),), "the HA group sites are placed with, PVE 8 (doctor)"),
    Call("GET", "/cluster/ha/rules", (need("Sys.Audit", "/"),), "the node-affinity rule, PVE 9 (doctor)"),
)


def _held(item):
    """The privilege of a need that the role holds: its only one, or the first of alternatives."""
    return item.privileges[0]


def role_privileges():
    """The privileges of the role, sorted: every need's (the first of alternatives), optional ones left out."""
    return sorted({_held(n) for call in CALLS for n in call.needs if not n.optional})


ROLE_PRIVILEGES = tuple(role_privileges())


def pveum_commands(token_id=TOKEN_ID, role=ROLE):
    """The commands (on a PVE node, as root) that make the user, its token and the role, granted on `/`.

    The role is granted to the user and to the token: a token with privilege separation has the privileges both
    hold (the intersection), so granting only one of them gives the token nothing.
    """
    user, token = token_id.split("!", 1)
    # PVE splits a list of privileges at commas and white space: quoted, it may go on over lines (four a
    # line keeps the inventory's comment within yamllint's 120 characters).
    rows = [" ".join(ROLE_PRIVILEGES[i : i + 4]) for i in range(0, len(ROLE_PRIVILEGES), 4)]
    return [
        'pveum role add {} --privs "{}"'.format(role, "\n  ".join(rows)),
        f"pveum user add {user}",
        f"pveum acl modify / --roles {role} --users {user}",
        f"pveum user token add {user} {token} --privsep 1",
        f"pveum acl modify / --roles {role} --tokens '{token_id}'",
    ]


def _acl_path(template, values):
    """The path a doctor asks about: a site's vmid is unknown beforehand, and what the token holds on /vms reaches
    every guest (PVE propagates the role from /)."""
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    if path.startswith("/vms/"):
        return "/vms"
    if path.startswith("/nodes/"):
        return "/nodes"  # every node a site may be placed on: the role on / reaches them all
    return path


def needed_privileges(storage, template_storage, bridge, privileged=False):
    """Each (privilege, ACL path) the modules need on this cluster, with why: a list of dicts privilege, path, why.

    storage: the containers' storage; template_storage: the storage of the template (`local` of
    `local:vztmpl/...`); bridge: the containers' bridge; privileged: whether containers are privileged.
    """
    values = {"storage": storage, "template_storage": template_storage, "bridge": bridge}
    found = {}
    for call in CALLS:
        for item in call.needs:
            if item.optional and not privileged:
                continue
            key = (_held(item), _acl_path(item.path, values))
            found.setdefault(key, [])
            if call.purpose not in found[key]:
                found[key].append(call.purpose)
    return [{"privilege": priv, "path": path, "why": _why(whys)} for (priv, path), whys in sorted(found.items())]


def _why(purposes):
    shown = "; ".join(purposes[:2])
    return shown + (f" and {len(purposes) - 2} more" if len(purposes) > 2 else "")

# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""Making one container: the create request with a free vmid, its task waited for, and nothing half-made left.

Shared by the site's container (proxmoxwp_lxc) and the warm pool's members (proxmoxwp_lxc_pool). PVE hands out
vmids only as a hint (/cluster/nextid): another client may take the same one before the create arrives, which PVE
answers with "already exists"; the id is then asked for again. A create task that fails normally leaves nothing,
but PVE may keep a half-made container locked `create`; that one is destroyed, never a guest of someone else.
"""

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_address import net0
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (
    as_int,
    find_guest,
    format_tags,
    parse_tags,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import PveApiError

NEXTID_TRIES = 5


def container_argument_spec():
    """The options of a new container (doc fragment proxmoxwp.hosting.proxmoxwp_container)."""
    return {
        "storage": {"type": "str"},
        "unprivileged": {"type": "bool", "default": True},
        "nesting": {"type": "bool", "default": True},
        "bridge": {"type": "str", "default": "vmbr0"},
        "network": {"type": "str"},
        "gateway": {"type": "str"},
        "nameserver": {"type": "str"},
        "ssh_public_keys": {"type": "str"},
    }


def container_params(p, ip, hostname, description, tags, onboot):
    """The create request's parameters but the vmid: the module's params `p` (the options of a new container and
    ostemplate, disk_gb, cores, memory, swap), the address, and what the caller names."""
    return {
        "ostemplate": p["ostemplate"],
        "storage": p["storage"],
        "rootfs": "{}:{}".format(p["storage"], p["disk_gb"]),
        "hostname": hostname,
        "cores": p["cores"],
        "memory": p["memory"],
        "swap": p["swap"],
        "unprivileged": p["unprivileged"],
        "features": "nesting=1" if p["nesting"] else None,
        "onboot": onboot,
        "net0": net0(p["bridge"], ip, p["network"], p["gateway"]),
        "nameserver": p["nameserver"],
        "ssh-public-keys": p["ssh_public_keys"],
        "description": description,
        "tags": format_tags(tags),
    }


class CreateFailed(Exception):
    """The create task failed; the message says why and what became of the half-made container."""


def is_already_exists(exc):
    text = " ".join([exc.pve_message or ""] + [str(v) for v in exc.errors.values()])
    return "already exists" in text


def next_vmid(client):
    return as_int(client.get("/cluster/nextid"))


def create_container(client, node, params, what, owned, pinned=None):
    """POST /nodes/<node>/lxc with `params` and a vmid (`pinned`, or the next free one) and wait for its task.

    Returns the vmid. `what` names the container in messages ("for service 42"); `owned(tags)` says whether a guest
    with these tags (a list) is the one this create made. CreateFailed when the task fails.
    """
    tries = 0
    while True:
        vmid = pinned if pinned is not None else next_vmid(client)
        try:
            upid = client.post(f"/nodes/{node}/lxc", vmid=vmid, **params)
        except PveApiError as exc:
            if pinned is None and is_already_exists(exc) and tries < NEXTID_TRIES:
                tries += 1
                continue
            raise
        break
    try:
        client.wait_task(upid, f"create of CT {vmid} {what}")
    except PveApiError as exc:
        raise CreateFailed(exc.message + remove_leftover(client, vmid, owned)) from None
    return vmid


def remove_leftover(client, vmid, owned):
    """After a failed create: destroy the container if PVE left it; a sentence saying what happened."""
    try:
        guest = find_guest(client, vmid)
        if guest is None:
            return ". No container was left behind."
        ours = owned(parse_tags(guest.get("tags"))) or guest.get("lock") == "create"
        if guest.get("type") != "lxc" or not ours:
            return f". vmid {vmid} now belongs to another guest, which was left alone."
        client.run(
            "DELETE",
            "/nodes/{}/lxc/{}".format(guest["node"], vmid),
            f"destroy of the half-created CT {vmid}",
            purge=True,
            force=True,
            **{"destroy-unreferenced-disks": True},
        )
        return f". The half-created CT {vmid} was destroyed."
    except PveApiError as exc:
        return (
            f". The half-created CT {vmid} is still there and could not be destroyed ({exc.message}); "
            f"remove it by hand (pct unlock {vmid}; pct destroy {vmid} --purge)"
        )

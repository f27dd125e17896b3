# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""Finding containers, their HA resources and snapshots in a PVE cluster, without a database.

A service's containers carry the tags `proxmoxwp` and `svc-<service_id>`; `archive` marks a stopped container
kept only for its snapshots, `suspended` a suspended site. PVE has no 404 for a missing container, so a
container is looked up in /cluster/resources.
"""

import re

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve import PveApiError

PROJECT_TAG = "proxmoxwp"
ARCHIVE_TAG = "archive"
SUSPENDED_TAG = "suspended"
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
GIB = 1024**3


def service_tag(service_id):
    return f"svc-{service_id}"


def parse_tags(text):
    """PVE's tag list (separated by ';', also ',' or white space) as lower-case tags in their order."""
    out = []
    for tag in re.split(r"[;,\s]+", str(text or "")):
        tag = tag.strip().lower()
        if tag and tag not in out:
            out.append(tag)
    return out


def format_tags(tags):
    """A tag list as PVE writes it: sorted, ';'-separated."""
    return ";".join(sorted(set(tags)))


def parse_props(text):
    """('first bare value' or None, {key: value}) of a PVE property string such as a rootfs or net0."""
    first, props = None, {}
    for n, part in enumerate(str(text or "").split(",")):
        key, eq, value = part.partition("=")
        if eq:
            props[key.strip()] = value.strip()
        elif n == 0 and part.strip():
            first = part.strip()
    return first, props


def size_bytes(text):
    """Bytes of a PVE disk size such as 8G, 512M, 1.5T or a plain number of bytes; None if unparsable."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)\s*", str(text or ""), re.I)
    if not found:
        return None
    return int(float(found.group(1)) * SIZE_UNITS[found.group(2).upper()])


def gib_number(size):
    """Bytes as GiB: an int when whole, else a float rounded to 3 places."""
    value = size / GIB
    return int(value) if value == int(value) else round(value, 3)


def rootfs_gib(config):
    """The rootfs size in GiB from a container config (`size=` of rootfs), or None."""
    props = parse_props(config.get("rootfs"))[1]
    size = size_bytes(props.get("size")) if props.get("size") else None
    return gib_number(size) if size is not None else None


def as_bool(value, default=False):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def as_int(value):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------- lookups


class MissingContainer(PveApiError):
    """The container is not in /cluster/resources (PVE has no 404 for it)."""


def cluster_guests(client):
    """Every guest (VM and container) in /cluster/resources."""
    return client.get("/cluster/resources", type="vm") or []


def find_guest(client, vmid):
    """The /cluster/resources entry of a guest, or None."""
    for item in cluster_guests(client):
        if as_int(item.get("vmid")) == int(vmid):
            return item
    return None


def check_mode_missing(module, vmid):
    """In check mode, a container that does not exist yet may be made by an earlier task of the same run: warn."""
    module.warn(
        f"CT {vmid} does not exist (yet); in check mode it is taken to be made by an earlier task, and this one "
        "reports what it would do to it"
    )


def find_container(client, vmid, node=None, warn=None, settle=None):
    """The /cluster/resources entry of container vmid; PveApiError if there is none (or it is a VM).

    node is what the caller believed; when the container lives elsewhere (the HA manager moved it), the
    real node wins and warn() says so. settle(entry), when given, returns the entry to use instead (the one after
    an HA relocation: proxmoxwp_relocation).
    """
    guest = find_guest(client, vmid)
    if guest is None:
        raise MissingContainer(f"CT {vmid} does not exist in the cluster (it is not in /cluster/resources)")
    if guest.get("type") != "lxc":
        raise PveApiError("Guest {} is a {} guest, not a container (lxc)".format(vmid, guest.get("type")))
    if settle is not None:
        guest = settle(guest)
    if node and guest.get("node") != node and warn:
        warn("CT {0} is on node {1}, not on {2} as given; using {1}".format(vmid, guest.get("node"), node))
    return guest


def node_of(client, vmid):
    return find_container(client, vmid)["node"]


def service_containers(client, service_id):
    """The /cluster/resources entries of the containers tagged proxmoxwp and svc-<service_id>, by vmid."""
    wanted = service_tag(service_id)
    out = []
    for item in cluster_guests(client):
        if item.get("type") != "lxc":
            continue
        tags = parse_tags(item.get("tags"))
        if PROJECT_TAG in tags and wanted in tags:
            out.append(item)
    return sorted(out, key=lambda item: as_int(item.get("vmid")) or 0)


def split_live(service_id, containers):
    """(live entry or None, [archive entries]); PveApiError when a service has more than one live container."""
    live = [c for c in containers if ARCHIVE_TAG not in parse_tags(c.get("tags"))]
    archives = [c for c in containers if ARCHIVE_TAG in parse_tags(c.get("tags"))]
    if len(live) > 1:
        raise PveApiError(
            "Service {} has {} live containers ({}); there must be at most one (tag the others `archive` or "
            "remove them)".format(service_id, len(live), ", ".join(str(c.get("vmid")) for c in live))
        )
    return (live[0] if live else None), archives


# ---------------------------------------------------------------------- HA


def ha_sid(vmid):
    return f"ct:{vmid}"


def ha_resources(client):
    """{sid: entry} of the HA resources (the list is the truth: a GET of a missing sid is not a reliable 404)."""
    out = {}
    for entry in client.get("/cluster/ha/resources") or []:
        sid = str(entry.get("sid") or "")
        if sid:
            out[sid] = entry
    return out


def ha_resource(client, vmid, listing=None):
    """The HA resource of container vmid with its config fields, or None if it has none."""
    listing = ha_resources(client) if listing is None else listing
    sid = ha_sid(vmid)
    entry = listing.get(sid)
    if entry is None:
        return None
    if "state" not in entry:
        # The schema guarantees only `sid` in the list; the resource itself has the config.
        entry = dict(entry, **(client.get(f"/cluster/ha/resources/{sid}") or {}))
    return entry


def destroy_container(client, node, vmid, ha_listing=None):
    """Remove a container the way PVE wants it: HA resource first (else the manager starts it again), then stop
    (destroying a running CT fails), then destroy with its disks and snapshots."""
    listing = ha_resources(client) if ha_listing is None else ha_listing
    path = f"/nodes/{node}/lxc/{vmid}"
    if ha_sid(vmid) in listing:
        client.delete(f"/cluster/ha/resources/{ha_sid(vmid)}")
    if client.ct_status(node, vmid).get("status") == "running":
        client.run("POST", path + "/status/stop", f"stop of CT {vmid}")
        client.wait_ct_status(node, vmid, "stopped")
    client.run("DELETE", path, f"destroy of CT {vmid}", purge=True, **{"destroy-unreferenced-disks": True})


# ---------------------------------------------------------------- snapshots


def ordered_snapshots(entries):
    """PVE's snapshot list without `current`, oldest first.

    Sorted by snaptime; snapshots taken within the same second are ordered by their depth in the parent
    chain (a parent before its child), then by name.
    """
    snaps = {str(e.get("name")): e for e in entries if e.get("name") and e.get("name") != "current"}

    def depth(name):
        n, seen = 0, set()
        while name in snaps and name not in seen:
            seen.add(name)
            name = snaps[name].get("parent")
            n += 1
        return n

    ordered = sorted(snaps.values(), key=lambda e: (as_int(e.get("snaptime")) or 0, depth(e["name"]), e["name"]))
    return [
        {
            "name": e["name"],
            "snaptime": as_int(e.get("snaptime")),
            "description": str(e.get("description") or "").rstrip("\n"),
            "parent": e.get("parent"),
        }
        for e in ordered
    ]


def snapshots(client, node, vmid):
    return ordered_snapshots(client.get(f"/nodes/{node}/lxc/{vmid}/snapshot") or [])


# ----------------------------------------------------------------- details


def container_details(client, entry, ha_listing):
    """What proxmoxwp_lxc_info reports about one container of /cluster/resources."""
    vmid, node = as_int(entry.get("vmid")), entry.get("node")
    tags = parse_tags(entry.get("tags"))
    ha = ha_resource(client, vmid, ha_listing)
    status = entry.get("status") if entry.get("status") in ("running", "stopped") else "unknown"
    config, snaps = {}, []
    if status != "unknown":
        config = client.get(f"/nodes/{node}/lxc/{vmid}/config") or {}
        status = (client.get(f"/nodes/{node}/lxc/{vmid}/status/current") or {}).get("status", status)
        snaps = snapshots(client, node, vmid)
    tags = parse_tags(config.get("tags")) if config.get("tags") is not None else tags
    return {
        "vmid": vmid,
        "node": node,
        "hostname": config.get("hostname") or entry.get("name"),
        "status": status if status in ("running", "stopped") else "unknown",
        "tags": tags,
        "archive": ARCHIVE_TAG in tags,
        "suspended": SUSPENDED_TAG in tags,
        "ha": {"sid": ha["sid"], "state": ha.get("state")} if ha else None,
        "config": config,
        "snapshots": snaps,
        "snapshot_names": [snap["name"] for snap in snaps],
        "latest_snapshot": snaps[-1]["name"] if snaps else None,
        "disk_gb": rootfs_gib(config),
        "cores": as_int(config.get("cores")),
        "memory": as_int(config.get("memory")),
        "swap": as_int(config.get("swap")),
        "onboot": as_bool(config.get("onboot")),
        "ip": container_ip(config),
    }


def container_ip(config):
    """The IPv4 address (without prefix) of net0, or None."""
    props = parse_props(config.get("net0"))[1]
    address = props.get("ip", "")
    return address.split("/", 1)[0] if "/" in address else None

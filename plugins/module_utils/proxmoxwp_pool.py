# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The warm pool's members as the cluster shows them: containers tagged `proxmoxwp` and `pool`, and no service's.

A member is made from a golden image and waits, started, for a new site to take it over (docs/pool.md). Its tag
`img-<digest>` names the image it was made from (PVE keeps no record of a container's template), so a member of an
image that has since been replaced is never given to a site. A member taken over gets the service's tag and loses
`pool`: from then on it is that site's container, found like any other (proxmoxwp_guests.service_containers).
"""

import hashlib

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import (
    PROJECT_TAG,
    as_int,
    cluster_guests,
    container_ip,
    parse_tags,
)

POOL_TAG = "pool"
IMAGE_TAG_PREFIX = "img-"
SERVICE_TAG_PREFIX = "svc-"
# The host name of a member until a site takes it over and names it.
MEMBER_HOSTNAME = "proxmoxwp-pool"


def image_tag(ostemplate):
    """The tag naming the image a member was made from: a digest of its volume id (tags allow no ':' or '/')."""
    return IMAGE_TAG_PREFIX + hashlib.sha256(str(ostemplate).encode()).hexdigest()[:12]


def is_member(tags):
    return PROJECT_TAG in tags and POOL_TAG in tags and not any(tag.startswith(SERVICE_TAG_PREFIX) for tag in tags)


def pool_entries(client, node=None):
    """The /cluster/resources entries of the pool's members (of one node when given), by vmid."""
    out = []
    for item in cluster_guests(client):
        ours = item.get("type") == "lxc" and is_member(parse_tags(item.get("tags")))
        if ours and (node is None or item.get("node") == node):
            out.append(item)
    return sorted(out, key=lambda item: as_int(item.get("vmid")) or 0)


def image_of(tags):
    found = [tag for tag in tags if tag.startswith(IMAGE_TAG_PREFIX)]
    return found[0] if found else None


def describe_member(client, entry):
    """What the modules report of a member: vmid, node, address, image tag, status and lock (None when unlocked)."""
    vmid, node = as_int(entry.get("vmid")), entry.get("node")
    config = {}
    if entry.get("status") != "unknown":  # a failed node answers nothing of its guests
        config = client.get(f"/nodes/{node}/lxc/{vmid}/config") or {}
    return {
        "vmid": vmid,
        "node": node,
        "ip": container_ip(config),
        "image": image_of(parse_tags(entry.get("tags"))),
        "status": entry.get("status"),
        "lock": entry.get("lock") or config.get("lock") or None,
    }

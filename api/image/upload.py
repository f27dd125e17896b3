"""Put the golden image on the cluster's template storage through the Proxmox VE API.

The connection (`proxmoxwp_pve_api`) and the template storage (`proxmoxwp_template.storage`) come from the
configured inventory, read as a playbook reads them (api/ansible_vars.py, vault included), and the requests go
through the collection's own client (api/pve.py), so the upload needs only the token the playbooks use, whose role
holds Datastore.AllocateTemplate for it.

PVE stores an upload on the node that received it: a storage that is not shared (a node's `local`) gets the file
on every node that may create a site, a shared one once. A node that already lists a volume of that name and size
is left alone: the image is named per build, so the same name and size is the same image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.ansible_vars import read_variables
from api.config import ConfigError, Settings
from api.pve import load_collections

CONTENT = "vztmpl"
ALGORITHM = "sha256"
CHUNK = 1024**2


@dataclass(frozen=True)
class Target:
    """Where the image goes: the connection settings and the template storage."""

    api: dict[str, Any]
    storage: str
    archive: Path


def target(settings: Settings) -> Target:
    """The inventory's PVE connection, template storage and archive; ConfigError naming what is missing."""
    load_collections(settings)
    found = read_variables(
        settings.inventory, ("proxmoxwp_pve_api", "proxmoxwp_template"), settings.vault_password_file
    )
    api = found.get("proxmoxwp_pve_api")
    template = found.get("proxmoxwp_template") or {}
    if not isinstance(api, dict) or not (api.get("host") or api.get("hosts")):
        raise ConfigError(f"{settings.inventory}: proxmoxwp_pve_api (the cluster's API) is not set")
    if not template.get("storage"):
        raise ConfigError(f"{settings.inventory}: proxmoxwp_template.storage (the template storage) is not set")
    return Target(api, str(template["storage"]), Path(str(template.get("archive") or "")))


def checksum(path: Path) -> str:
    digest = hashlib.new(ALGORITHM)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload(client, archive: Path, storage: str, filename: str, nodes: Iterable[str], say: Callable[[str], None]) -> str:
    """Upload archive as <storage>:vztmpl/<filename> to each node (once for a shared storage); the volid."""
    volid = f"{storage}:{CONTENT}/{filename}"
    size = archive.stat().st_size
    digest = checksum(archive)
    say(f"{archive}: {size} bytes, {ALGORITHM} {digest}")
    for node in nodes:
        listed = client.get(f"/nodes/{node}/storage", storage=storage)
        if not listed:
            raise ValueError(f"{node}: the storage {storage} is not there (or the token may not see it)")
        there = {v.get("volid"): v for v in client.get(f"/nodes/{node}/storage/{storage}/content", content=CONTENT)}
        if volid in there and int(there[volid].get("size") or 0) == size:
            say(f"{node}: {volid} is already there with the same size, not uploaded again")
        else:
            upid = client.upload(
                f"/nodes/{node}/storage/{storage}/upload",
                str(archive),
                content=CONTENT,
                filename=filename,
                checksum=digest,
                **{"checksum-algorithm": ALGORITHM},
            )
            client.wait_task(upid, f"upload of {filename} to {storage} on {node}")
            say(f"{node}: uploaded {volid}, checksum verified by Proxmox VE")
        if listed[0].get("shared"):
            say(f"{storage} is shared: every node sees it")
            break
    return volid


def online_nodes(client) -> list[str]:
    return sorted(n["node"] for n in client.get("/nodes") if n.get("status") == "online")

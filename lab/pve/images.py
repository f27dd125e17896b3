"""The OS templates the lab's Proxmox VE makes containers from, and where each one really is.

Two kinds, both on the template storage `local` (content vztmpl), as on a PVE node:
- the Debian 12 standard template (lab.pve.fake.TEMPLATE_VOLID) is the lab's cached debootstrap rootfs
  (api.build_host.rootfs.ensure_rootfs): containers stack an overlay on it, so creating one takes milliseconds;
- every `.tar.zst`/`.tar.gz` in the templates directory is `local:vztmpl/<file name>`: the golden images that
  playbooks/template_build.yml writes ($PROXMOXWP_LAB_DIR/images/) and anything an operator puts there. Each is
  unpacked once into the cache (a few seconds), and containers stack an overlay on that tree like on the rootfs:
  creating one takes milliseconds, and its snapshots copy only what it changed.

An unprivileged container (PVE's default) stands on a tree shifted into its id map, as PVE extracts a template
into an unprivileged container's volume (api.build_host.idmap): unpacked or copied once more, in the user namespace,
into `<tree>-u<first host id>` beside the plain one, which the golden image's build container keeps using.

An unpacked tree is named after the archive's name, size and modification time, so a rebuilt archive is unpacked
beside the old tree (which containers made earlier may still stand on) instead of changing it under them. A file
lock keeps two processes from unpacking the same archive at once; a tree that exists is always whole.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from api.build_host.archive import archive_suffix, extract_archive, is_archive
from api.build_host.files import tree_in_place
from api.build_host.idmap import IdMap, copy_shifted, extract_shifted
from api.build_host.locks import exclusive
from api.build_host.mounts import remove_tree
from api.build_host.rootfs import ensure_rootfs
from lab.errors import LabError
from lab.pve.fake import TEMPLATE_VOLID

STORAGE = "local"
PREFIX = f"{STORAGE}:vztmpl/"
UNPACKED = "images"  # under the rootfs cache
UNPACK_TIMEOUT = 900.0


class Images:
    def __init__(self, rootfs_cache: Path, templates: Path | None = None) -> None:
        self.rootfs_cache = Path(rootfs_cache)
        self.templates = Path(templates) if templates is not None else None

    def source(self, volid: str, idmap: IdMap | None = None) -> Path:
        """The root filesystem directory a container of `volid` stacks its overlay on: the rootfs (built first when
        it is not cached yet: a minute or two) or the unpacked archive, shifted into `idmap` when one is given;
        LabError when the lab has no such template or it cannot be unpacked."""
        if volid == TEMPLATE_VOLID:
            rootfs = ensure_rootfs(self.rootfs_cache)
            if idmap is None:
                return rootfs
            return self._in_cache(f"{rootfs.name}-u{idmap.first}", lambda work: copy_shifted(rootfs, work, idmap))
        path = self._archive(volid)
        if path is None:
            where = f" in {self.templates}" if self.templates is not None else " (no templates directory given)"
            raise LabError(f"volume '{volid}' does not exist: the lab has no such template{where}")
        return self.unpacked(path, idmap)

    def unpacked(self, archive: Path, idmap: IdMap | None = None) -> Path:
        """The archive's tree in the cache (shifted into `idmap` when given), unpacked first when it is not there
        yet."""
        info = archive.stat()
        key = hashlib.sha256(f"{archive.name}\n{info.st_size}\n{info.st_mtime_ns}".encode()).hexdigest()[:12]
        if idmap is None:
            return self._in_cache(f"{archive_stem(archive)}-{key}", lambda work: extract_archive(archive, work))
        name = f"{archive_stem(archive)}-{key}-u{idmap.first}"
        return self._in_cache(name, lambda work: extract_shifted(archive, work, idmap))

    def _in_cache(self, name: str, fill: Callable[[Path], None]) -> Path:
        """The tree `name` of the cache, made by `fill` (into an empty directory) when it is not there yet."""
        directory = self.rootfs_cache / UNPACKED
        target = directory / name
        if target.is_dir():
            return target
        directory.mkdir(parents=True, exist_ok=True)
        lock = directory / f".{target.name}.lock"
        with exclusive(lock, timeout=UNPACK_TIMEOUT, what=f"another unpacking of {name} to finish"):
            if target.is_dir():
                return target
            for stale in directory.glob(f".{target.name}.*"):
                if stale.is_dir():  # left by a process that died while unpacking (we hold the lock)
                    remove_tree(stale)
            with tree_in_place(target, f".{target.name}.") as work:
                fill(work)
        return target

    def archives(self) -> dict[str, dict]:
        """The templates directory as the storage lists it: {volname: fakepve's volume entry}."""
        if self.templates is None or not self.templates.is_dir():
            return {}
        found = {}
        for path in sorted(self.templates.iterdir()):
            if not (path.is_file() and is_archive(path)) or path.name.startswith("."):
                continue  # a .partial file being written is not a template yet
            info = path.stat()
            found[f"vztmpl/{path.name}"] = {
                "content": "vztmpl",
                "format": path.name.rsplit(".", 1)[-1],
                "size": info.st_size,
                "ctime": int(info.st_mtime) or int(time.time()),
            }
        return found

    def _archive(self, volid: str) -> Path | None:
        if self.templates is None or not volid.startswith(PREFIX):
            return None
        name = volid.removeprefix(PREFIX)
        if "/" in name or name.startswith("."):
            return None
        path = self.templates / name
        return path if path.is_file() and is_archive(path) else None


def archive_stem(archive: Path) -> str:
    """The archive's name without .tar.zst/.tar.gz."""
    return archive.name.removesuffix(archive_suffix(archive))

"""Snapshots of lab containers: copies of the layer a container writes to, kept in the container's directory.

An overlay container writes only to its upper dir; one made from an archive (or a copied rootfs) to its whole
root dir. A snapshot is a copy of that layer in `<container dir>/snapshots/<name>/`, made with `cp -a`, which keeps
owners, modes, xattrs and the overlay's own marks (whiteouts for deleted files, opaque directories). A running
container is frozen while it is copied, so no file changes under the copy. Rollback puts a copy of the snapshot
back while the container is stopped; a clone is a new container on the same lower dir whose layer starts as a
copy of a snapshot (or of the stopped container's layer). Destroying the container removes its snapshots with it.
A container whose root is a disk of its own (a mounted file system, api.build_host.disks) keeps its mount point:
rollback empties it and copies the snapshot in, and its clone gets a disk of its own holding the copy.

Copies cost what the layer holds (a site's upper dir: tens to hundreds of MB), shared blocks only on file systems
with reflinks (`--reflink=auto`: XFS, btrfs). That is the lab's price for snapshots on plain directories.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from api.build_host.commands import run
from api.build_host.containers import Containers
from api.build_host.errors import BuildHostError
from api.build_host.lxcconfig import Rootfs
from api.build_host.mounts import fresh_work_dir, remove_tree
from lab.errors import LabError

COPY_TIMEOUT = 900.0
# PVE's snapshot names (pve-configid) are safe as directory names; anything else is refused before a path is made.
SNAPSHOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class Snapshots:
    """Snapshots of the containers under one LXC path."""

    def __init__(self, containers: Containers) -> None:
        self.containers = containers

    def take(self, name: str, snapshot: str) -> None:
        """Copy the container's layer into the snapshot `snapshot` (a new name), freezing the container if it runs."""
        target = self._directory(name, snapshot)
        if target.exists():
            raise LabError(f"container {name} already has a snapshot {snapshot}")
        target.parent.mkdir(mode=0o700, exist_ok=True)
        partial = target.with_name(f".{snapshot}.partial")
        remove_tree(partial)
        try:
            with self.containers.frozen(name):
                _copy(self._layer(name), partial)
            os.rename(partial, target)  # a snapshot directory is always a whole one
        except BaseException:
            remove_tree(partial)
            raise

    def rollback(self, name: str, snapshot: str) -> None:
        """Replace the stopped container's layer with a copy of the snapshot."""
        if self.containers.state(name) != "STOPPED":
            raise LabError(f"container {name} must be stopped to roll back to {snapshot}")
        _replace_layer(self.containers.directory(name), self.containers.rootfs(name), self._existing(name, snapshot))

    def delete(self, name: str, snapshot: str) -> None:
        """Remove the snapshot; a missing one is not an error."""
        remove_tree(self._directory(name, snapshot))

    def names(self, name: str) -> list[str]:
        """The container's snapshots, sorted."""
        directory = self.containers.directory(name) / "snapshots"
        if not directory.is_dir():
            return []
        return sorted(entry.name for entry in directory.iterdir() if SNAPSHOT_NAME.fullmatch(entry.name))

    def clone(self, name: str, new_name: str, snapshot: str | None = None, **settings) -> None:
        """Make the stopped container `new_name` holding what `name` held at `snapshot` (None: its layer now, which
        needs `name` stopped). `settings` are Containers.create's (address, bridge, host name, limits, ...)."""
        source = self.containers.rootfs(name)
        if snapshot is not None:
            layer = self._existing(name, snapshot)
        elif self.containers.state(name) != "STOPPED":
            raise LabError(f"container {name} must be stopped to be cloned without a snapshot")
        else:
            layer = source.path
        if source.kind != "overlay":
            # The layer is a whole root: create copies it.
            self.containers.create(new_name, source=layer, overlay=False, authorized_key=None, **settings)
            return
        assert source.lower is not None
        self.containers.create(new_name, source=source.lower, overlay=True, authorized_key=None, **settings)
        try:
            _replace_layer(self.containers.directory(new_name), self.containers.rootfs(new_name), layer)
        except BaseException:
            with contextlib.suppress(BuildHostError):
                self.containers.destroy(new_name)
            raise

    # --- helpers ---

    def _layer(self, name: str) -> Path:
        return self.containers.rootfs(name).path

    def _directory(self, name: str, snapshot: str) -> Path:
        if not SNAPSHOT_NAME.fullmatch(snapshot):
            raise LabError(f"invalid snapshot name {snapshot!r}")
        return self.containers.directory(name) / "snapshots" / snapshot

    def _existing(self, name: str, snapshot: str) -> Path:
        directory = self._directory(name, snapshot)
        if not directory.is_dir():
            raise LabError(f"container {name} has no snapshot {snapshot} ({directory} is missing)")
        return directory


def _copy(source: Path, target: Path) -> None:
    """`cp -a` of the tree `source` to the new path `target`, sharing blocks where the file system can."""
    run(["cp", "-a", "--reflink=auto", "--", str(source), str(target)], timeout=COPY_TIMEOUT)


def _replace_layer(directory: Path, rootfs: Rootfs, layer: Path) -> None:
    """Swap the stopped container's writable layer for a copy of `layer`: copied beside it first, then renamed in,
    so a failed copy leaves the container as it was."""
    current = rootfs.path
    if os.path.ismount(current):
        # a root on a disk of its own (api.build_host.disks): the mount point stays, its content is replaced
        run(["find", str(current), "-xdev", "-mindepth", "1", "-delete"], timeout=COPY_TIMEOUT)
        run(["cp", "-a", "--reflink=auto", "--", f"{layer}/.", str(current)], timeout=COPY_TIMEOUT)
        return
    incoming = current.with_name(f".{current.name}.incoming")
    outgoing = current.with_name(f".{current.name}.outgoing")
    remove_tree(incoming)
    remove_tree(outgoing)
    try:
        _copy(layer, incoming)
    except BaseException:
        remove_tree(incoming)
        raise
    os.rename(current, outgoing)
    os.rename(incoming, current)
    remove_tree(outgoing)
    if rootfs.kind == "overlay":
        fresh_work_dir(directory / "work", current)

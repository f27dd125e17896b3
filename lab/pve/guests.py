"""The real LXC containers behind the lab's Proxmox VE: one per CT, named `<prefix><vmid>`.

Plain blocking calls on api.build_host.containers and lab.snapshots, each a whole operation that succeeds or
raises LabError with the reason; LabPve runs them in worker threads. The prefix keeps the containers of one lab
(or one test run) apart from any other's under the same LXC path, and lets `destroy_all` find them without any
record.

Containers are unprivileged unless the CT's config says `unprivileged: 0`, with PVE's id map (root is the host's
100000), on a template tree shifted into it (lab.pve.images). A root disk of at most SMALL_DISK bytes (a test plan's
1 or 2 GiB) is real: a file system of that size on a loop device (api.build_host.disks), grown by resize; at most
MAX_DISKS of them exist under one LXC path at once, so a lab never holds more than a handful of loop devices.
Bigger disks stay directories, whose size is the model's alone (docs/lab-pve.md).
"""

from __future__ import annotations

import re
from pathlib import Path

from api.build_host.containers import NAME, Containers
from api.build_host.disks import attached_under
from api.build_host.errors import BuildHostError
from api.build_host.idmap import PVE_IDMAP, IdMap
from api.build_host.lxcconfig import Limits
from api.build_host.mounts import remove_tree
from lab.errors import LabError
from lab.pve.images import Images
from lab.pve.spec import GuestSpec
from lab.snapshots import Snapshots

GIB = 1024**3
SMALL_DISK = 4 * GIB  # root disks up to this size are real file systems
MAX_DISKS = 4  # real root disks under one LXC path at once (each holds a loop device)


class Guests:
    def __init__(self, containers: Containers, prefix: str, bridge: str, images: Images) -> None:
        check_prefix(prefix)
        self.containers = containers
        self.snapshots = Snapshots(containers)
        self.prefix = prefix
        self.bridge = bridge
        self.images = images

    def name(self, vmid: int) -> str:
        return f"{self.prefix}{vmid}"

    def vmid(self, name: str) -> int | None:
        """The vmid of one of our container names, or None for any other name."""
        rest = name.removeprefix(self.prefix)
        return int(rest) if rest != name and rest.isdigit() else None

    # --- life ---

    def create(self, vmid: int, ostemplate: str, spec: GuestSpec, keys: str | None) -> Path:
        """Make the stopped container from the template; returns the image it was made from."""
        idmap = _idmap(spec)
        source = self.images.source(ostemplate, idmap)
        name = self.name(vmid)
        disk = self._disk(spec)
        self.containers.create(
            name, source=source, authorized_key=keys, idmap=idmap, disk_bytes=disk, **spec.settings(self.bridge)
        )
        return source

    def start(self, vmid: int, spec: GuestSpec) -> int | None:
        """Write the config from `spec` (as PVE does at every start) and boot; returns the container's init pid."""
        name = self.name(vmid)
        if self.containers.state(name) == "STOPPED":
            self.containers.configure(name, **spec.settings(self.bridge))
            self.containers.start(name)
        return self.containers.pid(name)

    def shutdown(self, vmid: int, timeout: float, force: bool) -> bool:
        """Ask init to halt; after `timeout` seconds kill it (force) or leave it running. True when it stopped."""
        return self.containers.stop(self.name(vmid), timeout, kill=force)

    def stop(self, vmid: int) -> None:
        """Kill the container at once (PVE's hard stop)."""
        self.containers.stop(self.name(vmid), 0)

    def destroy(self, vmid: int) -> None:
        """Kill it (PVE's forced destroy stops hard) and remove it with its snapshots; a missing one is fine."""
        name = self.name(vmid)
        if self.containers.exists(name):
            self.containers.stop(name, 0)
        self.containers.destroy(name)

    def resize(self, vmid: int, size: int) -> int | None:
        """Grow the CT's root disk to `size` bytes where it is real (running or not); a directory root keeps no
        size, and PVE's model alone records it. The new init pid when the container had to restart for it (a
        host that cannot grow a mounted file system: Containers.grow), else None."""
        name = self.name(vmid)
        if self.containers.disk_size(name) is not None and self.containers.grow(name, size):
            return self.containers.pid(name)
        return None

    def set_limits(self, vmid: int, limits: Limits) -> None:
        """Memory, swap and cores on the running container now (PVE applies them to a running CT at once)."""
        self.containers.set_limits(self.name(vmid), limits)

    # --- looking ---

    def exists(self, vmid: int) -> bool:
        return self.containers.exists(self.name(vmid))

    def state(self, vmid: int) -> str | None:
        """'running' or 'stopped' as PVE says it (freezing, starting and stopping count as running); None when
        there is no such container."""
        name = self.name(vmid)
        if not self.containers.exists(name):
            return None
        return "stopped" if self.containers.state(name) == "STOPPED" else "running"

    def running(self) -> set[int]:
        """The vmids of our containers that run now."""
        return {vmid for name in self.containers.running() if (vmid := self.vmid(name)) is not None}

    # --- disks ---

    def snapshot(self, vmid: int, snapshot: str) -> None:
        self.snapshots.take(self.name(vmid), snapshot)

    def rollback(self, vmid: int, snapshot: str) -> None:
        """Kill the container if it still runs (PVE's rollback stops it hard) and put the snapshot's layer back."""
        self.containers.stop(self.name(vmid), 0)
        self.snapshots.rollback(self.name(vmid), snapshot)

    def delete_snapshot(self, vmid: int, snapshot: str) -> None:
        self.snapshots.delete(self.name(vmid), snapshot)

    def clone(self, vmid: int, newid: int, snapshot: str | None, spec: GuestSpec) -> None:
        """A full clone: the stopped container `newid` holding what `vmid` held at `snapshot` (None: now)."""
        disk = self._disk(spec) if self.containers.disk_size(self.name(vmid)) is not None else None
        settings = {**spec.settings(self.bridge), "idmap": self.containers.idmap(self.name(vmid)), "disk_bytes": disk}
        self.snapshots.clone(self.name(vmid), self.name(newid), snapshot, **settings)

    def _disk(self, spec: GuestSpec) -> int | None:
        """The size of the real disk a new container of `spec` gets, or None for a directory root (a bigger disk, or
        none asked for); LabError when the lab has MAX_DISKS already."""
        if spec.disk_bytes is None or spec.disk_bytes > SMALL_DISK:
            return None
        if len(attached_under(self.containers.lxcpath)) >= MAX_DISKS:
            raise LabError(
                f"the lab gives real disks (up to {SMALL_DISK // GIB} GiB) to at most {MAX_DISKS} containers at once, "
                "and has them all: destroy one first"
            )
        return spec.disk_bytes


def _idmap(spec: GuestSpec) -> IdMap | None:
    return PVE_IDMAP if spec.unprivileged else None


def check_prefix(prefix: str) -> None:
    """`<prefix><vmid>` must be a container name (api.build_host.containers.NAME) for every vmid PVE allows
    (up to 9 digits)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,50}", prefix) or not NAME.fullmatch(f"{prefix}999999999"):
        raise LabError(f"invalid name prefix {prefix!r}: a-z, 0-9 and '-', starting with a letter, at most 51")


def destroy_all(lxcpath: Path, prefix: str) -> list[str]:
    """Destroy every container `<prefix><digits>` under `lxcpath`, with its snapshots; the names destroyed.

    Also removes a directory of that name left without a config (a create that was killed half-way).
    """
    check_prefix(prefix)
    containers = Containers(lxcpath)
    if not containers.lxcpath.is_dir():
        return []
    names = sorted(
        entry.name for entry in containers.lxcpath.iterdir() if re.fullmatch(rf"{re.escape(prefix)}\d+", entry.name)
    )
    failures = []
    for name in names:
        try:
            if containers.exists(name):
                containers.stop(name, 0)  # thrown away: no need to wait for a clean shutdown
                containers.destroy(name)
            else:
                remove_tree(containers.directory(name))
        except BuildHostError as exc:
            failures.append(str(exc))
    if failures:
        raise LabError(f"could not destroy every container of {prefix}*: {'; '.join(failures)}")
    return names

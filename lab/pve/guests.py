"""The real LXC containers behind the lab's Proxmox VE: one per CT, named `<prefix><vmid>`.

Plain blocking calls on api.build_host.containers and lab.snapshots, each a whole operation that succeeds or
raises LabError with the reason; LabPve runs them in worker threads. The prefix keeps the containers of one lab
(or one test run) apart from any other's under the same LXC path, and lets `destroy_all` find them without any
record.
"""

from __future__ import annotations

import re
from pathlib import Path

from api.build_host.containers import NAME, Containers
from api.build_host.errors import BuildHostError
from api.build_host.lxcconfig import Limits
from api.build_host.mounts import remove_tree
from lab.errors import LabError
from lab.pve.images import Images
from lab.pve.spec import GuestSpec
from lab.snapshots import Snapshots


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
        source = self.images.source(ostemplate)
        self.containers.create(self.name(vmid), source=source, authorized_key=keys, **spec.settings(self.bridge))
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
        self.snapshots.clone(self.name(vmid), self.name(newid), snapshot, **spec.settings(self.bridge))


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

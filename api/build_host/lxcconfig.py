"""The LXC configuration file of a lab container: written from a few settings, and read back.

The config is the container's only record: `list`, `state`, `export` and `destroy` read the rootfs
location and the address from it, so nothing else has to be kept in step with it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from api.build_host.errors import BuildHostError
from api.build_host.idmap import IdMap

COMMON_CONFIG = "/usr/share/lxc/config/common.conf"
# What LXC adds for a container in a user namespace (as PVE's config for an unprivileged container includes).
USERNS_CONFIG = "/usr/share/lxc/config/userns.conf"
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
# cgroup v1 limits memory+swap only when the kernel accounts swap (swapaccount=1).
CGROUP_V1_MEMSW = CGROUP_V1_MEMORY / "memory.memsw.limit_in_bytes"


@dataclass(frozen=True)
class Rootfs:
    """Where the container's root comes from: a plain directory, or an overlay of `upper` on `lower`."""

    kind: str  # "dir" or "overlay"
    path: Path  # the directory, or the upper dir of an overlay
    lower: Path | None = None

    @property
    def spec(self) -> str:
        """The value of lxc.rootfs.path."""
        if self.kind == "overlay":
            return f"overlay:{self.lower}:{self.path}"
        return f"dir:{self.path}"

    @classmethod
    def parse(cls, spec: str) -> Rootfs:
        kind, _, rest = spec.partition(":")
        if kind == "dir" and rest:
            return cls("dir", Path(rest))
        if kind == "overlay" and rest.count(":") == 1:
            lower, upper = rest.split(":")
            return cls("overlay", Path(upper), Path(lower))
        raise BuildHostError(f"unsupported lxc.rootfs.path {spec!r} (the lab writes dir: or overlay:)")


@dataclass(frozen=True)
class Limits:
    """What the container may use, as Proxmox VE limits a container: memory and swap in MiB, a number of cores.

    Each is a cgroup setting in the syntax of the host's cgroup version, written into the config for the next
    start (`lines`) or set on a running container with lxc-cgroup (`cgroup_settings`). Swap is limited as
    memory+swap on cgroup v1 (PVE does the same), and only when the kernel accounts swap; cores pin the container
    to that many of the host's CPUs (the first ones: the lab does not balance them as PVE does).
    """

    memory_mb: int | None = None
    swap_mb: int | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        for what in ("memory_mb", "swap_mb", "cores"):
            value = getattr(self, what)
            if value is not None and (value < (0 if what == "swap_mb" else 1)):
                raise BuildHostError(f"{what} must be {'0 or more' if what == 'swap_mb' else 'positive'}, not {value}")

    def cgroup_settings(self) -> list[tuple[str, str]]:
        """(cgroup file, value) pairs; memory before memory+swap, which cgroup v1 wants at least as large."""
        v1 = CGROUP_V1_MEMORY.is_dir()
        settings = []
        if self.memory_mb is not None:
            settings.append(("memory.limit_in_bytes" if v1 else "memory.max", f"{self.memory_mb}M"))
            if self.swap_mb is not None:
                if not v1:
                    settings.append(("memory.swap.max", f"{self.swap_mb}M"))
                elif CGROUP_V1_MEMSW.exists():
                    settings.append(("memory.memsw.limit_in_bytes", f"{self.memory_mb + self.swap_mb}M"))
        if self.cores is not None:
            settings.append(("cpuset.cpus", ",".join(str(cpu) for cpu in host_cpus()[: self.cores])))
        return settings

    def lines(self) -> list[str]:
        prefix = "lxc.cgroup" if CGROUP_V1_MEMORY.is_dir() else "lxc.cgroup2"
        return [f"{prefix}.{key} = {value}" for key, value in self.cgroup_settings()]


def host_cpus() -> list[int]:
    """The CPUs this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    rootfs: Rootfs
    bridge: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    limits: Limits = field(default_factory=Limits)
    console_log: Path | None = None
    hostname: str | None = None  # the kernel's host name (lxc.uts.name); the name when None
    autostart: bool = False  # lxc.start.auto: started by lxc-autostart, PVE's `onboot`
    idmap: IdMap | None = None  # an unprivileged container's id map (None: privileged)
    hwaddr: str | None = None  # eth0's MAC address (None: a new random one at every start)

    def render(self) -> str:
        """The config file's text.

        systemd runs as init: it needs /proc, /sys and the cgroups mounted (mixed: writable where it must
        write), /dev populated by LXC (autodev), and halts on SIGRTMIN+3. No AppArmor confinement: the
        host may not have AppArmor at all, and these are test containers.
        """
        lines = [
            "# Written by ProxmoxWP's build host (api/build_host/containers.py).",
            f"lxc.include = {COMMON_CONFIG}",
            *([f"lxc.include = {USERNS_CONFIG}", *self.idmap.lines()] if self.idmap is not None else []),
            "lxc.arch = linux64",
            f"lxc.uts.name = {self.hostname or self.name}",
            f"lxc.rootfs.path = {self.rootfs.spec}",
            # overlayfs in a user namespace keeps its marks in user.* attributes (LXC 5.0 does not ask for it)
            *(["lxc.rootfs.options = userxattr"] if self.idmap is not None and self.rootfs.kind == "overlay" else []),
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {self.bridge}",
            "lxc.net.0.flags = up",
            "lxc.net.0.name = eth0",
            *([f"lxc.net.0.hwaddr = {self.hwaddr}"] if self.hwaddr else []),
            f"lxc.net.0.ipv4.address = {self.address}",
            f"lxc.net.0.ipv4.gateway = {self.gateway}",
            "lxc.apparmor.profile = unconfined",
            "lxc.autodev = 1",
            "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed",
            "lxc.signal.halt = SIGRTMIN+3",
        ]
        if self.console_log is not None:
            lines.append(f"lxc.console.logfile = {self.console_log}")
        if self.autostart:
            lines.append("lxc.start.auto = 1")
        lines += self.limits.lines()
        for line in lines:
            if "\n" in line:
                raise BuildHostError(f"a setting contains a newline: {line!r}")
        return "\n".join(lines) + "\n"


def read_config(path: Path) -> dict[str, str]:
    """`key = value` lines of an LXC config (the last value wins; comments and blanks skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            settings[key.strip()] = value.strip()
    return settings

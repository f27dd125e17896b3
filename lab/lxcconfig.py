"""The LXC configuration file of a lab container: written from a few settings, and read back.

The config is the container's only record: `list`, `state`, `export` and `destroy` read the rootfs
location and the address from it, so nothing else has to be kept in step with it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

COMMON_CONFIG = "/usr/share/lxc/config/common.conf"
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


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
        raise LabError(f"unsupported lxc.rootfs.path {spec!r} (the lab writes dir: or overlay:)")


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    rootfs: Rootfs
    bridge: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    memory_mb: int | None = None
    console_log: Path | None = None

    def render(self) -> str:
        """The config file's text.

        systemd runs as init: it needs /proc, /sys and the cgroups mounted (mixed: writable where it must
        write), /dev populated by LXC (autodev), and halts on SIGRTMIN+3. No AppArmor confinement: the
        host may not have AppArmor at all, and these are test containers.
        """
        lines = [
            "# Written by ProxmoxWP's lab package (lab/containers.py).",
            f"lxc.include = {COMMON_CONFIG}",
            "lxc.arch = linux64",
            f"lxc.uts.name = {self.name}",
            f"lxc.rootfs.path = {self.rootfs.spec}",
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {self.bridge}",
            "lxc.net.0.flags = up",
            "lxc.net.0.name = eth0",
            f"lxc.net.0.ipv4.address = {self.address}",
            f"lxc.net.0.ipv4.gateway = {self.gateway}",
            "lxc.apparmor.profile = unconfined",
            "lxc.autodev = 1",
            "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed",
            "lxc.signal.halt = SIGRTMIN+3",
        ]
        if self.console_log is not None:
            lines.append(f"lxc.console.logfile = {self.console_log}")
        if self.memory_mb is not None:
            lines.append(memory_limit_line(self.memory_mb))
        for line in lines:
            if "\n" in line:
                raise LabError(f"a setting contains a newline: {line!r}")
        return "\n".join(lines) + "\n"


def memory_limit_line(memory_mb: int) -> str:
    """The memory limit in the syntax of the host's memory controller (cgroup v1 or v2)."""
    if memory_mb <= 0:
        raise LabError(f"memory_mb must be positive, not {memory_mb}")
    if CGROUP_V1_MEMORY.is_dir():
        return f"lxc.cgroup.memory.limit_in_bytes = {memory_mb}M"
    return f"lxc.cgroup2.memory.max = {memory_mb}M"


def read_config(path: Path) -> dict[str, str]:
    """`key = value` lines of an LXC config (the last value wins; comments and blanks skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            settings[key.strip()] = value.strip()
    return settings

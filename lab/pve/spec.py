"""What a Proxmox VE container config means for the lab's LXC container behind it.

PVE keeps a container's settings in its config (hostname, net0, nameserver, memory, swap, cores, onboot, rootfs,
...) and turns them into an LXC config at every start. The lab does the same with `GuestSpec`: the settings that
change the real container, read from the model's config, and two that shape it when it is made: `unprivileged`
(PVE's default for a new container: its id map) and the root disk's size. The rest (features, tags, description)
stays in the model only: docs/lab-pve.md says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fakepve.lxc import parse_mount, parse_size, split_props

from api.build_host.lxcconfig import Limits
from lab.errors import LabError

# PVE's defaults when a create leaves them out (fakepve's create applies the same).
DEFAULT_MEMORY_MB = 512
DEFAULT_SWAP_MB = 512


@dataclass(frozen=True)
class GuestSpec:
    """The settings of one container that the lab applies to the real one."""

    hostname: str
    ip_cidr: str
    gateway: str
    nameservers: list[str] | None  # None: the host's
    memory_mb: int
    swap_mb: int
    cores: int | None  # None: every CPU of the host
    onboot: bool
    unprivileged: bool = True  # PVE creates containers unprivileged unless told otherwise
    disk_bytes: int | None = None  # the rootfs size (None: not given)
    # net0's MAC address: PVE makes one when the container is made and keeps it, so a restart does not make the
    # neighbours (the controller, the proxy) wait for their old entry to expire before they reach it again
    hwaddr: str | None = None

    def settings(self, bridge: str) -> dict[str, Any]:
        """Containers.create/configure's keyword arguments, plugged into `bridge` (the lab's, whatever net0 names:
        the lab has one bridge)."""
        return {
            "ip_cidr": self.ip_cidr,
            "gateway": self.gateway,
            "bridge": bridge,
            "nameservers": self.nameservers,
            "hostname": self.hostname,
            "memory_mb": self.memory_mb,
            "swap_mb": self.swap_mb,
            "cores": self.cores,
            "autostart": self.onboot,
            "hwaddr": self.hwaddr,
        }

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_mb, self.swap_mb, self.cores)


def guest_spec(vmid: int, config: dict[str, Any]) -> GuestSpec:
    """The spec of CT `vmid` from its PVE config; LabError naming the setting the lab cannot carry out."""
    net = split_props(config.get("net0", ""))[1] if config.get("net0") else {}
    ip_cidr = net.get("ip", "")
    if "/" not in ip_cidr:
        shown = f"ip={ip_cidr}" if ip_cidr else "no ip"
        raise LabError(f"the lab gives containers static IPv4 addresses only: net0 needs ip=ADDRESS/PREFIX ({shown})")
    gateway = net.get("gw", "")
    if not gateway:
        raise LabError("the lab needs the default gateway of net0 (gw=ADDRESS)")
    servers = [s for s in re.split(r"[\s,;]+", str(config.get("nameserver") or "")) if s]
    limits = limits_of(config)
    return GuestSpec(
        hostname=str(config.get("hostname") or f"CT{vmid}"),
        ip_cidr=ip_cidr,
        gateway=gateway,
        nameservers=servers or None,
        memory_mb=limits.memory_mb or DEFAULT_MEMORY_MB,
        swap_mb=limits.swap_mb if limits.swap_mb is not None else DEFAULT_SWAP_MB,
        cores=limits.cores,
        onboot=_true(config.get("onboot", 0)),
        unprivileged=_true(config.get("unprivileged", 1)),
        disk_bytes=rootfs_bytes(config.get("rootfs")),
        hwaddr=net.get("hwaddr") or None,
    )


def rootfs_bytes(rootfs: Any) -> int | None:
    """The size of a rootfs setting in bytes: `size=` of a volume (`drbd1:vm-101-disk-0,size=8G`), or the GiB of a
    new one as a create asks for it (`drbd1:8`); None when it gives none."""
    if not rootfs:
        return None
    mount = parse_mount(str(rootfs))
    if "size" in mount:
        return parse_size(mount["size"])
    storage, _, gib = str(mount.get("volume", "")).partition(":")
    if storage and re.fullmatch(r"\d+(\.\d+)?", gib):
        return int(float(gib) * 1024**3)
    return None


def _true(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def limits_of(config: dict[str, Any]) -> Limits:
    """Memory, swap and cores of a PVE config (PVE's defaults for memory and swap)."""
    return Limits(
        _number(config, "memory", DEFAULT_MEMORY_MB),
        _number(config, "swap", DEFAULT_SWAP_MB),
        _number(config, "cores", None),
    )


def _number(config: dict[str, Any], key: str, default: int | None) -> Any:
    value = config.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LabError(f"{key}={value!r} is not a whole number") from None

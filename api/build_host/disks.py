"""A container's root on a disk of its own: an ext4 file system in a sparse file, mounted through a loop device.

A Proxmox VE container's root volume has a size: `df /` inside shows it, a full disk refuses writes, and resize
grows it. A directory has no size, so where the size matters the lab gives the container a disk: the file
`disk.raw` (sparse: it takes only what is written) in the container's directory, formatted ext4 as PVE formats a
container volume (root directory owned by the container's root), and mounted with `mount -o loop` on the
container's `rootfs` directory, which LXC then uses as a plain directory root. `mount -o loop` sets the loop
device's autoclear flag, so unmounting it detaches the device; `release_disk` still detaches any device left on the
file, so a destroyed container never leaves one attached. Growing is online where the host allows it, as PVE grows
a mounted ext4: the file is extended, the loop device told its new capacity and resize2fs grows the file system.
ext4's online resize needs CAP_SYS_RESOURCE, which a lab host in a container may lack (`online_resize_possible`):
then the file system is grown offline, unmounted (`grow_disk(online=False)`; its container must be stopped). A disk
never shrinks.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from api.build_host.commands import run
from api.build_host.errors import BuildHostError
from api.build_host.mounts import mounts_under
from api.waiting import wait_for

DISK_FILE = "disk.raw"
MKFS_TIMEOUT = 120.0
RESIZE_TIMEOUT = 300.0
CAP_SYS_RESOURCE = 24
DETACH_TIMEOUT = 20.0


def disk_file(directory: Path) -> Path:
    """The disk of the container whose directory is `directory` (it may not exist: a directory-backed root)."""
    return Path(directory) / DISK_FILE


def make_disk(directory: Path, mountpoint: Path, size: int, owner: int = 0) -> None:
    """Create the disk of `size` bytes in `directory` and mount it at `mountpoint` (made if missing), its root
    directory owned by `owner` (the host's id of the container's root)."""
    image = disk_file(directory)
    if size < 1024**2:
        raise BuildHostError(f"a disk of {size} bytes is too small for a container's root")
    with open(image, "xb") as handle:
        handle.truncate(size)
    run(["mkfs.ext4", "-q", "-F", "-E", f"root_owner={owner}:{owner}", str(image)], timeout=MKFS_TIMEOUT)
    mountpoint.mkdir(mode=0o755, exist_ok=True)
    mount_disk(directory, mountpoint)


def mount_disk(directory: Path, mountpoint: Path) -> None:
    """Mount the container's disk at `mountpoint` unless it is mounted there already (after a reboot it is not);
    nothing to do for a directory root."""
    if disk_size(directory) is None or os.path.ismount(mountpoint):
        return
    run(["mount", "-o", "loop", str(disk_file(directory)), str(mountpoint)])


def disk_size(directory: Path) -> int | None:
    """The size of the container's disk in bytes, or None when its root is a directory."""
    image = disk_file(directory)
    return image.stat().st_size if image.is_file() else None


def online_resize_possible() -> bool:
    """This process may grow a mounted ext4 (resize2fs's ioctl wants CAP_SYS_RESOURCE)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << CAP_SYS_RESOURCE))
    return False


def grow_disk(directory: Path, mountpoint: Path, size: int, *, online: bool = True) -> None:
    """Grow the disk and its file system to `size` bytes: mounted (online), or unmounted and mounted again (offline:
    nothing may use it); BuildHostError when it would shrink."""
    image = disk_file(directory)
    current = disk_size(directory)
    if current is None:
        raise BuildHostError(f"{directory} has no disk to grow")
    if size < current:
        raise BuildHostError(f"unable to shrink disk size ({current} bytes to {size})")
    if size == current:
        return
    if not online:
        # a short-lived mount namespace may still hold a copy of the mount (lxc-usernsexec makes one while it shifts
        # a template): worth waiting for as long as the resize itself may take
        release_disk(directory, mountpoint, timeout=RESIZE_TIMEOUT)
        with open(image, "r+b") as handle:
            handle.truncate(size)
        run(["e2fsck", "-f", "-p", str(image)], timeout=RESIZE_TIMEOUT)  # resize2fs wants a checked file system
        run(["resize2fs", str(image)], timeout=RESIZE_TIMEOUT)
        mount_disk(directory, mountpoint)
        return
    mount_disk(directory, mountpoint)
    devices = loop_devices(image)
    if len(devices) != 1:
        raise BuildHostError(f"{image} should be on one loop device, and is on {devices or 'none'}")
    with open(image, "r+b") as handle:
        handle.truncate(size)
    run(["losetup", "--set-capacity", devices[0]])
    run(["resize2fs", devices[0]], timeout=RESIZE_TIMEOUT)


def release_disk(directory: Path, mountpoint: Path, *, timeout: float = DETACH_TIMEOUT) -> None:
    """Unmount the container's disk and detach every loop device on it, waiting up to `timeout` seconds for the
    devices to be let go of; nothing to do for a directory root."""
    image = disk_file(directory)
    if not image.exists():
        return
    for point in mounts_under(mountpoint):
        if run(["umount", str(point)], check=False).returncode != 0:
            run(["umount", "--lazy", str(point)])
    left: list[str] = []

    def detached() -> bool:
        # the kernel lets go of an autoclear device once its last user has, which may be a moment after the umount
        nonlocal left
        left = loop_devices(image)
        for device in left:
            run(["losetup", "--detach", device], check=False)
        return not left

    wait_for(
        detached,
        timeout=timeout,
        what=f"{image} to leave its loop device",
        last_seen=lambda: f"still on {', '.join(left)}: {holders(left)}",
        error=BuildHostError,
    )


def holders(devices: list[str]) -> str:
    """Who keeps `devices` busy: the processes whose mount namespace still mounts one (a namespace made by
    `unshare --mount` while the disk was mounted holds a copy of the mount until it ends), one per namespace."""
    numbers = set()
    for device in devices:
        with contextlib.suppress(OSError):
            rdev = os.stat(device).st_rdev
            numbers.add(f"{os.major(rdev)}:{os.minor(rdev)}")
    seen: dict[str, str] = {}
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            namespace = os.readlink(mountinfo.parent / "ns" / "mnt")
            if namespace in seen or not any(line.split()[2] in numbers for line in mountinfo.read_text().splitlines()):
                continue
            command = (mountinfo.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        seen[namespace] = f"pid {mountinfo.parent.name} ({command.strip()[:80]})"
    if not seen:
        return "something still uses it (an open file, or a mount the kernel has not let go of yet)"
    return "still mounted in the mount namespace of " + ", ".join(seen.values())


def loop_devices(image: Path) -> list[str]:
    """The loop devices attached to the file `image`."""
    return [device for device, back in attached() if back == str(image)]


def attached_under(path: Path) -> list[str]:
    """The loop devices whose file lies under `path`."""
    root = str(path).rstrip("/") + "/"
    return [device for device, back in attached() if back.startswith(root)]


def attached() -> list[tuple[str, str]]:
    """(device, file) of every attached loop device (a deleted file keeps its name, without losetup's mark)."""
    done = run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"])
    if not done.stdout.strip():
        return []
    devices = json.loads(done.stdout).get("loopdevices", [])
    return [(d["name"], (d.get("back-file") or "").removesuffix(" (deleted)")) for d in devices]

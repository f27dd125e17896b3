"""Mounting a container's overlay root on the host, and removing trees that might still hold mounts.

An overlay container's files exist only as the read-only cached rootfs (lower) plus its own upper dir; to
write into it before its first boot, or to archive it, we mount the merged view for a moment. Removing a
container or a failed build must never descend into a mount (a leftover overlay, or the /proc and /sys that
debootstrap mounts in its target): `remove_tree` unmounts what is below the tree first and then deletes
with `rm --one-file-system`, so a mount it could not undo is left alone rather than emptied.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from api.build_host.commands import run
from api.build_host.errors import BuildHostError


def overlay_supported() -> bool:
    """The running kernel has overlayfs (built in or loaded)."""
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def check_mount_path(path: Path) -> None:
    """Overlay options and LXC's `overlay:LOWER:UPPER` use `:` and `,` as separators: refuse paths with them."""
    if any(char in str(path) for char in ":,\n"):
        raise BuildHostError(f"{path} contains ':', ',' or a newline, which overlay mount options cannot carry")


@contextlib.contextmanager
def overlay_mounted(
    lower: Path, upper: Path, work: Path, target: Path, *, readonly: bool = False, userxattr: bool = False
) -> Iterator[Path]:
    """Mount lower+upper at `target` (created if missing) for the duration of the block, then unmount.

    Read-only mounts stack the upper dir as a second lower layer: no work dir is touched, and whiteouts
    (files deleted in the container) still hide what they deleted. `userxattr` keeps overlayfs' own marks in
    `user.overlay.*` attributes, as an overlay mounted in a user namespace (an unprivileged container's) does:
    it would not read the `trusted.overlay.*` ones a host mount writes by default.
    """
    for path in (lower, upper, work, target):
        check_mount_path(path)
    target.mkdir(exist_ok=True)
    if readonly:
        options = f"ro,lowerdir={upper}:{lower}"
    else:
        work.mkdir(exist_ok=True)
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if userxattr:
        options += ",userxattr"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)])
    try:
        yield target
    finally:
        run(["umount", str(target)])
        target.rmdir()


def fresh_work_dir(work: Path, upper: Path) -> None:
    """An empty overlay work dir in place of `work`, owned as `upper` is. overlayfs keeps state about its upper dir in
    the work dir, so a replaced upper dir needs a new one; and an unprivileged container's overlay, mounted by its
    root, must own its work dir, or it falls back to read-only."""
    remove_tree(work)
    work.mkdir()
    owner = upper.stat()
    os.chown(work, owner.st_uid, owner.st_gid)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = _unescape(line.split()[4])
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda point: len(point.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Delete `path` and everything in it, without ever crossing into a mounted file system."""
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_under(path):
        run(["umount", "--lazy", str(point)])
    run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=600)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field

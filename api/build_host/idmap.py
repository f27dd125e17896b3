"""Unprivileged containers: the id map, and root trees shifted into it, as Proxmox VE makes them.

PVE creates a container unprivileged unless told otherwise: its root (uid and gid 0) is the host's 100000, and
65536 ids from there are the container's (`lxc.idmap = u 0 100000 65536`, the same for groups). The template is
extracted with the ids shifted: PVE runs tar inside a user namespace with that map (`lxc-usernsexec`), so a file of
root in the archive belongs to 100000 on the host, and file capabilities are written as the namespace's (v3, with
its root id). This module does the same with `lxc-usernsexec`, for an archive or for a tree already on disk (the
cached Debian rootfs, an unpacked golden image), and writes and reads the map's lines in an LXC config.

LXC mounts an unprivileged container's root from inside its user namespace, as the map's root: every directory on
the way to the container's directory and to the tree its overlay stands on must let that id through. PVE's are
(/var/lib/lxc is 0755); the lab's and the tests' may sit in private directories (0700), so `grant_search` gives the
map's root search permission, and nothing more, with an ACL entry on each directory that would stop it.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from api.build_host.archive import ARCHIVE_TIMEOUT, EXCLUDES, TAR_OPTIONS, archive_suffix
from api.build_host.commands import run
from api.build_host.errors import BuildHostError

# The binary form of a POSIX ACL (system.posix_acl_access): a version, then (tag, permissions, id) entries.
ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
IDMAP_LINE = re.compile(r"^\s*lxc\.idmap\s*=\s*([ug])\s+0\s+(\d+)\s+(\d+)\s*$")
# What PVE's extraction leaves out: device nodes cannot be made inside a user namespace, and LXC fills /dev.
EXTRACT_EXCLUDES = ("--anchored", "--exclude=./dev/*")


@dataclass(frozen=True)
class IdMap:
    """Container ids 0..count-1 are the host's first..first+count-1, for users and groups alike."""

    first: int = 100000
    count: int = 65536

    def __post_init__(self) -> None:
        if self.first < 1 or self.count < 1:
            raise BuildHostError(f"an id map needs a first host id and a count above 0, not {self.first}/{self.count}")

    def lines(self) -> list[str]:
        return [f"lxc.idmap = {kind} 0 {self.first} {self.count}" for kind in ("u", "g")]

    def host_id(self, container_id: int = 0) -> int:
        """The host's id of a container's uid or gid (root's by default)."""
        return self.first + container_id

    def usernsexec(self) -> list[str]:
        """The start of a command run as the container's root in a user namespace with this map."""
        return ["lxc-usernsexec", "-m", f"b:0:{self.first}:{self.count}", "--"]


# Proxmox VE's map for every unprivileged container.
PVE_IDMAP = IdMap()


def read_idmap(config: Path) -> IdMap | None:
    """The id map of an LXC config (None: a privileged container)."""
    found = {}
    for line in config.read_text().splitlines():
        match = IDMAP_LINE.match(line)
        if match:
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    if not found:
        return None
    if set(found) != {"u", "g"} or found["u"] != found["g"]:
        raise BuildHostError(f"{config}: the lab writes the same lxc.idmap for users and groups, not {found}")
    return IdMap(*found["u"])


def extract_shifted(archive: Path, target: Path, idmap: IdMap) -> None:
    """Unpack `archive` into the existing, empty directory `target` as the container's root, so every owner is
    shifted into `idmap` (PVE's extraction of a template into an unprivileged container's volume)."""
    if not archive.is_file():
        raise BuildHostError(f"{archive}: no such archive")
    decompress = ["zstd", "-dc"] if archive_suffix(archive) == ".tar.zst" else ["gzip", "-dc"]
    _into_namespace([*decompress, "--", str(archive)], target, idmap)


def copy_shifted(source: Path, target: Path, idmap: IdMap) -> None:
    """Copy the privileged tree `source` into the existing, empty directory `target`, owners shifted into `idmap`:
    tar reads it as the host's root and a tar in the user namespace writes it, as `extract_shifted` does."""
    _into_namespace(["tar", "--create", "--file=-", *TAR_OPTIONS, f"--directory={source}", "."], target, idmap)


def _into_namespace(reader: list[str], target: Path, idmap: IdMap) -> None:
    """Pipe the tar stream that `reader` writes (run as the host's root) into a tar run as the namespace's root in
    `target`. The host's side opens the source and enters the target, so neither needs to be reachable by the
    namespace's root through directories that are private to the host's (a lab in a 0700 directory)."""
    _own(target, idmap)
    writer = [*idmap.usernsexec(), "tar", "--extract", "--file=-", *TAR_OPTIONS, "--same-permissions"]
    # bash gets the directory and the two argument lists as its positional parameters, never parsing any of them
    split = len(reader) + 1
    script = f'set -o pipefail; cd -- "$1" && "${{@:2:{len(reader)}}}" | "${{@:{split + 1}}}"'
    argv = ["bash", "-c", script, "shifted", str(target), *reader, *writer, *EXTRACT_EXCLUDES]
    run(argv, timeout=ARCHIVE_TIMEOUT)


def archive_shifted(root: Path, archive: Path, idmap: IdMap) -> None:
    """Write the unprivileged container's tree at `root` to `archive` with the container's own ids (as PVE's
    vzdump does, and as create_archive writes a privileged one): tar runs as the namespace's root in `root`, the
    host's side compresses and writes the archive, atomically."""
    compress = ["zstd", "-q", "-T0"] if archive_suffix(archive) == ".tar.zst" else ["gzip"]
    archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    excludes = [f"--exclude={pattern}" for pattern in EXCLUDES]
    reader = [*idmap.usernsexec(), "tar", "--create", "--file=-", *TAR_OPTIONS, "--sparse", "--anchored", *excludes]
    reader.append(".")
    script = f'set -o pipefail; cd -- "$1" && "${{@:3:{len(reader)}}}" | "${{@:{len(reader) + 3}}}" > "$2"'
    try:
        run(["bash", "-c", script, "shifted", str(root), str(temporary), *reader, *compress], timeout=ARCHIVE_TIMEOUT)
        os.replace(temporary, archive)
    finally:
        temporary.unlink(missing_ok=True)


def _own(target: Path, idmap: IdMap) -> None:
    """The directory the namespace's root unpacks into is its own (it is the container's /)."""
    os.chown(target, idmap.host_id(), idmap.host_id())


def grant_search(path: Path, uid: int) -> None:
    """Let `uid` through every directory from `/` down to `path` (search permission only, as an ACL entry), where
    neither its owner's nor the others' permissions let it through already."""
    current = Path(path).resolve()
    for directory in (current, *current.parents):
        info = os.stat(directory)
        if info.st_uid == uid or info.st_mode & stat.S_IXOTH:
            continue
        if _acl_allows(directory, uid):
            continue
        entries = _acl_entries(directory) or _mode_entries(stat.S_IMODE(info.st_mode))
        entries = [entry for entry in entries if entry[0] != ACL_USER or entry[2] != uid]
        entries = [(tag, perm | 1, ident) if tag == ACL_MASK else (tag, perm, ident) for tag, perm, ident in entries]
        entries.append((ACL_USER, 1, uid))
        if not any(tag == ACL_MASK for tag, _, _ in entries):
            group = next(perm for tag, perm, _ in entries if tag == ACL_GROUP_OBJ)
            entries.append((ACL_MASK, group | 1, ACL_UNDEFINED_ID))
        entries.sort(key=lambda entry: (entry[0], entry[2]))
        value = struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
        try:
            os.setxattr(directory, ACL_XATTR, value)
        except OSError as exc:
            raise BuildHostError(
                f"{directory} does not let an unprivileged container's root ({uid}) through, and an ACL entry for it "
                f"could not be set ({exc.strerror}): make it searchable by others (chmod o+x)"
            ) from exc


def _acl_allows(directory: Path, uid: int) -> bool:
    """The directory has an ACL entry giving `uid` search permission (and a mask that keeps it)."""
    entries = _acl_entries(directory)
    mask = next((perm for tag, perm, _ in entries if tag == ACL_MASK), 7)
    return any(tag == ACL_USER and ident == uid and perm & mask & 1 for tag, perm, ident in entries)


def _acl_entries(directory: Path) -> list[tuple[int, int, int]]:
    """The (tag, permissions, id) entries of the directory's ACL; none when it has no ACL beyond its mode."""
    try:
        value = os.getxattr(directory, ACL_XATTR)
    except OSError:
        return []
    return [struct.unpack_from("<HHI", value, offset) for offset in range(4, len(value), 8)]


def _mode_entries(mode: int) -> list[tuple[int, int, int]]:
    """The ACL that a directory's mode stands for."""
    return [
        (ACL_USER_OBJ, (mode >> 6) & 7, ACL_UNDEFINED_ID),
        (ACL_GROUP_OBJ, (mode >> 3) & 7, ACL_UNDEFINED_ID),
        (ACL_OTHER, mode & 7, ACL_UNDEFINED_ID),
    ]

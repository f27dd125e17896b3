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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from api.build_host.archive import ARCHIVE_TIMEOUT, EXCLUDES, TAR_OPTIONS, archive_suffix
from api.build_host.commands import run
from api.build_host.errors import BuildHostError

IDMAP_LINE = re.compile(r"^\s*lxc\.idmap\s*=\s*([ug])\s+0\s+(\d+)\s+(\d+)\s*$")
# What PVE's extraction leaves out: device nodes cannot be made inside a user namespace, and LXC fills /dev.
EXTRACT_EXCLUDES = ("--anchored", "--exclude=./dev/*")
MAX_LINKS = 40  # the kernel's limit on symbolic links followed in one lookup


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


def root_owner(idmap: IdMap | None) -> int:
    """The host's id of the container's root: the map's first id, or 0 for a privileged container."""
    return idmap.host_id() if idmap is not None else 0


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


def grant_search(paths: Iterable[Path], uid: int) -> None:
    """Let `uid` through every directory from `/` down to each of `paths` (search permission only, an ACL entry
    written by setfacl), where neither its owner's nor the others' permissions let it through already.

    Called before every start, not only at creation: a `chmod` of a directory on the way (pytest makes its
    temporary root 0700 again at each session, an operator may tighten a data dir) recomputes the ACL's mask
    and takes the entry's permission away again."""
    wanted: list[str] = []
    for path in paths:
        for directory in passed_through(Path(path)):
            info = os.stat(directory)
            if info.st_uid != uid and not info.st_mode & stat.S_IXOTH and str(directory) not in wanted:
                wanted.append(str(directory))
    if not wanted:
        return
    try:
        run(["setfacl", "--modify", f"user:{uid}:--x", "--", *wanted])
    except BuildHostError as exc:
        raise BuildHostError(
            f"the directories above an unprivileged container's root do not let its root ({uid}) through, and "
            f"an ACL entry for it could not be set ({exc}): make them searchable by others (chmod o+x)"
        ) from exc


def passed_through(path: Path, depth: int = 0) -> list[Path]:
    """Every directory the kernel searches on its way to `path`, in order: each symbolic link on the way is followed
    as the kernel follows it, so the directories of a link's own target count too (a link to a link: both chains),
    not only those of the fully resolved path."""
    if depth > MAX_LINKS:
        raise BuildHostError(f"{path}: too many levels of symbolic links")
    current = Path("/")
    found = [current]
    for part in Path(path).absolute().parts[1:]:
        candidate = current / part
        if candidate.is_symlink():
            target = Path(os.readlink(candidate))
            found += passed_through(target if target.is_absolute() else current / target, depth + 1)
            current = Path(os.path.realpath(candidate))
        else:
            current = candidate
        found.append(current)
    return [directory for directory in found if directory.is_dir()]

"""Writing files into a container's root filesystem from the host, without following its symlinks.

The host writes /etc/hostname, /etc/resolv.conf and root's authorized_keys into a tree that belongs to
the container. A path there may be a symlink (resolv.conf often points at /run/systemd/resolve/...), and an
absolute symlink followed from the host lands in the host's own files. So every directory on the way is
checked to be a real directory, and the file itself is replaced by rename, which replaces a symlink rather
than writing through it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from api.build_host.errors import BuildHostError
from api.build_host.mounts import remove_tree


def write_file(
    root: Path, path: str, content: str, *, mode: int = 0o644, dir_mode: int = 0o755, owner: int = 0
) -> Path:
    """Write `content` to `path` (absolute inside the container) under `root`, owned by the container's root:
    `owner` on the host (an unprivileged container's root is a shifted id, api.build_host.idmap).

    Missing directories are made with `dir_mode`; an existing file (or symlink) is replaced atomically.
    """
    parent = ensure_directory(root, str(PurePosixPath(path).parent), mode=dir_mode, owner=owner)
    name = PurePosixPath(path).name
    fd, temporary = tempfile.mkstemp(dir=parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.chmod(temporary, mode)
        os.chown(temporary, owner, owner)
        os.replace(temporary, parent / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return parent / name


def ensure_directory(root: Path, path: str, *, mode: int = 0o755, owner: int = 0) -> Path:
    """The directory `path` (absolute inside the container) under `root`, made if missing (owned by `owner`).

    BuildHostError when a component is a symlink or not a directory: we do not guess where it should lead.
    """
    current = root
    for part in PurePosixPath(path).relative_to("/").parts:
        if part in ("..", "."):
            raise BuildHostError(f"refusing the path {path!r}: it must not contain '.' or '..'")
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, mode)
            os.chmod(current, mode)  # mkdir's mode is filtered by the umask
            os.chown(current, owner, owner)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise BuildHostError(f"{path} in the container is not a plain directory at {current.relative_to(root)}")
    return current


@contextlib.contextmanager
def tree_in_place(target: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory beside `target` to build a container's root tree in. It becomes `target` (mode 0755, so
    the container's / is traversable) when the block ends, or is removed when the block fails; either way nothing
    half-built is ever at `target`."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield work
        os.chmod(work, 0o755)  # noqa: S103 - mkdtemp made it 0700
        os.rename(work, target)
    except BaseException:
        remove_tree(work)
        raise

"""Golden images: a container's root filesystem as a .tar.zst, and back.

GNU tar keeps what a root filesystem needs (numeric owners, xattrs such as file capabilities, ACLs,
sparse files) and zstd on all cores keeps a ~400 MB tree to a couple of seconds. What belongs to one
machine and not to the image stays out: SSH host keys, the machine id, apt's downloaded lists, temporary
files and logs, root's authorized_keys. `Containers.create` gives a container made from the image its own:
an empty machine id (systemd makes one on the first boot), new SSH host keys when sshd first starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from api.build_host.commands import run
from api.build_host.errors import BuildHostError

ARCHIVE_TIMEOUT = 900.0
COMPRESSORS = {".tar.zst": ["--use-compress-program=zstd -T0"], ".tar.gz": ["--gzip"]}
TAR_OPTIONS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]

# Anchored at the archive's root (`./`); `*` also matches `/`, so `*.log` reaches every log below.
EXCLUDES = (
    "./etc/ssh/ssh_host_*",
    "./etc/machine-id",
    "./var/lib/dbus/machine-id",
    "./var/lib/systemd/random-seed",
    "./root/.ssh/authorized_keys",
    "./var/lib/apt/lists/*_*",
    "./var/lib/apt/lists/partial/*",
    "./var/cache/apt/*.bin",
    "./var/cache/apt/archives/*.deb",
    "./tmp/*",
    "./var/tmp/*",
    "./var/log/*.log",
    "./var/log/*.gz",
    "./var/log/*.[0-9]",
    "./var/log/journal/*",
)


def archive_suffix(path: Path) -> str:
    """`.tar.zst` or `.tar.gz`; BuildHostError for anything else."""
    for suffix in COMPRESSORS:
        if path.name.endswith(suffix):
            return suffix
    raise BuildHostError(f"{path}: a golden image is a .tar.zst or .tar.gz archive")


def is_archive(path: Path) -> bool:
    return any(path.name.endswith(suffix) for suffix in COMPRESSORS)


def create_archive(root: Path, archive: Path) -> None:
    """Write the tree at `root` to `archive`, atomically: readers see the old file or the whole new one."""
    compressor = COMPRESSORS[archive_suffix(archive)]
    archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    excludes = [f"--exclude={pattern}" for pattern in EXCLUDES]
    argv = ["tar", "--create", f"--file={temporary}", *TAR_OPTIONS, "--sparse", *compressor, "--anchored"]
    try:
        run([*argv, *excludes, f"--directory={root}", "."], timeout=ARCHIVE_TIMEOUT)
        os.replace(temporary, archive)
    finally:
        temporary.unlink(missing_ok=True)


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack `archive` into the existing directory `target`, owners and attributes as recorded."""
    if not archive.is_file():
        raise BuildHostError(f"{archive}: no such archive")
    compressor = ["--use-compress-program=zstd"] if archive_suffix(archive) == ".tar.zst" else ["--gzip"]
    argv = ["tar", "--extract", f"--file={archive}", *TAR_OPTIONS, "--same-permissions", *compressor]
    run([*argv, f"--directory={target}"], timeout=ARCHIVE_TIMEOUT)

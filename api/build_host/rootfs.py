"""The cached Debian 12 root filesystem every lab container starts from.

Built once with debootstrap (about a minute and a half) and then only read: containers stack an overlay
on it, so it must never change while one uses it. Its directory name carries a hash of the recipe (suite,
packages, mirror, cleaning), so changing the recipe builds a new one beside the old instead of altering a
lower layer under running containers.

Two processes asking at once (two test runs, molecule scenarios in parallel) must not both build: a file
lock serialises them, and the build happens in a temporary directory renamed into place when complete, so
a rootfs directory that exists is always a whole one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from api.build_host.commands import run
from api.build_host.errors import BuildHostError
from api.build_host.files import ensure_directory, tree_in_place, write_file
from api.build_host.locks import exclusive
from api.build_host.mounts import remove_tree

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "PROXMOXWP_LAB_MIRROR"

# What Ansible needs over SSH (python3, python3-apt for its apt module, sudo for `become`), what systemd
# needs to boot and answer hostnamectl (systemd-sysv, dbus), and what apt needs for HTTPS sources.
PACKAGES = (
    "ca-certificates",
    "dbus",
    "iproute2",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "systemd-sysv",
)

# Each container makes its own SSH host keys on its first boot, before sshd starts (Debian's ssh.service
# checks its configuration with `sshd -t`, which fails without keys).
HOST_KEYS_UNIT = "ssh-host-keys.service"
HOST_KEYS_UNIT_TEXT = """\
[Unit]
Description=Generate this container's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
"""

# Bump when the cleaning below changes what a built rootfs contains.
RECIPE_VERSION = 1

BUILD_TIMEOUT = 1800.0
LOCK_TIMEOUT = BUILD_TIMEOUT + 60.0


def mirror() -> str:
    """The Debian mirror: $PROXMOXWP_LAB_MIRROR, else deb.debian.org."""
    url = os.environ.get(MIRROR_ENV, "").strip() or DEFAULT_MIRROR
    if not re.fullmatch(r"https?://[^\s]+", url):
        raise BuildHostError(f"{MIRROR_ENV} must be an http:// or https:// URL, not {url!r}")
    return url


def rootfs_name(mirror_url: str) -> str:
    """`bookworm-<hash>`: the hash changes with anything that changes the result."""
    recipe = "\n".join([SUITE, mirror_url, *PACKAGES, HOST_KEYS_UNIT_TEXT, str(RECIPE_VERSION)])
    return f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def ensure_rootfs(cache_dir: Path) -> Path:
    """The cached rootfs directory under `cache_dir`, built first if it is not there yet."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = mirror()
    target = cache_dir / rootfs_name(url)
    if target.is_dir():
        return target
    lock = cache_dir / ".rootfs.lock"
    with exclusive(lock, timeout=LOCK_TIMEOUT, what=f"another build of the rootfs to finish ({lock})"):
        if target.is_dir():  # built by whoever held the lock before us
            return target
        _remove_stale_builds(cache_dir)
        with tree_in_place(target, ".build-") as build:
            _debootstrap(build, url, cache_dir)
            _clean(build)
    return target


def _remove_stale_builds(cache_dir: Path) -> None:
    """Builds left by a process that died mid-way (we hold the lock, so none is in progress)."""
    for stale in cache_dir.glob(".build-*"):
        remove_tree(stale)


def _debootstrap(target: Path, url: str, cache_dir: Path) -> None:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), url]
    try:
        run(argv, timeout=BUILD_TIMEOUT)
    except BuildHostError as exc:
        log = target / "debootstrap" / "debootstrap.log"
        if log.is_file():
            kept = cache_dir / "debootstrap-failed.log"
            shutil.copyfile(log, kept)
            raise BuildHostError(f"{exc} (debootstrap's log: {kept})") from exc
        raise


def _clean(root: Path) -> None:
    """Remove what is per machine or only a cache, and prepare what each container fills in."""
    _empty(root / "var/lib/apt/lists", keep={"partial", "lock"})
    _empty(root / "var/cache/apt", keep={"archives"})
    _empty(root / "var/cache/apt/archives", keep={"partial", "lock"})
    _empty(root / "tmp")
    _empty(root / "var/tmp")
    for log in (root / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_file(root, "/etc/machine-id", "", mode=0o444)  # empty: systemd makes a new id on first boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/resolv.conf").unlink(missing_ok=True)  # the build host's; each container gets its own
    write_file(root, "/etc/hostname", "localhost\n")
    write_file(root, f"/etc/systemd/system/{HOST_KEYS_UNIT}", HOST_KEYS_UNIT_TEXT)
    wants = ensure_directory(root, "/etc/systemd/system/ssh.service.wants")
    (wants / HOST_KEYS_UNIT).symlink_to(f"/etc/systemd/system/{HOST_KEYS_UNIT}")
    ensure_directory(root, "/root/.ssh", mode=0o700)


def _empty(directory: Path, keep: set[str] | None = None) -> None:
    """Delete what `directory` holds (not the directory itself), except the names in `keep`."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name in (keep or set()):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()

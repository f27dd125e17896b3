"""Lab containers: made, started, stopped, archived and destroyed with Debian's LXC tools.

Each container is a directory `<lxcpath>/<name>/` holding its LXC `config`, its root (an overlay `upper`
dir on the cached rootfs, or a `rootfs` dir copied or unpacked from a golden image), LXC's `lxc.log` and
the `console.log` of its boot. Removing that directory removes the container.

Creating on the cached rootfs stacks an overlay on it, which takes milliseconds and no space; without
overlayfs the rootfs is copied (`cp -a --reflink=auto`, a few seconds). Before the first boot the host
writes the container's identity into it: hostname, hosts, resolv.conf, root's authorized_keys, and an empty
machine id so systemd makes a new one (each container also makes its own SSH host keys when it boots).
`configure` writes the config, hostname, hosts and resolv.conf of a stopped container anew (the lab's Proxmox VE
does so before every start, as PVE does); `set_limits` changes a running one's cgroup limits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from api.build_host.archive import create_archive, extract_archive, is_archive
from api.build_host.commands import run, tail
from api.build_host.disks import disk_size, grow_disk, make_disk, mount_disk, online_resize_possible, release_disk
from api.build_host.errors import BuildHostError, ContainerExistsError, ContainerNotFoundError
from api.build_host.files import write_file
from api.build_host.idmap import (
    IdMap,
    archive_shifted,
    copy_shifted,
    extract_shifted,
    grant_search,
    read_idmap,
    root_owner,
)
from api.build_host.lxcconfig import ContainerConfig, Limits, Rootfs, read_config
from api.build_host.mounts import check_mount_path, fresh_work_dir, overlay_mounted, overlay_supported, remove_tree
from api.build_host.network import check_bridge_name
from api.build_host.resolv import check_nameservers, host_nameservers, resolv_conf
from api.waiting import wait_for

NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # also a valid hostname
# A domain name the kernel takes as its host name (at most 64 characters).
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,64}}$){LABEL}(\.{LABEL})*$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
AUTHORIZED_KEY = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\n]*)?$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
KILL_TIMEOUT = 15.0
BOOT_TIMEOUT = 120.0
ATTACH_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    state: str  # LXC's: STOPPED, RUNNING, STARTING, STOPPING, ...
    ip: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "ip": self.ip}


class Containers:
    """The lab containers under one LXC path (`lxc-* -P <lxcpath>`)."""

    def __init__(self, lxcpath: Path) -> None:
        self.lxcpath = Path(lxcpath).absolute()
        check_mount_path(self.lxcpath)

    # --- creating ---

    def create(
        self,
        name: str,
        *,
        source: Path,
        ip_cidr: str,
        gateway: str,
        bridge: str,
        authorized_key: str | None,
        memory_mb: int | None = None,
        nameservers: list[str] | None = None,
        overlay: bool | None = None,
        hostname: str | None = None,
        swap_mb: int | None = None,
        cores: int | None = None,
        autostart: bool = False,
        idmap: IdMap | None = None,
        disk_bytes: int | None = None,
        hwaddr: str | None = None,
    ) -> ContainerInfo:
        """Make the stopped container `name` at `ip_cidr` (ADDRESS/PREFIX) on `bridge`, routed by `gateway`.

        `source` is the cached rootfs directory (see `ensure_rootfs`) or a golden image (`.tar.zst` or
        `.tar.gz`, see `export`). `overlay` chooses how a rootfs directory is used: stacked (True), copied
        (False) or stacked when the kernel can (None). `authorized_key` is one or more OpenSSH public key lines
        for root (None: none). `idmap` makes it unprivileged: its files are owned by the map's ids, shifted when
        they are copied or unpacked (a rootfs directory to stack an overlay on must be shifted already: see
        api.build_host.idmap). `disk_bytes` gives it a root of that size: a file system on a loop device
        (api.build_host.disks) holding a copy of the source. The rest is what `configure` takes.
        """
        check_name(name)
        settings = _settings(
            name, ip_cidr, gateway, bridge, nameservers, hostname, memory_mb, swap_mb, cores, autostart, hwaddr
        )
        keys = _check_authorized_keys(authorized_key) if authorized_key is not None else None
        source = Path(source).absolute()

        self.lxcpath.mkdir(parents=True, exist_ok=True)
        directory = self.directory(name)
        try:
            directory.mkdir(mode=0o750)
        except FileExistsError:
            raise ContainerExistsError(f"container {name} already exists in {self.lxcpath}: destroy it first") from None
        try:
            if idmap is not None:
                # LXC mounts the root as the map's root (lxc-create gives it the container's directory likewise)
                os.chown(directory, idmap.host_id(), idmap.host_id())
                grant_search((directory, source), idmap.host_id())
            rootfs = self._make_root(directory, source, overlay, idmap, disk_bytes)
            owner = root_owner(idmap)
            with self._mounted(directory, rootfs, idmap) as root:
                _write_identity(root, settings, owner)
                write_file(root, "/etc/machine-id", "", mode=0o444, owner=owner)
                if keys is not None:
                    write_file(root, "/root/.ssh/authorized_keys", keys, mode=0o600, dir_mode=0o700, owner=owner)
            # the config appears last: then the container exists
            self._write_config(directory, settings, rootfs, idmap)
        except BaseException:
            release_disk(directory, directory / "rootfs")
            remove_tree(directory)
            raise
        return ContainerInfo(name, "STOPPED", str(settings.address.ip))

    def configure(
        self,
        name: str,
        *,
        ip_cidr: str,
        gateway: str,
        bridge: str,
        nameservers: list[str] | None = None,
        hostname: str | None = None,
        memory_mb: int | None = None,
        swap_mb: int | None = None,
        cores: int | None = None,
        autostart: bool = False,
        hwaddr: str | None = None,
    ) -> None:
        """Rewrite the stopped container's LXC config and its host name, hosts and resolv.conf from these settings.

        Proxmox VE does this at every start, from its own record of the container; the lab's PVE does the same.
        `hostname` may be a domain name: /etc/hostname gets its first label, /etc/hosts both (Debian's way).
        `nameservers` default to the host's; limits not given are not set; `autostart` marks it for lxc-autostart.
        `hwaddr` keeps eth0's MAC address from one start to the next, as PVE's net0 does; without it LXC makes a new
        one at every start, and neighbours that knew the old one reach the container only once their entry expires.
        """
        self._require(name)
        settings = _settings(
            name, ip_cidr, gateway, bridge, nameservers, hostname, memory_mb, swap_mb, cores, autostart, hwaddr
        )
        if self.state(name) != "STOPPED":
            raise BuildHostError(f"container {name} is running: its configuration changes only while it is stopped")
        directory = self.directory(name)
        rootfs = self.rootfs(name)
        idmap = self.idmap(name)
        with self._mounted(directory, rootfs, idmap) as root:
            _write_identity(root, settings, root_owner(idmap))
        self._write_config(directory, settings, rootfs, idmap)

    def _write_config(self, directory: Path, settings: _Settings, rootfs: Rootfs, idmap: IdMap | None) -> None:
        config = ContainerConfig(
            directory.name,
            rootfs,
            settings.bridge,
            settings.address,
            settings.gateway,
            settings.limits,
            directory / "console.log",
            settings.hostname,
            settings.autostart,
            idmap,
            settings.hwaddr,
        )
        partial = directory / "config.partial"
        partial.write_text(config.render())
        os.replace(partial, directory / "config")

    def _make_root(
        self, directory: Path, source: Path, overlay: bool | None, idmap: IdMap | None, disk_bytes: int | None
    ) -> Rootfs:
        archive = is_archive(source)
        if not archive and not (source / "usr/bin").is_dir():
            raise BuildHostError(f"{source} is neither a root filesystem directory nor a .tar.zst/.tar.gz archive")
        if archive or disk_bytes is not None or overlay is False:
            # a whole root of its own: unpacked, or copied, into a directory or onto the container's disk
            root = directory / "rootfs"
            if disk_bytes is not None:
                make_disk(directory, root, disk_bytes, root_owner(idmap))
            else:
                root.mkdir(mode=0o755)
            _fill(root, source, idmap)
            return Rootfs("dir", root)
        if idmap is not None and source.stat().st_uid != idmap.host_id():
            raise BuildHostError(
                f"{source} is not shifted into the id map (owned by {source.stat().st_uid}): an "
                "unprivileged container stacks its overlay on a shifted tree only"
            )
        if overlay is None:
            overlay = overlay_supported()
        if overlay:
            upper = directory / "upper"
            upper.mkdir()
            # The merged / takes the upper dir's owner and mode, so they must be the lower's.
            info = source.stat()
            os.chown(upper, info.st_uid, info.st_gid)
            os.chmod(upper, info.st_mode & 0o7777)
            return Rootfs("overlay", upper, source)
        return self._make_root(directory, source, False, idmap, disk_bytes)

    @contextlib.contextmanager
    def _mounted(
        self, directory: Path, rootfs: Rootfs, idmap: IdMap | None, *, readonly: bool = False
    ) -> Iterator[Path]:
        """The container's whole root as one tree on the host, for as long as the block runs (an unprivileged
        container's overlay mounted as the container mounts it: see overlay_mounted's `userxattr`)."""
        if rootfs.kind != "overlay":
            mount_disk(directory, rootfs.path)
            yield rootfs.path
            return
        assert rootfs.lower is not None
        # LXC mounts the same layers with the work dir beside the upper one; while the container is
        # stopped we may use it.
        work = rootfs.path.parent / "work"
        with overlay_mounted(
            rootfs.lower, rootfs.path, work, directory / "mnt", readonly=readonly, userxattr=idmap is not None
        ) as root:
            yield root
        if idmap is not None and not readonly:
            fresh_work_dir(work, rootfs.path)  # the host's mount left its marks in it, as the host's root

    # --- running ---

    def start(self, name: str) -> None:
        """Boot the container (in the background) and return once LXC reports it RUNNING."""
        self._require(name)
        if self.state(name) == "RUNNING":
            return
        directory = self.directory(name)
        rootfs = self.rootfs(name)
        mount_disk(directory, rootfs.path)
        idmap = self.idmap(name)
        if idmap is not None:
            # LXC mounts the root as the map's root, which must get through to it (see grant_search: again now)
            grant_search((directory, *([rootfs.lower] if rootfs.lower is not None else [])), idmap.host_id())
        log = directory / "lxc.log"
        try:
            run([*self._lxc("lxc-start", name), "--logfile", str(log), "--logpriority", "INFO"], timeout=START_TIMEOUT)
        except BuildHostError as exc:
            raise BuildHostError(f"{exc}; {_log_errors(log)} (whole log: {log})") from exc
        self._wait_state(name, "RUNNING", START_TIMEOUT)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT, *, kill: bool = True) -> bool:
        """Shut the container down cleanly; after `timeout` seconds LXC kills it, or with `kill=False` leaves it
        running. True when it is stopped (stopped already is fine); a timeout of 0 kills it at once."""
        self._require(name)
        if self.state(name) == "STOPPED":
            return True
        if timeout > 0:
            # lxc-stop asks init to halt and kills the container itself once its timeout has passed.
            halt = [*self._lxc("lxc-stop", name), "--timeout", str(max(1, int(timeout)))]
            run([*halt, *([] if kill else ["--nokill"])], timeout=timeout + KILL_TIMEOUT, check=False)
        if self.state(name) != "STOPPED":
            if not kill:
                return False
            run([*self._lxc("lxc-stop", name), "--kill"], timeout=KILL_TIMEOUT, check=False)
        self._wait_state(name, "STOPPED", KILL_TIMEOUT)
        return True

    @contextlib.contextmanager
    def frozen(self, name: str) -> Iterator[None]:
        """The running container's processes frozen for the duration of the block (nothing writes to its root),
        a stopped one left as it is."""
        if self.state(name) != "RUNNING":
            yield
            return
        run(self._lxc("lxc-freeze", name))
        try:
            yield
        finally:
            run(self._lxc("lxc-unfreeze", name))

    def set_limits(self, name: str, limits: Limits) -> None:
        """Apply `limits` to the running container at once (its config is for the next start: see configure)."""
        pending = limits.cgroup_settings()
        # cgroup v1 wants memory <= memory+swap at every moment: raising both works in the other order, so a setting
        # refused in the first round is tried again after the others.
        for _round in range(2):
            refused = []
            for key, value in pending:
                done = run([*self._lxc("lxc-cgroup", name), key, value], check=False)
                if done.returncode != 0:
                    refused.append((key, value, tail(done.stderr or done.stdout)))
            if not refused:
                return
            pending = [(key, value) for key, value, _ in refused]
        key, value, why = refused[0]
        raise BuildHostError(f"the limit {key}={value} could not be set on container {name}: {why}")

    def destroy(self, name: str) -> None:
        """Stop the container if it runs and remove its directory; a missing container is not an error."""
        check_name(name)
        directory = self.directory(name)
        if not directory.exists():
            return
        if self.exists(name) and self.state(name) != "STOPPED":
            self.stop(name)
        release_disk(directory, directory / "rootfs")
        remove_tree(directory)

    # --- disks ---

    def disk_size(self, name: str) -> int | None:
        """The size in bytes of the container's disk, or None when its root is a directory (no size)."""
        self._require(name)
        return disk_size(self.directory(name))

    def grow(self, name: str, size: int) -> bool:
        """Grow the container's disk to `size` bytes, running or not; BuildHostError for a smaller size, or when
        its root is a directory. Where the host cannot grow a mounted file system (online_resize_possible), a
        running container is shut down for the offline resize and started again: True when it was restarted."""
        self._require(name)
        directory, root = self.directory(name), self.rootfs(name).path
        if online_resize_possible():
            grow_disk(directory, root, size)
            return False
        running = self.state(name) != "STOPPED"
        if running:
            self.stop(name)
        grow_disk(directory, root, size, online=False)
        if running:
            self.start(name)
            self._wait_booted(name)
        return running

    def _wait_booted(self, name: str) -> None:
        """Wait until the container's systemd has finished booting (its services up; failed units allowed), so a
        container restarted behind its user's back is back as it was (one without systemctl counts as booted)."""
        seen = ""

        def booted() -> bool:
            nonlocal seen
            done = self.attach(name, ["systemctl", "is-system-running"], timeout=30, check=False)
            seen = (done.stdout or done.stderr).strip()
            return done.returncode == 127 or seen in ("running", "degraded", "maintenance")

        wait_for(booted, timeout=BOOT_TIMEOUT, what=f"container {name} to boot", last_seen=lambda: seen,
                 error=BuildHostError)  # fmt: skip

    def attach(
        self, name: str, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the running container (lxc-attach, clean environment); its CompletedProcess."""
        self._require(name)
        return run(
            [*self._lxc("lxc-attach", name), "--clear-env", "--set-var", ATTACH_PATH, "--", *argv],
            timeout=timeout,
            check=check,
        )

    # --- golden images ---

    def export(self, name: str, archive: Path) -> Path:
        """Stop the container and write its root filesystem to `archive` (.tar.zst or .tar.gz), atomically.

        Machine-specific state stays out (see archive.py); a container made from the archive is new.
        """
        self._require(name)
        self.stop(name)
        archive = Path(archive).absolute()
        idmap = self.idmap(name)
        with self._mounted(self.directory(name), self.rootfs(name), idmap, readonly=True) as root:
            if idmap is not None:
                archive_shifted(root, archive, idmap)  # with the container's ids, not the host's
            else:
                create_archive(root, archive)
        return archive

    # --- looking ---

    def directory(self, name: str) -> Path:
        return self.lxcpath / name

    def exists(self, name: str) -> bool:
        check_name(name)
        return (self.directory(name) / "config").is_file()

    def state(self, name: str) -> str:
        """LXC's state of the container: STOPPED, STARTING, RUNNING, STOPPING, ..."""
        self._require(name)
        return run([*self._lxc("lxc-info", name), "--state", "--no-humanize"]).stdout.strip()

    def pid(self, name: str) -> int | None:
        """The host's pid of the container's init, or None when it is not running."""
        self._require(name)
        found = run([*self._lxc("lxc-info", name), "--pid", "--no-humanize"], check=False).stdout.strip()
        return int(found) if found.isdigit() else None

    def running(self) -> set[str]:
        """The names of the containers under the LXC path that run now (one lxc-ls for all of them)."""
        if not self.lxcpath.is_dir():
            return set()
        return set(run(["lxc-ls", "--lxcpath", str(self.lxcpath), "--running", "-1"]).stdout.split())

    def rootfs(self, name: str) -> Rootfs:
        """Where the container's root is: a directory, or an overlay's upper dir on a lower one."""
        self._require(name)
        return Rootfs.parse(read_config(self.directory(name) / "config")["lxc.rootfs.path"])

    def idmap(self, name: str) -> IdMap | None:
        """The unprivileged container's id map, None for a privileged one (from its config)."""
        self._require(name)
        return read_idmap(self.directory(name) / "config")

    def ip(self, name: str) -> str:
        """The container's address (without prefix), from its config."""
        self._require(name)
        address = read_config(self.directory(name) / "config")["lxc.net.0.ipv4.address"]
        return str(ipaddress.ip_interface(address).ip)

    def list(self) -> list[ContainerInfo]:
        """Every container under the LXC path, by name, with its state and address."""
        if not self.lxcpath.is_dir():
            return []
        names = sorted(entry.name for entry in self.lxcpath.iterdir() if NAME.fullmatch(entry.name))
        return [ContainerInfo(name, self.state(name), self.ip(name)) for name in names if self.exists(name)]

    # --- helpers ---

    def _lxc(self, program: str, name: str) -> tuple[str, ...]:
        """The start of an lxc-* command about `name` (a tuple: `list` in this class names the method)."""
        return (program, "--lxcpath", str(self.lxcpath), "--name", name)

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise ContainerNotFoundError(f"no container {name} in {self.lxcpath}")

    def _wait_state(self, name: str, wanted: str, timeout: float) -> None:
        seen = ""

        def reached() -> bool:
            nonlocal seen
            seen = self.state(name)
            return seen == wanted

        wait_for(
            reached,
            timeout=timeout,
            what=f"container {name} to be {wanted}",
            last_seen=lambda: seen,
            error=BuildHostError,
        )


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise BuildHostError(f"invalid container name {name!r}: a-z, 0-9 and '-', starting with a letter, at most 63")


@dataclass(frozen=True)
class _Settings:
    """What `create` and `configure` write, checked before anything is made or changed."""

    hostname: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    bridge: str
    nameservers: list[str]
    limits: Limits
    autostart: bool
    hwaddr: str | None


def _settings(
    name: str,
    ip_cidr: str,
    gateway: str,
    bridge: str,
    nameservers: list[str] | None,
    hostname: str | None,
    memory_mb: int | None,
    swap_mb: int | None,
    cores: int | None,
    autostart: bool,
    hwaddr: str | None = None,
) -> _Settings:
    address = _parse_address(ip_cidr)
    router = _parse_gateway(gateway, address)
    check_bridge_name(bridge)
    if hostname is not None and not HOSTNAME.fullmatch(hostname):
        raise BuildHostError(f"invalid host name {hostname!r}: a domain name of at most 64 characters")
    servers = check_nameservers(nameservers) if nameservers is not None else host_nameservers()
    limits = Limits(memory_mb, swap_mb, cores)
    return _Settings(hostname or name, address, router, bridge, servers, limits, autostart, _check_hwaddr(hwaddr))


def _check_hwaddr(hwaddr: str | None) -> str | None:
    """A unicast MAC address (six hex pairs, the group bit of the first clear), as PVE's net0 takes it; or None."""
    if hwaddr is None:
        return None
    if not MAC.fullmatch(hwaddr) or int(hwaddr[:2], 16) & 1:
        raise BuildHostError(f"invalid MAC address {hwaddr!r}: expected a unicast address such as BC:24:11:00:00:01")
    return hwaddr.upper()


def _write_identity(root: Path, settings: _Settings, owner: int) -> None:
    short = settings.hostname.split(".", 1)[0]
    write_file(root, "/etc/hostname", f"{short}\n", owner=owner)
    write_file(root, "/etc/hosts", _hosts(settings.hostname, settings.address), owner=owner)
    write_file(root, "/etc/resolv.conf", resolv_conf(settings.nameservers), owner=owner)


def _fill(root: Path, source: Path, idmap: IdMap | None) -> None:
    """Put the root tree of `source` (an archive or a directory) into the empty directory `root`, its owners shifted
    into `idmap` unless they are already (a shifted cache) or there is no map."""
    if is_archive(source):
        if idmap is not None:
            extract_shifted(source, root, idmap)
        else:
            extract_archive(source, root)
        return
    if idmap is not None and source.stat().st_uid != idmap.host_id():
        copy_shifted(source, root, idmap)
        return
    info = source.stat()
    os.chown(root, info.st_uid, info.st_gid)
    os.chmod(root, info.st_mode & 0o7777)
    run(["cp", "-a", "--reflink=auto", "--", f"{source}/.", str(root)], timeout=600)


def _hosts(hostname: str, address: ipaddress.IPv4Interface) -> str:
    short = hostname.split(".", 1)[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    return (
        f"127.0.0.1\tlocalhost\n{address.ip}\t{names}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )


def _parse_address(ip_cidr: str) -> ipaddress.IPv4Interface:
    try:
        address = ipaddress.ip_interface(ip_cidr)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv4Interface) or "/" not in ip_cidr:
        raise BuildHostError(f"invalid address {ip_cidr!r}: expected an IPv4 ADDRESS/PREFIX such as 10.231.0.10/24")
    return address


def _parse_gateway(gateway: str, address: ipaddress.IPv4Interface) -> ipaddress.IPv4Address:
    try:
        router = ipaddress.IPv4Address(gateway)
    except ValueError as exc:
        raise BuildHostError(f"invalid gateway {gateway!r}: expected an IPv4 address") from exc
    if router not in address.network or router == address.ip:
        raise BuildHostError(
            f"the gateway {gateway} must be another address of the container's subnet {address.network}"
        )
    return router


def _check_authorized_keys(text: str) -> str:
    """The key lines as authorized_keys holds them; BuildHostError unless each is an OpenSSH public key line."""
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys or not all(AUTHORIZED_KEY.fullmatch(key) for key in keys):
        raise BuildHostError("an authorized key must be an OpenSSH public key line (type, base64, optional comment)")
    return "".join(f"{key}\n" for key in keys)


def _log_errors(log: Path) -> str:
    """LXC's ERROR lines from its log: usually the reason a start failed."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
    except OSError:
        return "no LXC log"
    return tail("\n".join(lines)) if lines else "no ERROR in LXC's log"

"""Fixtures for tests that make real LXC containers; a pytest plugin (`pytest_plugins = ["tests.lxc"]`).

The run shares its caches: the Debian rootfs (about a minute to build) and the golden image (about a minute and a
half) are built once per run, by whichever worker (pytest-xdist) asks first, under a file lock, in a directory
beside the workers' own (`lab_cache`), and removed when the run ends. Each worker (or a plain run) then has its
own LXC path, SSH key and bridge on a subnet no route on the host uses; at the end of its session, passed or
failed, every container there is destroyed (a container's real root disk with it: no loop device is left
attached), then the bridge and its nftables table are removed.

Tests using these are skipped when not root or when the tools are missing (scripts/install.sh installs
them; under CI=true such a skip fails the run, tests/skip_policy.py). Containers get addresses from
`LabBridge.next_ip`, and boot with `boot_container`.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.build_host import (
    Bridge,
    BuildHostError,
    Containers,
    ensure_bridge,
    ensure_rootfs,
    free_subnet,
    remove_bridge,
    wait_ssh,
)
from api.build_host.containers import NAME
from api.build_host.disks import attached_under
from api.build_host.environment import build_environment
from api.build_host.locks import exclusive
from api.build_host.mounts import remove_tree
from lab.supervisor.parts import GoldenImagePart
from tests import guide
from tests.workers import RUN_CACHE, run_directory, worker_pool

# setfacl: unprivileged containers in private directories; mkfs.ext4 and resize2fs: small real disks
TOOLS = (
    "lxc-start",
    "debootstrap",
    "nft",
    "ip",
    "ssh",
    "ssh-keygen",
    "tar",
    "zstd",
    "setfacl",
    "mkfs.ext4",
    "resize2fs",
)
ROOT = Path(__file__).resolve().parent.parent
SUBNET_POOL = "10.231.0.0/16"  # apart from 10.77.0.0/16, the lab inventory's
FIRST_HOST = 10  # .1 is the gateway; the addresses below .10 stay free for tests that want fixed ones
SSH_TIMEOUT = 60.0
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "LogLevel=ERROR",
)  # fmt: skip


@dataclass
class LabBridge:
    """The session's bridge, and the next container address on it."""

    bridge: Bridge
    _next_host: int = field(default=FIRST_HOST)

    @property
    def name(self) -> str:
        return self.bridge.name

    @property
    def gateway(self) -> str:
        return str(self.bridge.gateway.ip)

    def next_ip(self) -> str:
        """A not yet given ADDRESS/PREFIX of the bridge's subnet (only this session uses the subnet)."""
        subnet = self.bridge.subnet
        if self._next_host >= subnet.num_addresses - 1:
            raise BuildHostError(f"no address left in {subnet}")
        address = subnet[self._next_host]
        self._next_host += 1
        return f"{address}/{subnet.prefixlen}"


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: str


@dataclass(frozen=True)
class LabHost:
    """A booted container: its name and address."""

    name: str
    ip: str


def skip_reason() -> str | None:
    """Why containers cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "real LXC containers need root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (scripts/install.sh installs them)"
    return None


@pytest.fixture(scope="session")
def lab_cache(tmp_path_factory) -> Path:
    """The run's caches, shared by its workers: `cache/` (the rootfs) and `images/` (the golden image).

    Removed at the end of the run by the process that started it (tests/conftest.py pytest_sessionfinish)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    directory = run_directory(tmp_path_factory) / RUN_CACHE
    for part in ("cache", "images"):
        (directory / part).mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory, lab_cache) -> Iterator[Path]:
    """This worker's directory for the LXC path and the SSH key; `cache` and `images` in it are the run's shared
    caches. Removed at the end."""
    base = os.environ.get("PROXMOXWP_TEST_TMP")
    directory = Path(tempfile.mkdtemp(prefix="lab-", dir=base)) if base else tmp_path_factory.mktemp("lab")
    for part in ("cache", "images"):
        (directory / part).symlink_to(lab_cache / part)
    yield directory
    remove_tree(directory)


@pytest.fixture(scope="session")
def lab_rootfs(lab_dir) -> Path:
    """The cached Debian 12 rootfs, built once in this run (api.build_host.rootfs locks the build)."""
    return ensure_rootfs(lab_dir / "cache")


@pytest.fixture(scope="session")
def lab_bridge(lab_dir) -> Iterator[LabBridge]:
    """A bridge with NAT on the first free /24 of this worker's part of 10.231.0.0/16; removed with its nft table
    at the end."""
    name = f"pwpt{os.getpid() % 100000}"
    subnet = free_subnet(worker_pool(SUBNET_POOL))
    try:
        yield LabBridge(ensure_bridge(name, f"{subnet[1]}/{subnet.prefixlen}"))
    finally:
        remove_bridge(name)


@pytest.fixture(scope="session")
def lab_containers(lab_dir, lab_bridge) -> Iterator[Containers]:
    """Containers under this run's LXC path; all destroyed at the end (before the bridge goes)."""
    containers = Containers(lab_dir / "lxc")
    yield containers
    failures = []
    names = sorted(entry.name for entry in containers.lxcpath.iterdir()) if containers.lxcpath.is_dir() else []
    for name in names:
        if not NAME.fullmatch(name):
            continue  # not a container's directory
        try:
            containers.destroy(name)
        except BuildHostError as exc:
            failures.append(str(exc))
    assert not failures, f"could not destroy every test container: {failures}"
    left = attached_under(containers.lxcpath)
    assert not left, f"the test containers' root disks are still on loop devices: {left}"


@pytest.fixture(scope="session")
def lab_ssh_key(lab_dir) -> SshKey:
    """An ed25519 key pair without passphrase, for root logins into the test containers."""
    private = lab_dir / "id_ed25519"  # the build_container role's key path too: whoever comes first makes it
    if not private.exists():
        argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "proxmoxwp-tests", "-f", str(private)]
        subprocess.run(argv, check=True, capture_output=True)
    return SshKey(private, private.with_suffix(".pub").read_text())


def role_environment(lab_dir: Path, bridge: LabBridge) -> dict[str, str]:
    """What the build_container role (and so template_build.yml and the molecule scenarios) reads: this worker's lab
    directory and bridge, and a free address on it for a build container."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PROXMOXWP_LAB_DIR": str(lab_dir),
        "PROXMOXWP_LAB_BRIDGE": bridge.name,
        "PROXMOXWP_LAB_GATEWAY": f"{bridge.gateway}/{bridge.bridge.subnet.prefixlen}",
        **build_environment(lab_dir, bridge.name, f"{bridge.gateway}/{bridge.bridge.subnet.prefixlen}"),
        "PROXMOXWP_LAB_BUILD_ADDRESS": bridge.next_ip(),
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    }


@pytest.fixture(scope="session")
def lab_golden_image(lab_dir, lab_cache, lab_rootfs, lab_bridge, lab_containers, tmp_path_factory) -> Path:
    """The golden image, built once in this run on this worker's bridge by docs/production.md's own `proxmoxwp image
    build` (with the lab's inventory, and a data dir and vault password file of the run's in place of the guide's);
    `proxmoxwp lab up` takes the same lock, so a lab of the run never builds it a second time."""
    image = GoldenImagePart()
    archive = lab_cache / "images" / image.archive_name
    with exclusive(image.lock_file(archive), timeout=image.timeout + 60, what="another build of the golden image"):
        if not archive.is_file():
            scratch = tmp_path_factory.mktemp("image-build")
            vault_password = scratch / "vault-password"  # the lab's inventory has no vaulted value: any password
            vault_password.write_text("unused\n")
            vault_password.chmod(0o600)
            command = guide.one(r"proxmoxwp image build$")
            for old, new in {
                "/opt/proxmoxwp/inventory/production": str(ROOT / "inventory" / "lab"),
                "/etc/proxmoxwp/vault-password": str(vault_password),
                "/var/lib/proxmoxwp-build": str(scratch / "data"),
                ".venv/bin/": f"{Path(sys.executable).parent}/",
            }.items():
                assert old in command, (old, command)
                command = command.replace(old, new)
            build = subprocess.run(
                ["bash", "-c", command], cwd=ROOT, env=role_environment(lab_dir, lab_bridge), capture_output=True,
                text=True, check=False, timeout=image.timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
            assert Path(build.stdout.strip()).resolve() == archive.resolve(), build.stdout
    assert archive.is_file()
    return archive


def boot_container(
    containers: Containers,
    name: str,
    *,
    source: Path,
    bridge: LabBridge,
    key: SshKey,
    **options,
) -> LabHost:
    """Create `name` from `source` at the bridge's next address, start it, and wait until SSH answers."""
    info = containers.create(
        name,
        source=source,
        ip_cidr=bridge.next_ip(),
        gateway=bridge.gateway,
        bridge=bridge.name,
        authorized_key=key.public,
        **options,
    )
    containers.start(name)
    wait_ssh(info.ip, timeout=SSH_TIMEOUT)
    return LabHost(name, info.ip)


def ssh(
    host: LabHost | str, key: SshKey, command: Sequence[str], *, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `command` (an argument list, quoted for the remote shell) as root on `host`."""
    ip = host.ip if isinstance(host, LabHost) else str(ipaddress.ip_address(host))
    argv = ["ssh", *SSH_OPTIONS, "-i", str(key.private), f"root@{ip}", shlex.join(command)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{shlex.join(command)} on {ip} exited {result.returncode}: {result.stderr.strip()}")
    return result

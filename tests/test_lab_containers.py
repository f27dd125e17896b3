"""The lab package against the real thing: LXC containers booting systemd on this machine.

One rootfs for the whole module (built once per run by tests/lxc.py); most checks share one booted
container, `web`. Needs root and Debian's lxc; skipped otherwise (except the two rootfs checks at the end,
which build nothing).
"""

from __future__ import annotations

import fcntl
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from api.build_host import BuildHostError, ContainerExistsError, ensure_bridge, free_subnet, remove_bridge
from api.build_host.lxcconfig import CGROUP_V1_MEMORY, read_config
from api.build_host.mounts import mounts_under
from api.build_host.network import IP_FORWARD, bridge_exists, bridge_ports, table_exists, table_name
from api.build_host.resolv import host_nameservers
from api.build_host.rootfs import DEFAULT_MIRROR, MIRROR_ENV, ensure_rootfs, mirror, rootfs_name
from tests.lxc import LabHost, boot_container, ssh
from tests.workers import worker_number, worker_pool

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parent.parent
WEB_MEMORY_MB = 512


@pytest.fixture(scope="module")
def web(lab_containers, lab_rootfs, lab_bridge, lab_ssh_key) -> LabHost:
    return boot_container(
        lab_containers, "web", source=lab_rootfs, bridge=lab_bridge, key=lab_ssh_key, memory_mb=WEB_MEMORY_MB
    )


def test_systemd_boots_to_running_and_root_logs_in_with_the_key(web, lab_ssh_key):
    state = ssh(web, lab_ssh_key, ["systemctl", "is-system-running", "--wait"], check=False).stdout.strip()
    failed = ssh(web, lab_ssh_key, ["systemctl", "--failed", "--plain", "--no-legend"]).stdout
    assert state == "running", f"systemd is {state!r}; failed units: {failed}"
    assert ssh(web, lab_ssh_key, ["hostname"]).stdout.strip() == "web"


def test_the_container_has_its_own_identity(web, lab_ssh_key):
    files = {
        path: ssh(web, lab_ssh_key, ["cat", path]).stdout
        for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/machine-id", "/root/.ssh/authorized_keys")
    }
    assert f"{web.ip}\tweb\n" in files["/etc/hosts"]
    assert files["/etc/resolv.conf"].split()[1::2] == host_nameservers()
    assert re.fullmatch(r"[0-9a-f]{32}\n", files["/etc/machine-id"])
    assert files["/root/.ssh/authorized_keys"].strip() == lab_ssh_key.public.strip()
    modes = ssh(web, lab_ssh_key, ["stat", "-c", "%a %U", "/", "/root/.ssh", "/root/.ssh/authorized_keys"]).stdout
    assert modes.split("\n")[:3] == ["755 root", "700 root", "600 root"]


def test_the_memory_limit_applies(web, lab_ssh_key):
    if CGROUP_V1_MEMORY.is_dir():
        limit = ssh(web, lab_ssh_key, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).stdout
    else:
        limit = ssh(web, lab_ssh_key, ["cat", "/sys/fs/cgroup/memory.max"]).stdout
    assert int(limit) == WEB_MEMORY_MB * 1024 * 1024


def test_the_container_reaches_the_host_on_the_bridge_without_nat(web, lab_ssh_key, lab_bridge):
    with socket.create_server((lab_bridge.gateway, 0)) as server:
        server.settimeout(30)
        port = server.getsockname()[1]
        peers: list[str] = []

        def accept() -> None:
            connection, (peer, _) = server.accept()
            peers.append(peer)
            connection.close()

        acceptor = threading.Thread(target=accept)
        acceptor.start()
        code = f"import socket; socket.create_connection(({lab_bridge.gateway!r}, {port}), timeout=10).close()"
        ssh(web, lab_ssh_key, ["python3", "-c", code])
        acceptor.join(timeout=30)
    assert peers == [web.ip]


def test_apt_reaches_the_mirror_through_the_nat(web, lab_ssh_key):
    result = ssh(web, lab_ssh_key, ["apt-get", "update", "-q"], check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Err:" not in result.stdout


def test_a_second_container_of_the_same_name_is_refused(web, lab_containers, lab_rootfs, lab_bridge, lab_ssh_key):
    with pytest.raises(ContainerExistsError, match="already exists"):
        lab_containers.create(
            "web",
            source=lab_rootfs,
            ip_cidr=lab_bridge.next_ip(),
            gateway=lab_bridge.gateway,
            bridge=lab_bridge.name,
            authorized_key=lab_ssh_key.public,
        )
    assert lab_containers.state("web") == "RUNNING"


@pytest.mark.parametrize("name", ["Web", "1web", "web_1", "-web", "web.example", "../web", "", "w" * 64])
def test_bad_names_are_refused_before_anything_is_made(name, lab_containers, lab_dir, lab_ssh_key):
    before = sorted(lab_containers.lxcpath.iterdir()) if lab_containers.lxcpath.exists() else []
    with pytest.raises(BuildHostError, match="invalid container name"):
        lab_containers.create(
            name,
            source=lab_dir,  # never looked at: the name is checked first
            ip_cidr="10.231.255.10/24",
            gateway="10.231.255.1",
            bridge="pwptnone",
            authorized_key=lab_ssh_key.public,
        )
    after = sorted(lab_containers.lxcpath.iterdir()) if lab_containers.lxcpath.exists() else []
    assert after == before


@pytest.mark.parametrize("hwaddr", ["BC:24:11:00:00", "01:24:11:00:00:01", "BC:24:11:00:00:0G", "bc-24-11-00-00-01"])
def test_a_bad_mac_address_is_refused_before_anything_is_made(hwaddr, lab_containers, lab_dir, lab_ssh_key):
    before = sorted(lab_containers.lxcpath.iterdir()) if lab_containers.lxcpath.exists() else []
    with pytest.raises(BuildHostError, match="invalid MAC address"):
        lab_containers.create(
            "web",
            source=lab_dir,  # never looked at: the settings are checked first
            ip_cidr="10.231.255.10/24",
            gateway="10.231.255.1",
            bridge="pwptnone",
            authorized_key=lab_ssh_key.public,
            hwaddr=hwaddr,
        )
    after = sorted(lab_containers.lxcpath.iterdir()) if lab_containers.lxcpath.exists() else []
    assert after == before


@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "copy"])
def test_stop_and_destroy_leave_nothing_behind(overlay, lab_containers, lab_rootfs, lab_bridge, lab_ssh_key):
    name = f"gone-{'overlay' if overlay else 'copy'}"
    ports_before = set(bridge_ports(lab_bridge.name))
    host = boot_container(lab_containers, name, source=lab_rootfs, bridge=lab_bridge, key=lab_ssh_key, overlay=overlay)
    directory = lab_containers.directory(name)
    kind = read_config(directory / "config")["lxc.rootfs.path"].split(":")[0]
    assert kind == ("overlay" if overlay else "dir")
    assert ssh(host, lab_ssh_key, ["systemctl", "is-system-running", "--wait"], check=False).stdout.strip() == "running"
    assert len(set(bridge_ports(lab_bridge.name)) - ports_before) == 1  # the container's veth

    lab_containers.stop(name)
    assert lab_containers.state(name) == "STOPPED"
    assert set(bridge_ports(lab_bridge.name)) == ports_before
    lab_containers.destroy(name)
    assert not directory.exists()
    assert not mounts_under(lab_containers.lxcpath / name)
    assert name not in [info.name for info in lab_containers.list()]
    lab_containers.destroy(name)  # gone already: not an error


def test_export_makes_a_golden_image_that_boots_as_a_new_machine(
    lab_containers, lab_rootfs, lab_bridge, lab_ssh_key, lab_dir
):
    first = boot_container(lab_containers, "golden-src", source=lab_rootfs, bridge=lab_bridge, key=lab_ssh_key)
    ssh(first, lab_ssh_key, ["sh", "-c", "echo made-in-the-first > /root/marker"])
    identity = ["cat", "/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key.pub"]
    first_identity = ssh(first, lab_ssh_key, identity).stdout

    archive = lab_containers.export("golden-src", lab_dir / "golden.tar.zst")
    assert lab_containers.state("golden-src") == "STOPPED"
    members = subprocess.run(
        ["tar", "--list", "--zstd", f"--file={archive}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "./root/marker" in members
    assert not [member for member in members if "ssh_host_" in member or member == "./etc/machine-id"]
    assert not list(archive.parent.glob(f".{archive.name}.*"))  # no partial file left

    second = boot_container(lab_containers, "golden-copy", source=archive, bridge=lab_bridge, key=lab_ssh_key)
    assert ssh(second, lab_ssh_key, ["cat", "/root/marker"]).stdout == "made-in-the-first\n"
    assert ssh(second, lab_ssh_key, ["systemctl", "is-system-running", "--wait"], check=False).stdout == "running\n"
    second_identity = ssh(second, lab_ssh_key, identity).stdout
    assert set(second_identity.splitlines()).isdisjoint(first_identity.splitlines())
    for name in ("golden-copy", "golden-src"):
        lab_containers.destroy(name)


def test_a_bridge_comes_and_goes_with_its_nat_table(lab_dir):
    pool = worker_pool("10.231.0.0/16")  # this worker's part of the pool: others take their subnets at the same time
    subnet = free_subnet(pool)
    gateway = f"{subnet[1]}/{subnet.prefixlen}"
    name = f"pwptbr{worker_number()}"
    try:
        ensure_bridge(name, gateway)
        bridge = ensure_bridge(name, gateway)  # again: nothing doubles
        assert bridge.subnet == subnet
        assert bridge_exists(name) and table_exists(name)
        assert IP_FORWARD.read_text().strip() == "1"
        rules = subprocess.run(
            ["nft", "list", "table", "ip", table_name(name)], capture_output=True, text=True, check=True
        ).stdout
        assert rules.count("masquerade") == 1
        assert f"ip saddr {subnet}" in rules
        assert free_subnet(pool) != subnet  # the bridge's route makes its subnet taken
    finally:
        remove_bridge(name)
    assert not bridge_exists(name) and not table_exists(name)
    remove_bridge(name)  # gone already: not an error


def test_the_cli_prints_json_and_fails_on_one_line(web, lab_containers, lab_ssh_key, lab_bridge, lab_rootfs):
    listed = _build_host("list", "--lxcpath", str(lab_containers.lxcpath))
    assert listed.returncode == 0, listed.stderr
    assert {"name": "web", "state": "RUNNING", "ip": web.ip} in json.loads(listed.stdout)["containers"]

    waited = _build_host("wait-ssh", "--ip", web.ip, "--timeout", "10")
    assert json.loads(waited.stdout)["banner"].startswith("SSH-2.0-")

    key_file = lab_ssh_key.private.with_suffix(".pub")
    refused = _build_host(
        "create",
        *("--lxcpath", str(lab_containers.lxcpath), "--name", "Bad_Name", "--source", str(lab_rootfs)),
        *("--ip", lab_bridge.next_ip(), "--gateway", lab_bridge.gateway, "--bridge", lab_bridge.name),
        *("--authorized-key-file", str(key_file)),
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "invalid container name" in refused.stderr


def test_a_second_rootfs_build_waits_for_the_first_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("api.build_host.rootfs.LOCK_TIMEOUT", 0.5)
    with open(tmp_path / ".rootfs.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process building
        with pytest.raises(BuildHostError, match="another build of the rootfs"):
            ensure_rootfs(tmp_path)
    assert not list(tmp_path.glob(".build-*"))


def test_the_mirror_comes_from_the_environment_and_names_the_rootfs(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirror() == DEFAULT_MIRROR
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example/debian")
    assert mirror() == "http://mirror.example/debian"
    assert rootfs_name(mirror()) != rootfs_name(DEFAULT_MIRROR)  # another mirror, another cached rootfs
    monkeypatch.setenv(MIRROR_ENV, "ftp://mirror.example/debian")
    with pytest.raises(BuildHostError, match=MIRROR_ENV):
        mirror()


def _build_host(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.build_host", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )

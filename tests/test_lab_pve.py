"""The lab's Proxmox VE API (lab.pve.lxc.LabPve) against real LXC containers on this machine.

Each test serves its own LabPve on loopback (HTTPS, the project's API token), whose containers live under the
session's LXC path on the session's bridge (tests/lxc.py), named `<PREFIX><vmid>`. The API answers as the fake does
(tests/test_fake_pve.py); these tests check that what it says happened really happened: a container that boots and
answers SSH, power changes, snapshots, rollback, clones, destroy, HA and a failed create that leaves nothing. The
project's own site playbooks run against it in the whole lab (test_lab_e2e.py). Each test's containers are destroyed
when it ends, pass or fail.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import wait_until
from sites import ROOT

from api.build_host.disks import attached_under
from api.build_host.idmap import PVE_IDMAP, grant_search
from api.build_host.ssh import wait_ssh
from lab.pve.fake import DRBD, TEMPLATE_VOLID
from lab.pve.guests import Guests, destroy_all
from lab.pve.images import Images
from lab.pve.lxc import LabPve
from lab.pve.serving import ServedPve
from tests.lxc import LabBridge, SshKey, ssh

pytestmark = pytest.mark.containers

NODE = "pve1"
PREFIX = "pvet-"
SSH_TIMEOUT = 60.0


class Pve:
    """The served LabPve through its HTTPS API, with the project's token, verifying its certificate."""

    def __init__(self, served: ServedPve):
        self.served = served
        self.base = f"{served.url}/api2/json"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"PVEAPIToken={served.pve.token_id}={served.pve.token_secret}"

    def request(self, method: str, path: str, **params) -> requests.Response:
        where = "params" if method in ("GET", "DELETE") else "data"
        return self.session.request(method, self.base + path, timeout=30, verify=self.served.cafile, **{where: params})

    def ok(self, method: str, path: str, **params):
        response = self.request(method, path, **params)
        assert response.status_code == 200, (response.status_code, response.reason, response.text)
        return response.json()["data"]

    def run(self, method: str, path: str, timeout: float = 120.0, **params) -> tuple[str, list[str]]:
        """Start a task, wait for its end: (exit status, log lines)."""
        upid = self.ok(method, path, **params)
        quoted = urllib.parse.quote(upid, safe="")
        status = wait_until(
            lambda: (s := self.ok("GET", f"/nodes/{NODE}/tasks/{quoted}/status"))["status"] == "stopped" and s,
            timeout=timeout,
            interval=0.2,
            what=f"task {upid}",
        )
        lines = [line["t"] for line in self.ok("GET", f"/nodes/{NODE}/tasks/{quoted}/log")]
        return status["exitstatus"], lines

    def done(self, method: str, path: str, **params) -> list[str]:
        """A task that must end OK: its log."""
        status, lines = self.run(method, path, **params)
        assert status == "OK", lines
        return lines

    def status(self, vmid: int) -> dict:
        return self.ok("GET", ct(vmid, "/status/current"))

    def vmids(self) -> list[int]:
        return sorted(r["vmid"] for r in self.ok("GET", "/cluster/resources", type="vm"))


def ct(vmid: int, rest: str = "") -> str:
    return f"/nodes/{NODE}/lxc/{vmid}{rest}"


@pytest.fixture
def templates(tmp_path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    return directory


@pytest.fixture
def lab_pve(lab_dir, lab_rootfs, lab_bridge, lab_containers, pve_pki, templates) -> Iterator[ServedPve]:
    """A started LabPve on the session's containers and bridge; its containers are destroyed at teardown."""
    guests = Guests(lab_containers, PREFIX, lab_bridge.name, Images(lab_dir / "cache", templates))
    model = LabPve(guests)
    model.watch_interval = 0.5
    served = ServedPve(model, pve_pki, time_scale=1)
    try:
        yield served
    finally:
        try:
            served.stop()
        finally:
            destroy_all(lab_containers.lxcpath, PREFIX)


@pytest.fixture
def pve(lab_pve) -> Pve:
    return Pve(lab_pve)


class Real:
    """The real side: the LXC containers behind the API."""

    def __init__(self, containers):
        self.containers = containers

    def state(self, vmid: int) -> str | None:
        name = f"{PREFIX}{vmid}"
        return self.containers.state(name) if self.containers.exists(name) else None

    def pid(self, vmid: int) -> int | None:
        return self.containers.pid(f"{PREFIX}{vmid}")

    def directory(self, vmid: int) -> Path:
        return self.containers.directory(f"{PREFIX}{vmid}")

    def kill(self, vmid: int) -> None:
        """The container dies behind the API's back (lxc-stop --kill, not waiting for anything)."""
        subprocess.run(
            ["lxc-stop", "-P", str(self.containers.lxcpath), "-n", f"{PREFIX}{vmid}", "--kill"],
            capture_output=True,
            check=True,
        )

    def listed(self) -> list[str]:
        """What lxc-ls sees under the LXC path."""
        done = subprocess.run(
            ["lxc-ls", "-P", str(self.containers.lxcpath), "-1"], capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    def cgroup(self, vmid: int, *keys: str) -> str:
        """The first of the cgroup files (v1 or v2 name) that the container has."""
        for key in keys:
            done = subprocess.run(
                ["lxc-cgroup", "-P", str(self.containers.lxcpath), "-n", f"{PREFIX}{vmid}", key],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                return done.stdout.strip()
        pytest.fail(f"none of {keys} readable for CT {vmid}")


@pytest.fixture
def real(lab_containers) -> Real:
    return Real(lab_containers)


def create(pve: Pve, vmid: int, bridge: LabBridge, key: SshKey, hostname: str | None = None, **extra) -> str:
    """A container from the Debian template at the bridge's next address; returns the address."""
    address = bridge.next_ip()
    pve.done(
        "POST",
        f"/nodes/{NODE}/lxc",
        vmid=vmid,
        ostemplate=TEMPLATE_VOLID,
        hostname=hostname or f"lab-pve-{vmid}",
        storage=DRBD,
        rootfs=extra.pop("rootfs", f"{DRBD}:8"),
        memory=256,
        swap=128,
        cores=1,
        net0=f"name=eth0,bridge=vmbr0,ip={address},gw={bridge.gateway}",
        **{"ssh-public-keys": key.public},
        **extra,
    )
    return address.split("/")[0]


def boot(pve: Pve, vmid: int, ip: str) -> None:
    pve.done("POST", ct(vmid, "/status/start"))
    wait_ssh(ip, timeout=SSH_TIMEOUT)


# ------------------------------------------------------------------------------------------- create, power


def test_a_created_container_boots_with_its_hostname_key_address_and_limits(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 101, lab_bridge, lab_ssh_key, hostname="lab-pve-one")
    assert real.state(101) == "STOPPED" and pve.status(101)["status"] == "stopped"
    boot(pve, 101, ip)
    assert ssh(ip, lab_ssh_key, ["hostname"]).stdout.strip() == "lab-pve-one"
    status = pve.status(101)
    assert status["status"] == "running" and status["pid"] == real.pid(101)
    assert int(real.cgroup(101, "memory.limit_in_bytes", "memory.max")) == 256 * 1024**2
    assert real.cgroup(101, "cpuset.cpus") == "0"
    resources = {r["vmid"]: r for r in pve.ok("GET", "/cluster/resources", type="vm")}
    assert resources[101]["status"] == "running" and resources[101]["name"] == "lab-pve-one"

    # PVE hotplugs memory into a running container: so does the lab, into its cgroup
    pve.ok("PUT", ct(101, "/config"), memory=384)
    assert int(real.cgroup(101, "memory.limit_in_bytes", "memory.max")) == 384 * 1024**2


def test_stop_start_reboot_and_shutdown_change_the_real_container(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 102, lab_bridge, lab_ssh_key)
    boot(pve, 102, ip)
    before = real.pid(102)
    pve.done("POST", ct(102, "/status/reboot"))
    assert real.state(102) == "RUNNING" and real.pid(102) not in (None, before)
    wait_ssh(ip, timeout=SSH_TIMEOUT)

    # PVE made net0's MAC address with the container and keeps it: every start has it, so the neighbours that knew
    # the container reach it at once
    hwaddr = dict(p.split("=", 1) for p in pve.ok("GET", ct(102, "/config"))["net0"].split(","))["hwaddr"]
    mac = "cat /sys/class/net/eth0/address"
    assert ssh(ip, lab_ssh_key, ["sh", "-c", mac]).stdout.strip().upper() == hwaddr
    pve.done("POST", ct(102, "/status/stop"))
    assert real.state(102) == "STOPPED" and pve.status(102)["status"] == "stopped"
    pve.done("POST", ct(102, "/status/start"))
    assert real.state(102) == "RUNNING" and pve.status(102)["status"] == "running"
    wait_ssh(ip, timeout=SSH_TIMEOUT)  # systemd must be up to halt on a shutdown request
    assert ssh(ip, lab_ssh_key, ["sh", "-c", mac]).stdout.strip().upper() == hwaddr
    pve.done("POST", ct(102, "/status/shutdown"), timeout=30)
    assert real.state(102) == "STOPPED" and pve.status(102)["status"] == "stopped"

    # a container that stops behind the API's back is reported stopped
    pve.done("POST", ct(102, "/status/start"))
    real.kill(102)
    wait_until(lambda: real.state(102) == "STOPPED", timeout=15, what="the container to die")
    assert pve.status(102)["status"] == "stopped"


# --------------------------------------------------------------------------------- snapshots and clones


def test_rollback_returns_to_the_snapshot_and_drbd_refuses_an_older_one(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 103, lab_bridge, lab_ssh_key)
    boot(pve, 103, ip)
    ssh(ip, lab_ssh_key, ["sh", "-c", "echo kept > /root/kept"])
    pve.done("POST", ct(103, "/snapshot"), snapname="first")
    assert (real.directory(103) / "snapshots" / "first").is_dir()
    # a new file, and one of the Debian rootfs deleted (an overlay whiteout)
    ssh(ip, lab_ssh_key, ["sh", "-c", "echo lost > /root/lost && rm /etc/issue"])

    pve.done("POST", ct(103, "/snapshot/first/rollback"), start=1)
    wait_ssh(ip, timeout=SSH_TIMEOUT)
    files = ssh(ip, lab_ssh_key, ["sh", "-c", "ls /root; test -e /etc/issue && echo issue"]).stdout.split()
    assert "kept" in files and "issue" in files and "lost" not in files
    ssh(ip, lab_ssh_key, ["touch", "/root/written-after-rollback"])  # the root is writable again

    pve.done("POST", ct(103, "/snapshot"), snapname="second")
    status, _ = pve.run("POST", ct(103, "/snapshot/first/rollback"))
    assert status == f"can't rollback, 'first' is not most recent snapshot on '{DRBD}:vm-103-disk-0'"
    assert real.state(103) == "RUNNING", "a refused rollback leaves the container as it was"
    pve.done("DELETE", ct(103, "/snapshot/second"))
    assert not (real.directory(103) / "snapshots" / "second").exists()
    assert [s["name"] for s in pve.ok("GET", ct(103, "/snapshot"))] == ["first", "current"]


def test_a_full_clone_from_a_snapshot_holds_what_the_snapshot_held(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 104, lab_bridge, lab_ssh_key)
    boot(pve, 104, ip)
    ssh(ip, lab_ssh_key, ["sh", "-c", "echo base > /root/marker"])
    pve.done("POST", ct(104, "/snapshot"), snapname="base")  # of the running container: frozen while copied
    ssh(ip, lab_ssh_key, ["sh", "-c", "echo later > /root/later"])

    pve.done("POST", ct(104, "/clone"), newid=105, snapname="base", full=1, hostname="lab-pve-clone", storage=DRBD)
    assert real.state(105) == "STOPPED"
    # the clone has the source's address: give it its own before it starts, as the restore playbook does
    clone_ip = lab_bridge.next_ip()
    pve.ok("PUT", ct(105, "/config"), net0=f"name=eth0,bridge=vmbr0,ip={clone_ip},gw={lab_bridge.gateway}")
    clone_ip = clone_ip.split("/")[0]
    boot(pve, 105, clone_ip)
    listed = ssh(clone_ip, lab_ssh_key, ["sh", "-c", "hostname; ls /root"]).stdout.split()
    assert listed[0] == "lab-pve-clone" and "marker" in listed and "later" not in listed
    assert real.state(104) == "RUNNING", "the source runs on"


def test_destroy_leaves_no_container_and_no_directory(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 106, lab_bridge, lab_ssh_key)
    boot(pve, 106, ip)
    pve.done("POST", ct(106, "/snapshot"), snapname="gone")
    refused = pve.request("DELETE", ct(106))
    assert (refused.status_code, refused.reason) == (500, "unable to destroy CT 106 - container is running")
    assert real.state(106) == "RUNNING"
    pve.done("DELETE", ct(106), purge=1, force=1)
    assert 106 not in pve.vmids()
    assert f"{PREFIX}106" not in real.listed() and not real.directory(106).exists()


def test_a_golden_image_in_the_templates_directory_makes_containers(pve, real, lab_bridge, lab_ssh_key, templates):
    ip = create(pve, 111, lab_bridge, lab_ssh_key)
    boot(pve, 111, ip)
    ssh(ip, lab_ssh_key, ["sh", "-c", "echo golden > /root/golden"])
    real.containers.export(f"{PREFIX}111", templates / "golden_amd64.tar.zst")  # as template_build.yml does
    golden = "local:vztmpl/golden_amd64.tar.zst"
    assert golden in [v["volid"] for v in pve.ok("GET", f"/nodes/{NODE}/storage/local/content", content="vztmpl")]

    address = lab_bridge.next_ip()
    net0 = f"name=eth0,bridge=vmbr0,ip={address},gw={lab_bridge.gateway}"
    ssh_keys = {"ssh-public-keys": lab_ssh_key.public}
    pve.done("POST", f"/nodes/{NODE}/lxc", vmid=112, ostemplate=golden, hostname="lab-pve-golden", storage=DRBD,
             rootfs=f"{DRBD}:8", net0=net0, **ssh_keys)  # fmt: skip
    boot(pve, 112, address.split("/")[0])
    assert ssh(address.split("/")[0], lab_ssh_key, ["cat", "/root/golden"]).stdout == "golden\n"
    # unpacked once into the cache, and the container an overlay on it (so its snapshots hold only its changes)
    assert real.containers.rootfs(f"{PREFIX}112").kind == "overlay"


# ----------------------------------------------------------------------------- unprivileged, real disks


def test_a_container_is_unprivileged_with_the_id_map_pve_gives_it(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 121, lab_bridge, lab_ssh_key)
    assert pve.ok("GET", ct(121, "/config"))["unprivileged"] == 1, "PVE's default for a new container"
    boot(pve, 121, ip)
    assert ssh(ip, lab_ssh_key, ["cat", "/proc/self/uid_map"]).stdout.split() == ["0", "100000", "65536"]
    # root inside is not the host's root: it may not make a device node of the host's disks
    refused = ssh(ip, lab_ssh_key, ["mknod", "/root/disk", "b", "8", "0"], check=False)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr, refused
    # seen from the host, its files (shifted from the template, written by the host, made inside) are 100000's
    ssh(ip, lab_ssh_key, ["touch", "/root/made-inside"])
    root = Path(f"/proc/{real.pid(121)}/root")
    for path in ("etc/passwd", "etc/hostname", "root/.ssh/authorized_keys", "root/made-inside"):
        assert (root / path).stat().st_uid == 100000, path
    assert (root / "etc/shadow").stat().st_gid == 100042, "the shadow group (42) shifted too"


def test_the_id_maps_root_is_let_through_links_that_lead_through_private_directories(tmp_path):
    # the tests' lab reaches its image cache as lab/cache -> lab0/cache -> lab-cache/cache: LXC walks every hop
    target, hop, lab = tmp_path / "lab-cache", tmp_path / "lab0", tmp_path / "lab"
    (target / "cache" / "images" / "tree").mkdir(parents=True)
    hop.mkdir()
    (hop / "cache").symlink_to(target / "cache")
    lab.mkdir()
    (lab / "cache").symlink_to(hop / "cache")
    for directory in (target, hop, lab):
        directory.chmod(0o700)
    tree = lab / "cache" / "images" / "tree"

    def reached() -> bool:
        return subprocess.run([*PVE_IDMAP.usernsexec(), "stat", "--", f"{tree}/."], capture_output=True).returncode == 0

    assert not reached(), "private directories keep the container's root out"
    grant_search([tree], PVE_IDMAP.host_id())
    assert reached(), "every directory of every hop lets it through"
    assert "user:100000:--x" not in subprocess.run(["getfacl", "-p", str(tree)], capture_output=True, text=True).stdout


def test_a_small_root_disk_is_real_grows_on_resize_and_never_shrinks(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 122, lab_bridge, lab_ssh_key, rootfs=f"{DRBD}:1")
    boot(pve, 122, ip)
    assert df_root_gib(ip, lab_ssh_key) == pytest.approx(1, abs=0.1)
    refused = ssh(ip, lab_ssh_key, ["fallocate", "-l", "1G", "/root/big"], check=False)
    assert refused.returncode != 0 and "No space left on device" in refused.stderr, refused

    pve.done("PUT", ct(122, "/resize"), disk="rootfs", size="2G")
    # online as PVE grows a running CT's ext4, or (a host without CAP_SYS_RESOURCE) with a restart: docs/lab-pve.md
    wait_ssh(ip, timeout=SSH_TIMEOUT)
    assert df_root_gib(ip, lab_ssh_key) == pytest.approx(2, abs=0.1)
    assert "size=2G" in pve.ok("GET", ct(122, "/config"))["rootfs"]
    smaller = pve.request("PUT", ct(122, "/resize"), disk="rootfs", size="1G")
    assert (smaller.status_code, smaller.reason) == (500, "unable to shrink disk size")
    assert (
        df_root_gib(ip, lab_ssh_key) == pytest.approx(2, abs=0.1)
        and "size=2G" in pve.ok("GET", ct(122, "/config"))["rootfs"]
    )

    # a handful of real disks at once, no more; a bigger disk stays a directory whose size is the model's
    for vmid in (123, 124, 125):
        create(pve, vmid, lab_bridge, lab_ssh_key, rootfs=f"{DRBD}:1")
    status, _ = pve.run("POST", f"/nodes/{NODE}/lxc", vmid=126, ostemplate=TEMPLATE_VOLID, rootfs=f"{DRBD}:1",
                        net0=f"name=eth0,bridge=vmbr0,ip={lab_bridge.next_ip()},gw={lab_bridge.gateway}")  # fmt: skip
    assert status.startswith("unable to create CT 126 - the lab gives real disks"), status
    assert len(attached_under(real.containers.lxcpath)) == 4
    create(pve, 127, lab_bridge, lab_ssh_key)  # 8 GiB: a directory
    assert real.containers.disk_size(f"{PREFIX}127") is None

    for vmid in (122, 123, 124, 125):
        pve.done("DELETE", ct(vmid), purge=1, force=1)
    assert attached_under(real.containers.lxcpath) == [], "a destroyed container's loop device is detached"


def df_root_gib(ip: str, key: SshKey) -> float:
    """The size of / inside the container, as `df` shows it, in GiB."""
    size = ssh(ip, key, ["df", "--output=size", "-B1", "/"]).stdout.split()[-1]
    return int(size) / 1024**3


# ------------------------------------------------------------------------------------------------ failures


def test_a_create_that_fails_for_real_fails_its_task_and_leaves_nothing(pve, real, lab_bridge, templates):
    net0 = f"name=eth0,bridge=vmbr0,ip={lab_bridge.next_ip()},gw={lab_bridge.gateway}"
    missing = "local:vztmpl/missing_amd64.tar.zst"
    status, _ = pve.run("POST", f"/nodes/{NODE}/lxc", vmid=107, ostemplate=missing, rootfs=f"{DRBD}:8", net0=net0)
    assert status == f"unable to create CT 107 - volume '{missing}' does not exist"

    # an archive in the templates directory is a template the storage lists; a broken one fails in tar
    (templates / "broken_amd64.tar.zst").write_bytes(b"not an archive")
    listed = [v["volid"] for v in pve.ok("GET", f"/nodes/{NODE}/storage/local/content", content="vztmpl")]
    assert "local:vztmpl/broken_amd64.tar.zst" in listed and TEMPLATE_VOLID in listed
    broken = "local:vztmpl/broken_amd64.tar.zst"
    status, lines = pve.run("POST", f"/nodes/{NODE}/lxc", vmid=108, ostemplate=broken, rootfs=f"{DRBD}:8", net0=net0)
    assert status.startswith("unable to create CT 108 - ") and "tar" in status, status
    assert lines[-1] == f"TASK ERROR: {status}"

    # the lab gives containers static addresses only, and says so
    dhcp = "name=eth0,bridge=vmbr0,ip=dhcp"
    status, _ = pve.run(
        "POST", f"/nodes/{NODE}/lxc", vmid=109, ostemplate=TEMPLATE_VOLID, rootfs=f"{DRBD}:8", net0=dhcp
    )
    assert status.startswith("unable to create CT 109 - ") and "static" in status, status

    assert pve.vmids() == []
    assert not any(real.directory(vmid).exists() for vmid in (107, 108, 109))
    assert not [name for name in real.listed() if name.startswith(PREFIX)]


# ---------------------------------------------------------------------------------------------------- HA


def test_the_ha_manager_starts_stops_and_restarts_the_real_container(pve, real, lab_bridge, lab_ssh_key):
    ip = create(pve, 110, lab_bridge, lab_ssh_key)
    pve.ok("POST", "/cluster/ha/resources", sid="ct:110", state="started")
    wait_until(lambda: pve.status(110)["status"] == "running", timeout=30, what="HA starts the container")
    assert real.state(110) == "RUNNING"
    wait_ssh(ip, timeout=SSH_TIMEOUT)
    first = real.pid(110)

    real.kill(110)  # it dies: the watcher notices, HA starts it again
    wait_until(lambda: real.pid(110) not in (None, first), timeout=30, what="HA restarts the container")
    wait_ssh(ip, timeout=SSH_TIMEOUT)

    # a client waits for the API's status: it says stopped once the real container is down
    pve.ok("PUT", "/cluster/ha/resources/ct:110", state="stopped")
    wait_until(lambda: pve.status(110)["status"] == "stopped", timeout=90, what="HA shuts the container down")
    assert real.state(110) == "STOPPED"
    pve.done("DELETE", ct(110), purge=1)
    assert real.state(110) is None and pve.ok("GET", "/cluster/ha/resources") == []


# ------------------------------------------------------------------------------------------------- the CLI


def test_the_service_writes_what_a_client_needs_and_stops_on_sigterm(lab_dir, lab_rootfs, lab_bridge, tmp_path):
    directory = tmp_path / "pve"
    lxcpath = lab_dir / "lxc"
    argv = [sys.executable, "-m", "lab.pve", "serve", "--bind", "127.0.0.1:0", "--dir", str(directory),
            "--bridge", lab_bridge.name, "--lxcpath", str(lxcpath), "--rootfs-cache", str(lab_dir / "cache"),
            "--name-prefix", "pvecli-"]  # fmt: skip
    orphan = lxcpath / "pvecli-999"  # left by an earlier run that died: destroyed at start
    orphan.mkdir(parents=True)
    server = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        info_file = directory / "pve.json"
        wait_until(info_file.exists, timeout=30, what="pve.json")
        info = json.loads(info_file.read_text())
        secret = Path(info["token_file"]).read_text().strip()
        assert Path(info["token_file"]).stat().st_mode & 0o777 == 0o600
        assert info["token_id"] == "proxmoxwp@pve!ansible" and info["url"] == f"https://127.0.0.1:{info['port']}"
        response = requests.get(
            f"{info['url']}/api2/json/version",
            headers={"Authorization": f"PVEAPIToken={info['token_id']}={secret}"},
            verify=info["ca_file"],
            timeout=10,
        )
        assert response.status_code == 200 and response.json()["data"]["release"]
        # three nodes by default, each with its own API endpoint trusted through the cluster's CA
        assert info["nodes"] == ["pve1", "pve2", "pve3"] and [h["node"] for h in info["hosts"]] == info["nodes"]
        assert info["hosts"][0]["port"] == info["port"] and len({h["port"] for h in info["hosts"]}) == 3
        token = {"Authorization": f"PVEAPIToken={info['token_id']}={secret}"}
        for host in info["hosts"]:
            url = f"https://{host['host']}:{host['port']}/api2/json/version"
            assert requests.get(url, headers=token, verify=info["ca_file"], timeout=10).status_code == 200, host
        assert not orphan.exists()
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
        assert server.returncode == 0, stderr
        assert not info_file.exists() and "serving https://127.0.0.1" in stderr and "stopped" in stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    made = lxcpath / "pvecli-1234"
    made.mkdir()
    done = subprocess.run([sys.executable, "-m", "lab.pve", "destroy-all", "--prefix", "pvecli-", "--lxcpath",
                           str(lxcpath)], cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout) == {"destroyed": ["pvecli-1234"]}, done.stderr
    assert not made.exists()


def test_a_failed_nodes_ha_container_is_killed_and_started_again_on_another_node(
    lab_pve, pve, real, lab_bridge, lab_ssh_key
):
    lab_pve.call(lab_pve.pve.add_node, "pve2")
    ip = create(pve, 111, lab_bridge, lab_ssh_key)
    pve.ok("POST", "/cluster/ha/resources", sid="ct:111", state="started")
    wait_until(lambda: pve.status(111)["status"] == "running", timeout=30, what="HA starts the container")
    wait_ssh(ip, timeout=SSH_TIMEOUT)
    first = real.pid(111)

    # the lab's one API stays up (it stands for pveproxy on the nodes that live); pve1 itself is gone
    lab_pve.call(lambda: setattr(lab_pve.pve, "ha_recovery_delay", 2.0))
    lab_pve.call(lab_pve.pve.fail_node, NODE)
    assert real.state(111) == "STOPPED"  # it died with its node

    def moved():
        entry = next(g for g in pve.ok("GET", "/cluster/resources", type="vm") if g["vmid"] == 111)
        return entry["node"] == "pve2" and entry["status"] == "running"

    wait_until(moved, timeout=60, what="HA recovers the container on pve2")
    assert real.state(111) == "RUNNING" and real.pid(111) != first
    wait_ssh(ip, timeout=SSH_TIMEOUT)

"""`proxmoxwp lab up / status / down`: the lab's parts really start, answer and stop, and `down` leaves the machine as
it was (no process, bridge or nftables table of the lab). The end-to-end test of the flows is test_lab_e2e.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from conftest import TOKEN, wait_until
from labs import lab_command, lab_environment, lab_pve_get

from lab.network import IP_FORWARD, bridge_exists, our_tables, remove_bridge, table_exists

pytestmark = pytest.mark.containers

SERVICES = ("dns", "pve", "proxy", "api", "worker")  # the lab's processes


def _processes_of(data_dir: Path) -> set[int]:
    """Live processes whose environment or command line names this lab's data directory, and their descendants
    (nginx clears its workers' environment): whatever the lab started."""
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            named = process.environ().get("PROXMOXWP_DATA_DIR") == str(data_dir)
            if named or any(str(data_dir) in arg for arg in process.cmdline()):
                found.add(process.pid)
                found.update(child.pid for child in process.children(recursive=True))
    return found


def _family(pid: int) -> set[int]:
    process = psutil.Process(pid)
    return {pid, *(child.pid for child in process.children(recursive=True))}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def lab_env(lab_dir, tmp_path) -> Iterator[dict[str, str]]:
    """A lab of its own (tests/labs.py): data dir in tmp, free ports, its own bridge; bearer tokens only from the
    lab's file. Whatever `lab down` leaves is removed."""
    env = lab_environment(tmp_path / "lab-data", lab_dir)
    yield env
    lab_command(env, "down", timeout=300)
    for pid in _processes_of(Path(env["PROXMOXWP_DATA_DIR"])):  # only if `lab down` failed: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    remove_bridge(env["PROXMOXWP_LAB_BRIDGE"])


def lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return lab_command(env, *args, timeout=300)


def test_lab_up_status_and_down(lab_env):
    data_dir = Path(lab_env["PROXMOXWP_DATA_DIR"])
    base = f"http://{lab_env['PROXMOXWP_LAB_BIND']}"
    bridge = lab_env["PROXMOXWP_LAB_BRIDGE"]

    before = lab(lab_env, "status", "--json")
    assert before.returncode == 3, before.stderr
    states = {part["name"]: part["state"] for part in json.loads(before.stdout)["parts"]}
    # the golden image is a cache an earlier test of this run may have filled: only its place is checked
    assert states.pop("image") in ("present", "absent")
    assert states == {"bridge": "stopped", **dict.fromkeys(SERVICES, "stopped")}

    forwarding_before = IP_FORWARD.read_text()
    others_before = our_tables()
    up = lab(lab_env, "up", "--no-golden")
    assert up.returncode == 0, up.stdout + up.stderr
    assert IP_FORWARD.read_text() == "1\n", "the lab's NAT needs forwarding"
    token_file = data_dir / "lab" / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert bridge_exists(bridge) and table_exists(bridge)

    status = lab(lab_env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["up"] is True
    assert report["api_url"] == base
    assert report["token_file"] == str(token_file)
    parts = {part["name"]: part for part in report["parts"]}
    assert all(parts[name]["state"] == "running" and parts[name]["healthy"] for name in SERVICES), parts
    assert parts["api"]["answers"] is True
    started = set().union(*(_family(parts[name]["pid"]) for name in SERVICES))
    assert started <= _processes_of(data_dir)

    health = requests.get(f"{base}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    answer = requests.get(
        f"{base}/status", params={"service_id": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["success"] is False and answer.json()["code"]
    refused = requests.get(
        f"{base}/status", params={"service_id": 1}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert refused.status_code == 401  # only the lab's token file is read
    # the lab's Proxmox VE API answers with its token, over TLS with its own CA
    nodes = lab_pve_get(data_dir, "/nodes")
    assert nodes.status_code == 200 and nodes.json()["data"], nodes.text

    again = lab(lab_env, "up", "--no-golden")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    states = json.loads(lab(lab_env, "status", "--json").stdout)["parts"]
    assert [(part["name"], part["pid"]) for part in states if part["name"] in SERVICES] == [
        (name, parts[name]["pid"]) for name in SERVICES
    ]

    down = lab(lab_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(lambda: not any(_alive(pid) for pid in started), 10, what="the lab's processes to end")
    assert not _processes_of(data_dir)
    assert not list((data_dir / "lab").glob("*.pid"))
    assert not bridge_exists(bridge) and not table_exists(bridge)
    if not others_before:  # no other bridge of ours (a test's, another lab's) needs forwarding
        assert IP_FORWARD.read_text() == forwarding_before, "IPv4 forwarding is as it was before `lab up`"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=5)

    after = lab(lab_env, "status")
    assert after.returncode == 3
    assert "stopped" in after.stdout
    assert lab(lab_env, "down").returncode == 0  # nothing to stop is fine

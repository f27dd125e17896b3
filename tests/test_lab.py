"""`proxmoxwp lab up / status / down` on the run's shared lab (tests/shared_lab.py, which checks that everything is
stopped before it runs `up`): the lab's parts really start and answer, `up` again starts nothing, and `down` leaves
the machine as it was (no process, container, bridge or nftables table of the lab). The end-to-end test of the
flows on the same lab is test_lab_e2e.py."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
import requests
from conftest import TOKEN, wait_until
from labs import lab_command, lab_pve_get, lxc_containers
from shared_lab import SERVICES, RunningLab, processes_of

from api.build_host.disks import attached_under
from api.build_host.network import IP_FORWARD, bridge_exists, our_tables, table_exists

pytestmark = pytest.mark.containers


def _family(pid: int) -> set[int]:
    process = psutil.Process(pid)
    return {pid, *(child.pid for child in process.children(recursive=True))}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def lab(shared: RunningLab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab_command(shared.env, *args, timeout=300)


def data_dir(shared: RunningLab) -> Path:
    return Path(shared.env["PROXMOXWP_DATA_DIR"])


# The first test of the shared lab waits for its start: the rootfs and the golden image, unless built already.
@pytest.mark.timeout(2400)
def test_every_part_runs_and_answers_and_only_the_labs_token_is_taken(shared_lab: RunningLab):
    base = f"http://{shared_lab.env['PROXMOXWP_LAB_BIND']}"
    bridge = shared_lab.env["PROXMOXWP_LAB_BRIDGE"]
    assert IP_FORWARD.read_text() == "1\n", "the lab's NAT needs forwarding"
    token_file = data_dir(shared_lab) / "lab" / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert bridge_exists(bridge) and table_exists(bridge)

    status = lab(shared_lab, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["up"] is True
    assert report["api_url"] == base
    assert report["token_file"] == str(token_file)
    parts = {part["name"]: part for part in report["parts"]}
    assert all(parts[name]["state"] == "running" and parts[name]["healthy"] for name in SERVICES), parts
    assert parts["api"]["answers"] is True
    assert parts["image"]["state"] == "present", "the lab makes sites from the golden image"
    started = set().union(*(_family(parts[name]["pid"]) for name in SERVICES))
    assert started <= processes_of(data_dir(shared_lab))

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
    nodes = lab_pve_get(data_dir(shared_lab), "/nodes")
    assert nodes.status_code == 200 and nodes.json()["data"], nodes.text


def test_up_again_says_already_running_and_starts_nothing(shared_lab: RunningLab):
    pids = lambda: [(p["name"], p["pid"]) for p in json.loads(lab(shared_lab, "status", "--json").stdout)["parts"]]  # noqa: E731
    before = pids()
    again = lab(shared_lab, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert pids() == before


@pytest.mark.lab_down
def test_down_stops_every_part_and_leaves_the_machine_as_it_was(shared_lab: RunningLab):
    base = f"http://{shared_lab.env['PROXMOXWP_LAB_BIND']}"
    bridge = shared_lab.env["PROXMOXWP_LAB_BRIDGE"]
    lab_files = data_dir(shared_lab) / "lab"
    parts = {part["name"]: part for part in json.loads(lab(shared_lab, "status", "--json").stdout)["parts"]}
    started = set().union(*(_family(parts[name]["pid"]) for name in SERVICES))

    down = lab(shared_lab, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(lambda: not any(_alive(pid) for pid in started), 10, what="the lab's processes to end")
    assert not processes_of(data_dir(shared_lab))
    assert not list(lab_files.glob("*.pid"))
    assert lxc_containers(lab_files / "lxc") == [], "lab down destroys the sites' containers"
    assert attached_under(lab_files) == [], "and detaches the loop devices of their disks"
    assert not bridge_exists(bridge) and not table_exists(bridge)
    if not shared_lab.others_before and not our_tables():  # no other bridge of ours came or went meanwhile
        assert IP_FORWARD.read_text() == shared_lab.forwarding_before, "IPv4 forwarding is as it was before `up`"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=5)

    after = lab(shared_lab, "status", "--json")
    assert after.returncode == 3
    states = json.loads(after.stdout)["parts"]
    assert [p["name"] for p in states if p["running"] and not p.get("optional")] == []
    assert lab(shared_lab, "down").returncode == 0  # nothing to stop is fine

"""`proxmoxwp lab up / status / down`: the lab's processes really start, answer and stop."""

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
from conftest import BIN, TOKEN, free_port, wait_until


def _processes_of(data_dir: Path) -> set[int]:
    """Live processes whose environment names this lab's data directory: whatever the lab started."""
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (
                process.pid != os.getpid()
                and process.environ().get("PROXMOXWP_DATA_DIR") == str(data_dir)
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                found.add(process.pid)
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
def lab_env(process_env, runtime, tmp_path) -> Iterator[dict[str, str]]:
    """A lab of its own: a data dir in tmp, a free port, bearer tokens only from the lab's file."""
    data_dir = tmp_path / "lab-data"
    env = {k: v for k, v in process_env.items() if k != "PROXMOXWP_API_TOKENS"}
    env["PROXMOXWP_DATA_DIR"] = str(data_dir)
    env["PROXMOXWP_LAB_BIND"] = f"127.0.0.1:{free_port()}"
    yield env
    subprocess.run([str(BIN / "proxmoxwp"), "lab", "down"], env=env, capture_output=True, timeout=120, check=False)
    for pid in _processes_of(data_dir):  # only if `lab down` failed: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def lab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "proxmoxwp"), "lab", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_lab_up_status_and_down(lab_env):
    data_dir = Path(lab_env["PROXMOXWP_DATA_DIR"])
    base = f"http://{lab_env['PROXMOXWP_LAB_BIND']}"

    before = lab(lab_env, "status", "--json")
    assert before.returncode == 3, before.stderr
    assert {part["name"]: part["state"] for part in json.loads(before.stdout)["parts"]} == {
        "api": "stopped",
        "worker": "stopped",
    }

    up = lab(lab_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    token_file = data_dir / "lab" / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32

    status = lab(lab_env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["up"] is True
    assert report["api_url"] == base
    assert report["token_file"] == str(token_file)
    parts = {part["name"]: part for part in report["parts"]}
    assert parts["api"]["state"] == "running" and parts["api"]["answers"] is True
    assert parts["worker"]["state"] == "running"
    started = set().union(*(_family(parts[name]["pid"]) for name in ("api", "worker")))
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

    again = lab(lab_env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    states = json.loads(lab(lab_env, "status", "--json").stdout)["parts"]
    assert [(part["name"], part["pid"]) for part in states] == [
        ("api", parts["api"]["pid"]),
        ("worker", parts["worker"]["pid"]),
    ]

    down = lab(lab_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(lambda: not any(_alive(pid) for pid in started), 10, what="the lab's processes to end")
    assert not _processes_of(data_dir)
    assert not list((data_dir / "lab").glob("*.pid"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=5)

    after = lab(lab_env, "status")
    assert after.returncode == 3
    assert "stopped" in after.stdout
    assert lab(lab_env, "down").returncode == 0  # nothing to stop is fine

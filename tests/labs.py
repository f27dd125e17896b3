"""Running `proxmoxwp lab` in tests: a lab of the test's own (data directory, free loopback ports, a free /24 and
a bridge name of its own), sharing this run's Debian rootfs and golden image caches (tests/lxc.py `lab_dir`)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import requests
from conftest import BIN

from api.build_host.network import free_subnet
from lab.ports import free_port
from tests.workers import worker_pool

SUBNET_POOL = "10.232.0.0/16"  # not tests/lxc.py's pool: the session's own bridge is there
PORTS = ("PVE_PORT", "NPM_PORT", "HTTP_PORT", "HTTPS_PORT", "PDNS_API_PORT")


def lab_environment(data_dir: Path, caches: Path) -> dict[str, str]:
    """The environment of a lab in `data_dir` whose rootfs cache and golden images are `caches`' own."""
    lab_files = data_dir / "lab"
    lab_files.mkdir(mode=0o700, parents=True, exist_ok=True)
    for cache in ("cache", "images"):
        (caches / cache).mkdir(exist_ok=True)
        if not (lab_files / cache).exists():
            (lab_files / cache).symlink_to(caches / cache)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOXWP_")}
    env.update({f"PROXMOXWP_LAB_{name}": str(free_port()) for name in PORTS})
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PROXMOXWP_DATA_DIR=str(data_dir),
        PROXMOXWP_LAB_BIND=f"127.0.0.1:{free_port()}",
        PROXMOXWP_LAB_DNS_PORT=str(free_port(udp=True)),
        PROXMOXWP_LAB_BRIDGE=f"pwpe{secrets.token_hex(3)}",
        PROXMOXWP_LAB_NETWORK=str(free_subnet(worker_pool(SUBNET_POOL))),
        PROXMOXWP_PUBLIC_IPS="127.0.0.1/32",
    )
    return env


def lab_command(env: dict[str, str], *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "proxmoxwp"), "lab", *args],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def lxc_containers(lxcpath: Path) -> list[str]:
    """The LXC containers under `lxcpath` (running or not)."""
    if not lxcpath.is_dir():
        return []
    listed = subprocess.run(["lxc-ls", "-P", str(lxcpath)], capture_output=True, text=True, check=False)
    return listed.stdout.split()


def lab_pve_get(data_dir: Path, path: str) -> requests.Response:
    """GET `path` (e.g. `/nodes`; `{node}` is the lab's node) of a lab's Proxmox VE API, with its token and CA."""
    pve = json.loads((data_dir / "lab" / "pve" / "pve.json").read_text())
    secret = Path(pve["token_file"]).read_text().strip()
    return requests.get(
        f"{pve['url']}/api2/json{path.format(node=pve['node'])}",
        headers={"Authorization": f"PVEAPIToken={pve['token_id']}={secret}"},
        verify=pve["ca_file"],
        timeout=10,
    )

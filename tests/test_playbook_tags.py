"""Operators run one part of a playbook by its tag (docs/operations.md, "Running one part"), against the
project's fake Proxmox VE, its PowerDNS and its NPM double: `--tags proxy`, `--tags wordpress` and `--tags hardening`
run their part and nothing else, and a part that fails removes nothing it did not make."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests
from sites import cluster, hand_run, site_inventory

from lab.ports import free_port

pytestmark = pytest.mark.cluster

SERVICE = 4303
PUBLIC_IP = "203.0.113.10"
SITE = ["-e", "plan=basic", "-e", f"public_ip={PUBLIC_IP}", "-e", "email=owner@example.com"]
# Every part runs these: the checks of the request and the look-up of the site's container.
SHARED = {"Check the plan", "Check that the public address the subdomain points to is given",
          "Check that the plan sets PHP's limits", "Find the site's containers",
          "Refuse to go on without the site's container", "Remember where the site lives",
          "Reach the container over SSH in the next play"}  # fmt: skip


def site_create(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    return hand_run(inventory, "site_create.yml", "-e", f"service_id={SERVICE}", *SITE, *args)


def tasks_run(output: str) -> set[str]:
    """The tasks the run took up (done, changed, failed or skipped by their condition): their names without the
    role's prefix. A task left out by the tags is not shown at all."""
    return {name.split(" : ", 1)[-1] for name in re.findall(r"^TASK \[(.+?)\] \**$", output, re.MULTILINE)}


def world(pve, edge_peers) -> tuple:
    """What a visitor and the operator see: the cluster, the subdomain's records and the proxy hosts."""
    subdomain = edge_peers.subdomain(SERVICE)
    hosts = {name: (h["forward_host"], h["enabled"], h["certificate_id"]) for name, h in edge_peers.hosts().items()}
    return cluster(pve), edge_peers.addresses(subdomain), hosts


@pytest.fixture
def inventory(tmp_path, pve_api, edge_peers) -> Path:
    """Containers get loopback addresses, and SSH to them is a loopback port nothing answers (the fake's
    containers have no sshd)."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return site_inventory(
        tmp_path, pve_api, edge_peers.settings,
        proxmoxwp_ct_network="127.0.0.0/8", proxmoxwp_ct_gateway="127.0.0.1",
        proxmoxwp_ct_addresses={"ranges": ["127.0.0.100-127.0.0.199"], "exclude": []},
        proxmoxwp_ct_ssh={"user": "root", "port": free_port(), "private_key_file": str(key), "timeout": 3},
    )  # fmt: skip


def test_one_tag_runs_one_part_of_site_create(inventory, pve, edge_peers, npm):
    created = site_create(inventory)
    assert created.returncode == 0, created.stdout[-3000:]
    made = world(pve, edge_peers)
    subdomain = edge_peers.subdomain(SERVICE)
    assert made[1] == [PUBLIC_IP] and subdomain in made[2]

    # The proxy host is lost behind the playbooks' back; its part alone makes it again.
    host = edge_peers.hosts()[subdomain]
    gone = requests.delete(
        f"{npm.url}/nginx/proxy-hosts/{host['id']}", headers={"Authorization": f"Bearer {npm.token()}"}, timeout=10
    )
    assert gone.status_code == 200, gone.text
    proxy = site_create(inventory, "--tags", "proxy")
    assert proxy.returncode == 0, proxy.stdout[-3000:]
    ran = tasks_run(proxy.stdout) - SHARED
    assert {"Make the subdomain's proxy host", "Give the subdomain's proxy host its certificate"} <= ran
    assert not {"Create and start the container", "Point the subdomain at the public address",
                "Take the snapshot a reset returns to", "Install and set up WordPress"} & ran  # fmt: skip
    after = world(pve, edge_peers)
    assert after[0] == made[0] and after[1] == made[1], "the proxy part touched only the proxy"
    assert after[2][subdomain][:2] == made[2][subdomain][:2]

    # The WordPress part alone, in a container that does not answer: it fails, and removes nothing it did not make.
    wordpress = site_create(
        inventory, "--tags", "wordpress", "-e", "proxmoxwp_wordpress_install=true", "-e", "admin_password=pw-01234567"
    )
    assert wordpress.returncode != 0
    assert "WordPress could not be set up in the container" in wordpress.stdout, wordpress.stdout[-4000:]
    ran = tasks_run(wordpress.stdout) - SHARED
    assert "Wait until the container accepts the controller's login" in ran
    assert not {"Create and start the container", "Point the subdomain at the public address",
                "Make the subdomain's proxy host", "Give the subdomain's proxy host its certificate",
                "Take the snapshot a reset returns to"} & ran  # fmt: skip
    assert world(pve, edge_peers) == after, "the WordPress part changed nothing on the cluster or at the edge"

    # Hardening alone, for a site made before it: no public address needed, only the container. One that does not
    # answer fails the part with its reason, and nothing else runs or changes.
    hardening = hand_run(
        inventory, "site_create.yml", "-e", f"service_id={SERVICE}", "-e", "plan=basic", "--tags", "hardening",
        "-e", "proxmoxwp_wordpress_install=true",
    )  # fmt: skip
    assert hardening.returncode != 0
    assert "The site could not be hardened" in hardening.stdout, hardening.stdout[-4000:]
    ran = tasks_run(hardening.stdout) - SHARED
    assert "Wait until the container accepts the controller's login" in ran
    assert not {"Create and start the container", "Install and set up WordPress",
                "Point the subdomain at the public address", "Make the subdomain's proxy host",
                "Give the subdomain's proxy host its certificate",
                "Take the snapshot a reset returns to"} & ran  # fmt: skip
    assert world(pve, edge_peers) == after, "the hardening part changed nothing on the cluster or at the edge"

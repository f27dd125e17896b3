"""The wordpress role in real LXC containers on this machine: molecule's two scenarios (from a bare Debian
rootfs and from the golden image), and the health check's failures.

Every container lives under this run's lab directory (tests/lxc.py), which is cleaned up, pass or fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sites import ROOT

from lab import wait_ssh
from tests.lxc import LabBridge

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1500)]

ROLE = ROOT / "roles" / "wordpress"
PASSWORD = "correct horse battery {staple}"  # the molecule scenarios' admin password (shared/group_vars)
GOLDEN = "images/debian-12-proxmoxwp-wordpress_amd64.tar.zst"


@pytest.fixture(scope="module")
def lab_env(lab_dir: Path, lab_rootfs: Path, lab_bridge: LabBridge, lab_containers) -> dict[str, str]:
    """What the lab_container role and the scenarios read: this run's directory, bridge and build address."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PROXMOXWP_LAB_DIR": str(lab_dir),
        "PROXMOXWP_LAB_BRIDGE": lab_bridge.name,
        "PROXMOXWP_LAB_GATEWAY": f"{lab_bridge.gateway}/{lab_bridge.bridge.subnet.prefixlen}",
        "PROXMOXWP_LAB_BUILD_ADDRESS": lab_bridge.next_ip(),
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    }


@pytest.fixture(scope="module")
def golden_image(lab_env: dict[str, str], lab_dir: Path) -> Path:
    """The golden image, built once by playbooks/template_build.yml as an operator runs it."""
    build = subprocess.run(
        ["ansible-playbook", "-i", "inventory/lab", "playbooks/template_build.yml"],
        cwd=ROOT, env=lab_env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:]
    archive = lab_dir / GOLDEN
    assert archive.is_file()
    return archive


def molecule(scenario: str, env: dict[str, str], address: str) -> str:
    result = subprocess.run(
        ["molecule", "test", "--scenario-name", scenario],
        cwd=ROLE, env={**env, "PROXMOXWP_LAB_ADDRESS": address}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def all_actions_succeeded(output: str, scenario: str) -> bool:
    """Molecule's summary: destroy, create, converge, idempotence, verify, destroy, each successful."""
    summary = re.search(rf"^{scenario}\s*:\s*actions=(\d+)\s+successful=(\d+)", output, re.MULTILINE)
    return summary is not None and summary.groups() == ("6", "6")


def test_a_bare_debian_container_becomes_a_wordpress_site(lab_env, lab_bridge, lab_containers):
    output = molecule("default", lab_env, lab_bridge.next_ip())

    assert all_actions_succeeded(output, "default"), output[-3000:]
    assert "Install the web server, PHP and the database server" in output
    assert PASSWORD not in output
    assert not lab_containers.list(), "molecule's destroy left a container"


def test_a_container_from_the_golden_image_only_does_the_per_site_part(
    lab_env, lab_bridge, lab_containers, golden_image
):
    output = molecule("golden", lab_env, lab_bridge.next_ip())

    assert all_actions_succeeded(output, "golden"), output[-3000:]
    # The image half is skipped as a whole: not one package task ran.
    assert "Install the web server, PHP and the database server" not in output
    assert "Write wp-config.php" in output
    assert PASSWORD not in output
    assert not lab_containers.list()


def test_the_health_check_fails_with_what_it_saw(
    lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, golden_image
):
    address = lab_bridge.next_ip()
    lab_containers.create(
        "health", source=golden_image, ip_cidr=address, gateway=lab_bridge.gateway, bridge=lab_bridge.name,
        authorized_key=lab_ssh_key.public,
    )  # fmt: skip
    lab_containers.start("health")
    host = address.split("/")[0]
    inventory = {
        "all": {
            "hosts": {
                "health": {
                    "ansible_host": host,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(lab_ssh_key.private),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            },
            "vars": {
                "wordpress_source": "debian",
                "wordpress_site_domain": "s7.sites.lab.test",
                "wordpress_admin_email": "owner@example.com",
                "wordpress_admin_password": "another password 123",
                "wordpress_health_timeout": 4,
            },
        }
    }
    inventory_file = lab_dir / "health-inventory.json"
    inventory_file.write_text(json.dumps(inventory))

    def play(entry_point: str) -> subprocess.CompletedProcess:
        playbook = inventory_file.with_name(f"health-{entry_point}.yml")
        playbook.write_text(
            "- hosts: all\n  gather_facts: false\n  tasks:\n"
            f"    - ansible.builtin.include_role:\n        name: wordpress\n        tasks_from: {entry_point}\n"
        )
        return subprocess.run(
            ["ansible-playbook", "-i", str(inventory_file), str(playbook)],
            cwd=ROOT, env=lab_env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    def in_container(*argv: str) -> None:
        subprocess.run(["lxc-attach", "-P", str(lab_containers.lxcpath), "-n", "health", "--", *argv], check=True)

    wait_ssh(host, timeout=60)
    installed = play("main")
    assert installed.returncode == 0, installed.stdout[-3000:]

    in_container("systemctl", "stop", "php8.2-fpm")
    broken = play("health")
    assert broken.returncode != 0
    assert "The front page of s7.sites.lab.test answered 502" in " ".join(broken.stdout.split())

    in_container("systemctl", "start", "php8.2-fpm")
    in_container("systemctl", "stop", "mariadb.socket", "mariadb")  # the socket would start it again
    no_database = play("health")
    assert no_database.returncode != 0
    assert "WordPress stopped while loading: Error establishing a database connection" in no_database.stdout

    in_container("systemctl", "start", "mariadb.socket", "mariadb")
    healthy = play("health")
    assert healthy.returncode == 0, healthy.stdout[-3000:]

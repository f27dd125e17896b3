"""The wordpress role in real LXC containers on this machine: molecule's two scenarios (from a bare Debian
rootfs and from the golden image), and the health check's failures.

Every container lives under this run's lab directory (tests/lxc.py), which is cleaned up, pass or fail.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from role_runs import RoleRun, run_role
from sites import ROOT

from api.build_host import wait_ssh
from tests.lxc import LabBridge, role_environment

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1500)]

ROLE = ROOT / "roles" / "wordpress"
PASSWORD = "correct horse battery {staple}"  # the molecule scenarios' admin password (shared/group_vars)


@pytest.fixture(scope="module")
def lab_env(lab_dir: Path, lab_rootfs: Path, lab_bridge: LabBridge, lab_containers) -> dict[str, str]:
    """What the build_container role and the scenarios read: this run's directory, bridge and build address."""
    return role_environment(lab_dir, lab_bridge)


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
    assert "wordpress-bare" not in [c.name for c in lab_containers.list()], "molecule's destroy left its container"


def test_a_container_from_the_golden_image_only_does_the_per_site_part(
    lab_env, lab_bridge, lab_containers, lab_golden_image
):
    output = molecule("golden", lab_env, lab_bridge.next_ip())

    assert all_actions_succeeded(output, "golden"), output[-3000:]
    # The image half is skipped as a whole: not one package task ran.
    assert "Install the web server, PHP and the database server" not in output
    assert "Write wp-config.php" in output
    assert PASSWORD not in output
    assert "wordpress-golden" not in [c.name for c in lab_containers.list()], "molecule's destroy left its container"


@dataclass
class GoldenSite:
    """A site installed by the role (entry point main) in a container from the golden image."""

    name: str
    ip: str
    lxcpath: Path
    inventory: Path
    env: dict[str, str]

    def play(self, entry_point: str, **variables) -> RoleRun:
        """Run one entry point of the role against the site; variables as extra vars."""
        return run_role(self.inventory.parent, "wordpress", entry_point, inventory=self.inventory, env=self.env,
                        **variables)  # fmt: skip

    def run(self, *argv: str) -> None:
        subprocess.run(["lxc-attach", "-P", str(self.lxcpath), "-n", self.name, "--", *argv], check=True)

    def post(self, size: int) -> int:
        """The status of a POST of `size` bytes to the front page, as a browser uploading a file."""
        request = urllib.request.Request(
            f"http://{self.ip}/", data=b"x" * size, headers={"Host": "s7.sites.lab.test"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (our own container)
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code


def site_container(
    name: str, lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, lab_golden_image
) -> GoldenSite:
    """A started container from the golden image, with an inventory for the role (nothing run yet)."""
    address = lab_bridge.next_ip()
    lab_containers.create(
        name, source=lab_golden_image, ip_cidr=address, gateway=lab_bridge.gateway, bridge=lab_bridge.name,
        authorized_key=lab_ssh_key.public,
    )  # fmt: skip
    lab_containers.start(name)
    ip = address.split("/")[0]
    host = {
        "ansible_host": ip,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab_ssh_key.private),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    site_vars = {
        "wordpress_source": "debian",
        "wordpress_site_domain": "s7.sites.lab.test",
        "wordpress_admin_email": "owner@example.com",
        "wordpress_admin_password": "another password 123",
        "wordpress_health_timeout": 4,
    }
    inventory = lab_dir / f"{name}-inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {name: host}, "vars": site_vars}}))
    wait_ssh(ip, timeout=60)
    return GoldenSite(name, ip, lab_containers.lxcpath, inventory, lab_env)


@pytest.fixture(scope="module")
def golden_site(lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, lab_golden_image) -> GoldenSite:
    site = site_container("golden-site", lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, lab_golden_image)
    installed = site.play("main")
    assert installed.returncode == 0, installed.stdout[-3000:]
    return site


def test_the_health_check_fails_with_what_it_saw(golden_site):
    golden_site.run("systemctl", "stop", "php8.2-fpm")
    broken = golden_site.play("health")
    assert broken.returncode != 0
    assert "The front page of s7.sites.lab.test answered 502" in " ".join(broken.stdout.split())

    golden_site.run("systemctl", "start", "php8.2-fpm")
    golden_site.run("systemctl", "stop", "mariadb.socket", "mariadb")  # the socket would start it again
    no_database = golden_site.play("health")
    assert no_database.returncode != 0
    assert "WordPress stopped while loading: Error establishing a database connection" in no_database.stdout

    golden_site.run("systemctl", "start", "mariadb.socket", "mariadb")
    healthy = golden_site.play("health")
    assert healthy.returncode == 0, healthy.stdout[-3000:]


def test_a_plan_change_applies_its_upload_limit(golden_site):
    two_megabytes = 2 * 1024 * 1024
    small = golden_site.play("limits", wordpress_upload_max_mb=1)
    assert small.returncode == 0, small.stdout[-3000:]
    assert golden_site.post(two_megabytes) == 413

    large = golden_site.play("limits", wordpress_upload_max_mb=8)
    assert large.returncode == 0, large.stdout[-3000:]
    assert golden_site.post(two_megabytes) == 200


def logs_in(site: GoldenSite, user: str, password: str) -> bool:
    """A browser's login through wp-login.php: WordPress answers a redirect with its logged-in cookie, or the
    form again with an error."""
    host = "s7.sites.lab.test"
    answer = requests.post(
        f"http://{site.ip}/wp-login.php",
        data={"log": user, "pwd": password, "wp-submit": "Log In", "testcookie": "1"},
        headers={"Host": host},
        cookies={"wordpress_test_cookie": "WP Cookie check"},
        allow_redirects=False,
        timeout=30,
    )
    logged_in = any(cookie.name.startswith("wordpress_logged_in_") for cookie in answer.cookies)
    assert logged_in == (answer.status_code == 302), (answer.status_code, answer.text[-500:])
    return logged_in


def test_a_site_made_again_on_its_container_takes_the_new_password_and_drops_the_old(golden_site):
    """A creation retried or made again finds WordPress installed by the earlier run: the password handed out
    last logs in, the earlier one no longer does; the same password again changes nothing."""
    old, new = "another password 123", "the newer password 456"
    assert logs_in(golden_site, "admin", old)
    again = golden_site.play("main", wordpress_admin_password=new)
    assert again.returncode == 0, again.stdout[-3000:]
    assert new not in again.stdout
    assert logs_in(golden_site, "admin", new)
    assert not logs_in(golden_site, "admin", old)

    same = golden_site.play("main", wordpress_admin_password=new)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "Install WordPress the way wp-cli does" in same.stdout and same.changed == 0, same.stdout[-3000:]


def test_a_release_archive_on_the_controller_is_installed_only_with_its_checksum(
    golden_site, lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, lab_golden_image
):
    # A release archive shaped as wordpress.org ships one (one folder, wordpress/), from the golden site's core.
    archive = lab_dir / "wordpress-release.tar.gz"
    with archive.open("wb") as out:
        tar = ["tar", "-C", "/var/www", "--exclude=wordpress/wp-config.php", "-czf", "-", "wordpress"]
        subprocess.run(["lxc-attach", "-P", str(lab_containers.lxcpath), "-n", "golden-site", "--", *tar],
                       stdout=out, check=True)  # fmt: skip
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    site = site_container("archive-site", lab_env, lab_dir, lab_bridge, lab_containers, lab_ssh_key, lab_golden_image)
    # Another folder than the image's, so the core really comes from the archive.
    source = {"wordpress_source": "archive", "wordpress_archive_src": str(archive), "wordpress_root": "/srv/wordpress"}

    refused = site.play("main", **source, wordpress_archive_checksum="sha256:" + "0" * 64)
    assert refused.returncode != 0
    assert f"has the sha256 checksum {digest}, not the expected" in " ".join(refused.stdout.split())

    installed = site.play("main", **source, wordpress_archive_checksum=f"sha256:{digest}")
    assert installed.returncode == 0, installed.stdout[-3000:]
    request = urllib.request.Request(f"http://{site.ip}/", headers={"Host": "s7.sites.lab.test"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (our own container)
        assert answer.status == 200
        assert "s7.sites.lab.test" in answer.read().decode()

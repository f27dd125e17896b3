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
    assert "Write the site's configuration" in output
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

    def run(self, *argv: str) -> str:
        """Run a command in the container as root; its output."""
        done = subprocess.run(["lxc-attach", "-P", str(self.lxcpath), "-n", self.name, "--", *argv],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout

    @property
    def admin(self) -> str:
        """The administrator's login the role chose for the site (none was given)."""
        return self.run("cat", "/etc/proxmoxwp/wordpress-admin-user").strip()

    def visit(self, path: str, method: str = "GET", https: bool = False, **kwargs) -> requests.Response:
        """A visitor's request as the proxy forwards it: the site's name, over HTTPS when `https`."""
        headers = {"Host": "s7.sites.lab.test", **({"X-Forwarded-Proto": "https"} if https else {})}
        return requests.request(method, f"http://{self.ip}{path}", headers=headers, allow_redirects=False,
                                timeout=30, **kwargs)  # fmt: skip

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
    admin = golden_site.admin
    assert logs_in(golden_site, admin, old)
    again = golden_site.play("main", wordpress_admin_password=new)
    assert again.returncode == 0, again.stdout[-3000:]
    assert new not in again.stdout
    assert golden_site.admin == admin, "the login chosen at the first run is kept"
    assert logs_in(golden_site, admin, new)
    assert not logs_in(golden_site, admin, old)

    same = golden_site.play("main", wordpress_admin_password=new)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "Install WordPress the way wp-cli does" in same.stdout and same.changed == 0, same.stdout[-3000:]


XMLRPC_MULTICALL = (
    "<?xml version='1.0'?><methodCall><methodName>system.multicall</methodName><params><param><value><array>"
    "<data></data></array></value></param></params></methodCall>"
)
XMLRPC_LIST = "<?xml version='1.0'?><methodCall><methodName>system.listMethods</methodName></methodCall>"
# Files of WordPress that must not be served (they tell its version). Debian's package, the source of the tests'
# sites, has no license.txt: the test puts one where the release archive has it.
NOT_SERVED = ("/readme.html", "/license.txt", "/wp-config-sample.php", "/wp-admin/install.php")


def test_a_site_answers_visitors_hardened(golden_site):
    """What issue 17 found open, as a visitor sees the site behind the proxy."""
    admin = golden_site.admin
    assert re.fullmatch(r"wpadmin-[a-z0-9]{6}", admin), "the role's prefix and a random suffix"

    front = golden_site.visit("/")
    assert front.status_code == 200
    assert front.headers.get("X-Content-Type-Options") == "nosniff"
    assert front.headers.get("X-Frame-Options") == "SAMEORIGIN"
    assert "X-Powered-By" not in front.headers, "PHP's expose_php is off"
    assert "Strict-Transport-Security" not in front.headers, "no HSTS on an answer over plain HTTP"
    assert golden_site.visit("/", https=True).headers.get("Strict-Transport-Security") == "max-age=31536000"
    refused = golden_site.visit("/nothing-here/readme.html")  # the headers come with errors too
    assert refused.headers.get("X-Content-Type-Options") == "nosniff"

    assert golden_site.visit("/xmlrpc.php", "POST", data=XMLRPC_MULTICALL).status_code == 403
    assert "X-Pingback" not in front.headers and "xmlrpc.php" not in front.text
    golden_site.run("sh", "-c", "echo 'GNU General Public License' > /var/www/wordpress/license.txt")
    try:
        for path in NOT_SERVED:
            golden_site.run("test", "-f", f"/var/www/wordpress{path}")  # there, and still not served
            assert golden_site.visit(path).status_code == 404, path
    finally:
        golden_site.run("rm", "/var/www/wordpress/license.txt")

    # the administrator's login is nowhere a visitor looks
    users = golden_site.visit("/?rest_route=/wp/v2/users")
    assert users.status_code == 401 and users.json()["code"] == "rest_user_cannot_view"
    assert golden_site.visit("/?rest_route=/wp/v2/users/1").status_code == 401
    assert golden_site.visit("/?author=1").status_code == 404
    pages = [golden_site.visit(path).text for path in ("/", "/?feed=rss2", "/?sitemap=index", "/?p=1",
                                                       "/?rest_route=/wp/v2/posts&_embed=author")]  # fmt: skip
    assert not [page for page in pages if admin in page]
    wrong = {user: logs_in_answer(golden_site, user, "not the password") for user in (admin, "nobody-here")}
    assert wrong[admin] == wrong["nobody-here"], "a wrong password and an unknown login get the same answer"

    # inside the container: MariaDB on its unix socket only, sshd without passwords
    listening = golden_site.run("ss", "-Htln")
    assert ":3306 " not in listening and ":80 " in listening, listening
    assert "passwordauthentication no" in golden_site.run("sshd", "-T").splitlines()
    assert "kbdinteractiveauthentication no" in golden_site.run("sshd", "-T").splitlines()
    password_login = subprocess.run(
        ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=10", f"root@{golden_site.ip}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert password_login.returncode == 255
    assert "Permission denied (publickey)." in password_login.stderr, "sshd offers no password method"


def logs_in_answer(site: GoldenSite, user: str, password: str) -> str:
    """The error wp-login.php shows for a failed login."""
    answer = site.visit(
        "/wp-login.php", "POST", data={"log": user, "pwd": password, "wp-submit": "Log In", "testcookie": "1"},
        cookies={"wordpress_test_cookie": "WP Cookie check"},
    )  # fmt: skip
    found = re.search(r'<div id="login_error"[^>]*>(.*?)</div>', answer.text, re.S)
    assert answer.status_code == 200 and found, answer.text[-500:]
    return found.group(1).strip()


def test_the_hardening_alone_brings_an_older_site_up_to_date_and_a_site_may_be_allowed_xmlrpc(golden_site):
    """A site made before the hardening (its parts taken away here) gets it from the entry point that
    `site_create.yml --tags hardening` and a plan change run; an allowance turns its switch off."""
    undo = (
        "rm -rf /etc/ssh/sshd_config.d/10-proxmoxwp.conf /etc/systemd/system/mariadb.socket.d "
        "/etc/mysql/mariadb.conf.d/90-proxmoxwp.cnf /var/www/wordpress/wp-content/mu-plugins; "
        "systemctl daemon-reload; systemctl stop mariadb; systemctl restart mariadb.socket; systemctl start mariadb; "
        "systemctl reload ssh"
    )
    golden_site.run("sh", "-ec", undo)
    assert ":3306 " in golden_site.run("ss", "-Htln"), "the site as it was: MariaDB on TCP"
    assert "passwordauthentication yes" in golden_site.run("sshd", "-T").splitlines()
    assert golden_site.visit("/?author=1").status_code != 404

    allowed = golden_site.play("hardening", wordpress_allow=["xmlrpc"])
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert ":3306 " not in golden_site.run("ss", "-Htln")
    assert "passwordauthentication no" in golden_site.run("sshd", "-T").splitlines()
    assert golden_site.visit("/?author=1").status_code == 404
    answer = golden_site.visit("/xmlrpc.php", "POST", data=XMLRPC_LIST)
    assert answer.status_code == 200 and "system.multicall" in answer.text, "the allowance turned the switch off"

    hardened = golden_site.play("hardening")
    assert hardened.returncode == 0, hardened.stdout[-3000:]
    assert golden_site.visit("/xmlrpc.php", "POST", data=XMLRPC_LIST).status_code == 403
    assert golden_site.play("health").returncode == 0, "WordPress still reaches its database"


def test_the_golden_image_carries_the_hardening(lab_golden_image, tmp_path):
    parts = {
        "etc/ssh/sshd_config.d/10-proxmoxwp.conf": "PasswordAuthentication no",
        "etc/systemd/system/mariadb.socket.d/proxmoxwp.conf": "ListenStream=\n",
        "etc/mysql/mariadb.conf.d/90-proxmoxwp.cnf": "skip-networking",
        "var/www/wordpress/wp-content/mu-plugins/proxmoxwp-hardening.php": "rest_user_cannot_view",
    }
    subprocess.run(["tar", "-I", "zstd", "-xf", str(lab_golden_image), "-C", str(tmp_path),
                    *(f"./{path}" for path in parts)], check=True)  # fmt: skip
    for path, line in parts.items():
        assert line in (tmp_path / path).read_text(), path


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

"""The Paymenter extension (paymenter/): every PHP file parses, and its PHPUnit suite passes against the real API.

The API runs as in production (`proxmoxwp serve`, a worker running the playbook doubles of tests/playbooks/ops,
DNS checks against the session's PowerDNS), on loopback; PHPUnit gets its address and token through the
environment. PHP, PHPUnit and Laravel's components come from Debian packages (scripts/install.sh --dev).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import ROOT, TOKEN
from published_dns import SITE_IP

PAYMENTER = ROOT / "paymenter"
OTHER_IP = "198.51.100.7"  # where a domain that does not point to us points


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/install.sh --dev installs PHP and PHPUnit from Debian")
    return path


@pytest.mark.parametrize("path", sorted(PAYMENTER.rglob("*.php")), ids=lambda p: str(p.relative_to(PAYMENTER)))
def test_every_php_file_parses(path):
    done = subprocess.run([tool("php"), "-l", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(900)
def test_the_extension_passes_its_phpunit_suite_against_the_live_api(server, worker, dns_records, control_dir):
    elsewhere = dns_records.publish(dns_records.name("elsewhere"), a=[OTHER_IP])
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXMOXWP_")}
    env.update(
        PROXMOXWP_TEST_API_URL=server,
        PROXMOXWP_TEST_API_TOKEN=TOKEN,
        PROXMOXWP_TEST_PUBLIC_IP=SITE_IP,
        PROXMOXWP_TEST_DOMAIN_ZONE="example.org",  # every name under it points to SITE_IP (published_dns.py)
        PROXMOXWP_TEST_DOMAIN_ELSEWHERE=elsewhere,
        PROXMOXWP_TEST_SERVICE_BASE="5000",
        PROXMOXWP_TEST_CONTROL_DIR=str(control_dir),  # `fail-<operation>` there makes that playbook double fail
    )
    done = subprocess.run(
        [tool("phpunit"), "-c", str(PAYMENTER / "phpunit.xml.dist")],
        cwd=PAYMENTER, env=env, capture_output=True, text=True, timeout=850, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, (
        done.stdout[-20000:] + done.stderr[-5000:] + "\n--- worker log ---\n" + worker.output()[-3000:]
    )

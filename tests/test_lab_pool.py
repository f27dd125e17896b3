"""A site made from the warm pool is a site made without it (docs/pool.md), in real containers: a lab of its own with
one node and a pool of one, two creations at once racing for the member (one gets it, the other makes its container
anew), then the two sites compared: their files, their database schema, their administrator's login, their
`initial` snapshot, and what a reset brings each back to."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import wait_until
from labs import lab_environment, lab_pve_get
from shared_lab import RunningLab, running_lab
from test_lab_e2e import TITLE, attach, change_title, logged_in_by

pytestmark = pytest.mark.containers

SITES = (8101, 8102)
# Written per container, not per image: PVE (and the lab) writes the host name and hosts at every start, the first
# boot makes the machine id and SSH host keys, and the site part makes the site's own secrets and login.
PER_CONTAINER = re.compile(
    r"^/etc/(hostname|hosts|machine-id|ssh/ssh_host_.*|proxmoxwp/wordpress-(secrets\.json|admin-user|login-key))$"
    r"|^/var/lib/dbus/machine-id$|^/var/www/wordpress/wp-config\.php$"
)
# What the system itself changes while it runs: logs, caches, runtime state and MariaDB's own files.
SKIPPED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache", "/var/lib/mysql",
           "/var/lib/systemd", "/var/lib/apt/lists", "/var/lib/php/sessions")  # fmt: skip


@pytest.fixture(scope="module")
def pool_lab(lab_cache, lab_dir, lab_rootfs, tmp_path_factory):
    """A lab of one node whose worker keeps one member in the pool."""
    data_dir = tmp_path_factory.mktemp("pool-lab")
    env = lab_environment(data_dir, lab_dir)
    env.update(PROXMOXWP_LAB_NODES="pve1", PROXMOXWP_LAB_POOL_SIZE="1")
    with running_lab(data_dir, env) as lab:
        yield lab


def files(lab: RunningLab, service_id: int) -> dict[str, str]:
    """Every file of the site's root file system with its SHA-256, but what the system changes as it runs."""
    prune = " -o ".join(f"-path {path}" for path in SKIPPED)
    listed = attach(lab, service_id, "sh", "-c", f"find / -xdev \\( {prune} \\) -prune -o -type f -print0 | "
                    "xargs -0 sha256sum")  # fmt: skip
    return {path: digest for digest, path in (line.split("  ", 1) for line in listed.splitlines())}


def compared(lab: RunningLab) -> tuple[dict, dict]:
    one, other = (files(lab, service_id) for service_id in SITES)
    assert sorted(one) == sorted(other), set(one) ^ set(other)
    same = {path for path in one if not PER_CONTAINER.match(path)}
    return {p: one[p] for p in same}, {p: other[p] for p in same}


def schema(lab: RunningLab, service_id: int) -> str:
    """The site's tables as `mysqldump --no-data` writes them, less each table's next AUTO_INCREMENT value: that
    counts the rows a site has written (options and transients as it is visited), which is data, not schema."""
    dump = attach(lab, service_id, "mysqldump", "--no-data", "--skip-dump-date", "--skip-comments", "wordpress")
    return re.sub(r" AUTO_INCREMENT=\d+", "", dump)


def snapshots(lab: RunningLab, service_id: int) -> list[str]:
    site = lab.site(service_id)
    data_dir = Path(lab.env["PROXMOXWP_DATA_DIR"])
    found = lab_pve_get(data_dir, f"/nodes/{site['node']}/lxc/{site['vmid']}/snapshot").json()["data"]
    return sorted(entry["name"] for entry in found if entry["name"] != "current")


def test_a_site_from_the_pool_is_a_site_made_without_it(pool_lab: RunningLab):
    lab = pool_lab

    def one_ready() -> bool:
        return lab.call("GET", "/health", params={"deep": 1}).json()["pool"]["ready"] == {"pve1": 1}

    wait_until(one_ready, 600, 1.0, "the worker to fill the pool")

    bodies = [{"service_id": s, "email": f"owner{s}@example.com", "plan": "basic", "public_ip": "127.0.0.1"}
              for s in SITES]  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as threads:
        answers = list(threads.map(lambda body: lab.call("POST", "/create-site", json=body), bodies))
    jobs = [lab.job(answer) for answer in answers]
    assert sorted(job["stats"]["from_pool"] for job in jobs) == [False, True], "one member, one each"
    logins = {answer.json()["service_id"]: answer.json() for answer in answers}

    names = {s: lab.site(s)["subdomain"] for s in SITES}
    for service_id, name in names.items():
        assert lab.title(name) == TITLE
        form = urlencode({"log": logins[service_id]["admin_user"], "pwd": logins[service_id]["admin_password"]})
        assert logged_in_by(lab, name, "/wp-login.php", form), f"the administrator of {name} logs in"
        assert snapshots(lab, service_id) == ["initial"]
    one, other = compared(lab)
    assert one == other, sorted(path for path in one if one[path] != other.get(path))
    assert schema(lab, SITES[0]) == schema(lab, SITES[1])

    for service_id, name in names.items():
        change_title(lab, service_id, "Changed before the reset")
        lab.job(lab.call("POST", "/action/power", json={"service_id": service_id, "action": "reset"}))
        # the reset's job ends once the container is started again; its services come up a moment later
        wait_until(lambda name=name: lab.title(name) == TITLE, 60, 0.5, f"{name} to answer after its reset")
        short = name.split(".", 1)[0]
        assert attach(lab, service_id, "cat", "/etc/hostname").strip() == short, "the site's name, after a start"
    one, other = compared(lab)
    assert one == other, sorted(path for path in one if one[path] != other.get(path))

"""A site's disk is its plan's size, in the lab as on Proxmox VE: on the shared lab (tests/shared_lab.py), a site on the
lab inventory's `small` test plan (1 GiB) has a root file system of that size in its container (a real disk: the lab's
PVE backs small disks with a loop device, docs/lab-pve.md), the upgrade to `small-plus` grows it, and going back to
the smaller disk is refused before anything changes. Its container is unprivileged, as PVE makes it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from shared_lab import RunningLab
from test_lab_e2e import PUBLIC_IP, TITLE, assert_deleted, attach

from api.build_host.disks import attached_under, disk_file, loop_devices, make_disk, release_disk
from api.build_host.errors import BuildHostError

pytestmark = pytest.mark.containers

SERVICE_ID = 7401


@pytest.mark.timeout(1200)
def test_a_site_on_a_small_plan_has_its_disk_grows_on_upgrade_and_refuses_a_smaller_one(shared_lab: RunningLab):
    lab = shared_lab
    sid = {"service_id": SERVICE_ID}
    body = {**sid, "email": f"owner{SERVICE_ID}@example.com", "plan": "small", "public_ip": PUBLIC_IP}
    created = lab.job(lab.call("POST", "/create-site", json=body))
    name = lab.site(SERVICE_ID)["subdomain"]
    # on failure: what a second visit answers (a late proxy, or none at all) and the job's attempts and times
    assert lab.title(name) == TITLE, (lab.visit(name)[0], created)
    assert root_gib(lab) == pytest.approx(1, abs=0.1), "the plan's 1 GiB, as df shows it inside"
    assert attach(lab, SERVICE_ID, "cat", "/proc/self/uid_map").split() == ["0", "100000", "65536"]

    lab.job(lab.call("POST", "/wp/upgrade/", json={**sid, "plan": "small-plus"}))
    assert root_gib(lab) == pytest.approx(2, abs=0.1), "the upgrade grew the disk, the site running"
    assert lab.site(SERVICE_ID)["plan"] == "small-plus" and lab.title(name) == TITLE

    refused = lab.call("POST", "/wp/upgrade/", json={**sid, "plan": "small"})
    assert refused.status_code == 422 and refused.json()["code"] == "disk_too_small", refused.text
    assert "a disk cannot shrink" in refused.json()["error"]
    assert lab.site(SERVICE_ID)["plan"] == "small-plus" and root_gib(lab) == pytest.approx(2, abs=0.1)

    lxcpath = Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"
    assert len(attached_under(lxcpath)) == 1, "the site's disk is on a loop device"
    assert_deleted(lab, SERVICE_ID, [name])
    assert attached_under(lxcpath) == [], "delete-site detached it"


def test_a_disk_another_mount_namespace_holds_is_waited_for_and_the_holder_named(tmp_path):
    directory = tmp_path / "ct"
    directory.mkdir()
    make_disk(directory, directory / "rootfs", 64 * 1024**2)
    # a namespace made while the disk is mounted keeps a copy of the mount (this host's root mount may be private)
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "cat"], stdin=subprocess.PIPE)
    try:
        ours = os.readlink("/proc/self/ns/mnt")
        wait_until(lambda: os.readlink(f"/proc/{holder.pid}/ns/mnt") != ours, timeout=10, what="the holder's namespace")
        with pytest.raises(BuildHostError, match=rf"still mounted in the mount namespace of pid {holder.pid} \(cat\)"):
            release_disk(directory, directory / "rootfs", timeout=0.5)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        release_disk(directory, directory / "rootfs")
    assert loop_devices(disk_file(directory)) == [], "once the holder ended, the device was detached"


def root_gib(lab: RunningLab) -> float:
    """The size of / in the site's container, as `df` shows it, in GiB."""
    return int(attach(lab, SERVICE_ID, "df", "--output=size", "-B1", "/").split()[-1]) / 1024**3

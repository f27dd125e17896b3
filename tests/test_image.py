"""The golden image reaches the cluster through the Proxmox VE API: the fake's upload as PVE does it, and
`proxmoxwp image upload` putting the run's golden image on the fake cluster, from which a site is then created."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BIN
from sites import load_client_module, run_playbook, site_inventory, stored_templates

PVE = load_client_module()


def client(pve) -> PVE.PveClient:
    return PVE.PveClient(pve.pve_api(), task_timeout=60)


def send(pve, archive: Path, checksum: str | None = None, **fields) -> str:
    """POST the archive to local on pve1 as `image upload` does; the task's UPID."""
    fields = {"content": "vztmpl", "filename": archive.name, **fields}
    if checksum is not None:
        fields.update({"checksum": checksum, "checksum-algorithm": "sha256"})
    return client(pve).upload("/nodes/pve1/storage/local/upload", str(archive), **fields)


@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "debian-12-test_amd64.tar.zst"
    path.write_bytes(os.urandom(3 * 1024**2 + 17))  # more than one chunk, not a multiple of one
    return path


@pytest.mark.cluster
def test_the_fake_stores_an_upload_whose_checksum_matches_and_lists_it(pve, archive):
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    client(pve).wait_task(send(pve, archive, digest), "upload")

    assert stored_templates(pve)[f"local:vztmpl/{archive.name}"] == archive.stat().st_size


@pytest.mark.cluster
def test_a_checksum_mismatch_fails_the_task_and_stores_nothing(pve, archive):
    upid = send(pve, archive, "0" * 64)

    with pytest.raises(PVE.PveApiError, match=r"checksum mismatch: got '[0-9a-f]{64}' != expect '0{64}'"):
        client(pve).wait_task(upid, "upload")
    assert f"local:vztmpl/{archive.name}" not in stored_templates(pve)


@pytest.mark.cluster
def test_the_fake_refuses_an_upload_as_pve_does(pve, archive):
    with pytest.raises(PVE.PveApiError, match=r"\(filename: wrong file extension\) \[HTTP 400\]"):
        send(pve, archive, filename="image.zip")
    pve.call(pve.pve.storages["local"].update, {"content": "iso,backup"})
    with pytest.raises(PVE.PveApiError, match=r"storage 'local' does not support 'vztmpl' content \[HTTP 500\]"):
        send(pve, archive)
    pve.call(pve.pve.take_privilege, "Datastore.AllocateTemplate")
    with pytest.raises(
        PVE.PveApiError, match=r"Permission check failed \(/storage/local, Datastore.AllocateTemplate\)"
    ):
        send(pve, archive)


def image_upload(inventory: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`proxmoxwp image upload ARGS` as an operator runs it, with this inventory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOXWP_")}
    env.update(PROXMOXWP_INVENTORY=str(inventory), PROXMOXWP_DATA_DIR=str(data_dir))
    return subprocess.run(
        [str(BIN / "proxmoxwp"), "image", "upload", *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.cluster
def test_image_upload_puts_an_archive_on_each_node_once_and_prints_its_volid(pve, archive, tmp_path):
    inventory = site_inventory(tmp_path, pve.pve_api(), {})
    volid = f"local:vztmpl/{archive.name}"

    first = image_upload(inventory, tmp_path / "data", "--archive", str(archive))
    again = image_upload(inventory, tmp_path / "data", "--archive", str(archive))

    assert first.returncode == 0, first.stderr
    assert first.stdout == volid + "\n"
    assert f"pve1: uploaded {volid}, checksum verified by Proxmox VE" in first.stderr
    assert stored_templates(pve)[volid] == archive.stat().st_size
    assert again.returncode == 0, again.stderr
    assert f"pve1: {volid} is already there with the same size, not uploaded again" in again.stderr
    assert len(pve.call(pve.pve.requests_sent, "POST", "/upload")) == 1


# containers, as the golden image's other tests (tests/test_wordpress_role.py): the image is built on this machine.
@pytest.mark.containers
@pytest.mark.timeout(1500)
def test_a_site_is_created_from_the_golden_image_uploaded_through_the_api(pve, edge_peers, lab_golden_image, tmp_path):
    inventory = site_inventory(tmp_path, pve.pve_api(), edge_peers.settings)

    uploaded = image_upload(inventory, tmp_path / "data", "--archive", str(lab_golden_image))

    assert uploaded.returncode == 0, uploaded.stderr
    volid = uploaded.stdout.strip()
    assert volid == f"local:vztmpl/{lab_golden_image.name}"
    assert stored_templates(pve)[volid] == lab_golden_image.stat().st_size
    copied = pve.call(lambda: [t for t in pve.pve.tasklog if t["type"] == "imgcopy"])
    assert "calculating checksum...OK, checksum verified" in copied[-1]["log"]
    assert copied[-1]["exitstatus"] == "OK"

    created = run_playbook(
        site_inventory(tmp_path / "site", pve.pve_api(), edge_peers.settings, proxmoxwp_pve_ostemplate=volid),
        tmp_path / "runs", "site_create.yml", service_id=7301, plan="basic", public_ip="203.0.113.31",
    )  # fmt: skip
    assert created.ok, created.message
    creates = pve.call(pve.pve.requests_sent, "POST", "/lxc")
    assert [c.params.get("ostemplate") for c in creates] == [volid]

"""The warm pool through the API (docs/pool.md): creations racing for the last member get one each, one from the pool
and one made anew; the keeper fills each node, replaces a member that fails its check and never gives it to a site;
draining removes the members and keeps the pool empty until it is filled again."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT, TOKEN, HttpApi, wait_job
from sites import cluster, site_inventory

from api.models import PoolMember

pytestmark = pytest.mark.db

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
CREATE = {"email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
GOLDEN = "local:vztmpl/debian-12-proxmoxwp-wordpress_amd64.tar.zst"


def pool_settings(inventory: Path, size: int, ostemplate: str) -> None:
    settings = {"proxmoxwp_pool": {"size": size, "plan": "basic"}, "proxmoxwp_pve_ostemplate": ostemplate}
    (inventory / "group_vars" / "all" / "zz_pool.yml").write_text("---\n" + yaml.safe_dump(settings))


def rows(runtime) -> list[tuple[int, str, int | None]]:
    with runtime.db.session() as session:
        found = session.query(PoolMember).order_by(PoolMember.vmid).all()
        return [(row.vmid, row.state, row.service_id) for row in found]


def made_at(runtime, vmid: int):
    with runtime.db.session() as session:
        return session.get(PoolMember, vmid).made_at


class TestRacingForTheLastMember:
    @pytest.fixture
    def env(self, env):
        pool_settings(Path(env["PROXMOXWP_INVENTORY"]), 1, GOLDEN)
        return {**env, "PROXMOXWP_POOL_SECONDS": "0"}  # the rows are the test's: no keeper

    def test_two_creations_racing_for_the_last_member_get_one_each(self, runtime, server, worker):
        def add(session) -> None:
            session.add(PoolMember(vmid=900, node="pve1", ip="10.77.0.200", image=runtime.pool_image))

        runtime.db.write(add)
        bodies = [{"service_id": 701, **CREATE}, {"service_id": 702, **CREATE}]

        def create(body: dict) -> requests.Response:
            return requests.post(server + "/create-site", json=body, headers=HEADERS, timeout=60)

        with ThreadPoolExecutor(max_workers=2) as threads:
            answers = list(threads.map(create, bodies))
        assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
        api = HttpApi(server, TOKEN)
        jobs = [api.get(f"/jobs/{a.json()['job_id']}").get_json()["job"] for a in answers]
        taken = [job["service_id"] for job in jobs if job["params"].get("pool_vmid") == 900]
        assert len(taken) == 1, [job["params"] for job in jobs]
        fresh = [job for job in jobs if "pool_vmid" not in job["params"]]
        assert len(fresh) == 1, "the other creation makes its container anew"
        assert rows(runtime) == [(900, "claimed", taken[0])]
        assert next(job for job in jobs if job["service_id"] == taken[0])["params"]["node"] == "pve1"

        for answer in answers:
            assert wait_job(api, answer.json()["job_id"])["state"] == "succeeded"
        assert rows(runtime) == [], "once the creation ended the member is the site's container, not the pool's"

    def test_a_member_of_an_older_image_is_passed_over(self, runtime, api):
        def add(session) -> None:
            session.add(PoolMember(vmid=901, node="pve1", ip="10.77.0.201", image="img-000000000000"))

        runtime.db.write(add)
        created = api.post("/create-site", {"service_id": 703, **CREATE})
        assert created.status_code == 202
        assert "pool_vmid" not in api.get(f"/jobs/{created.get_json()['job_id']}").get_json()["job"]["params"]
        assert rows(runtime) == [(901, "ready", None)]

    def test_a_creation_under_way_holds_the_keeper_back(self, runtime, api):
        from api.pool.keeper import creating

        assert not creating(runtime)
        created = api.post("/create-site", {"service_id": 704, **CREATE})
        assert created.status_code == 202
        assert creating(runtime), "no worker runs: the creation is queued"


@pytest.mark.cluster
class TestTheKeeper:
    @pytest.fixture
    def env(self, env, tmp_path, pve_api, edge_peers):
        """The API's environment with the real playbooks against the fake cluster, one member per node wanted."""
        inventory = site_inventory(tmp_path / "site", pve_api, edge_peers.settings, proxmoxwp_pve_nodes=["pve1"])
        from lab.pve.fake import TEMPLATE_VOLID

        pool_settings(inventory, 1, TEMPLATE_VOLID)
        return {**env, "PROXMOXWP_INVENTORY": str(inventory), "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks")}

    def pool(self, process_env, *args: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / "proxmoxwp"), "pool", *args]
        return subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=600, check=False)

    def test_the_keeper_replaces_a_failed_member_and_draining_empties_the_pool(
        self, runtime, api, start_worker, process_env, pve
    ):
        filled = self.pool(process_env, "fill")
        assert filled.returncode == 0, filled.stdout + filled.stderr
        ((first, state, owner),) = rows(runtime)
        assert state == "ready" and owner is None
        assert "pool" in cluster(pve)[first]["tags"] and cluster(pve)[first]["status"] == "running"

        made_first = made_at(runtime, first)
        pve.call(lambda: setattr(pve.pve.ct(first), "status", "stopped"))  # it fails its check
        replaced = self.pool(process_env, "fill")
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        ((second, state, _),) = rows(runtime)
        assert state == "ready" and made_at(runtime, second) > made_first, "a new member (its vmid may be reused)"
        assert cluster(pve)[second]["status"] == "running"
        assert f"removed [{first}]" in replaced.stdout, replaced.stdout

        health = api.get("/health", deep=1).get_json()["pool"]
        assert health["size"] == 1 and health["ready"] == {"pve1": 1} and not health["paused"]

        start_worker()
        created = api.post("/create-site", {"service_id": 711, **CREATE})
        job = wait_job(api, created.get_json()["job_id"], timeout=300)
        assert job["state"] == "succeeded", job
        assert job["params"]["pool_vmid"] == second and job["stats"]["from_pool"] is True
        assert api.get("/status", service_id=711).get_json()["vmid"] == second
        assert "svc-711" in cluster(pve)[second]["tags"]

        drained = self.pool(process_env, "drain")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert not [ct for ct in cluster(pve).values() if "pool" in ct["tags"]]
        assert second in cluster(pve), "draining never touches a site"
        shown = json.loads(self.pool(process_env, "status", "--json").stdout)
        assert shown["paused"] and shown["members"] == [] and shown["ready"] == {}

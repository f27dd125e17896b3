"""Reconcile through the API with the playbook double (tests/playbooks/ops/site_reconcile.yml): what the run
reports becomes the site's drift in /status, kept while it persists and cleared once gone; a site with a job
queued or running is left alone; `proxmoxwp reconcile`; the worker's schedule."""

from __future__ import annotations

import itertools
import json
import subprocess
from datetime import datetime

import pytest
from conftest import BIN, runs, wait_job, wait_until
from sqlalchemy import select

from api.jobs.engine import claim, execute, finish
from api.models import Job, JobState
from api.reconcile import queue_reconciles

pytestmark = pytest.mark.db

SITE = {"email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
STOPPED = {
    "key": "container_power",
    "what": "Container 100 is stopped while the site is active",
    "expected": "running",
    "found": "stopped (HA requested state started: the HA manager starts it)",
}
NO_HA = {"key": "ha_resource", "what": "Container 100 has no HA resource", "expected": "under HA", "found": "none"}
OFF = {
    "key": "proxy_host:wp31.sites.example.net",
    "what": "The proxy host serves",
    "expected": "disabled",
    "found": "on",
}


def cli(process_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`proxmoxwp reconcile ARGS`, as an operator runs it."""
    command = [str(BIN / "proxmoxwp"), "reconcile", *args]
    return subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=120, check=False)


def cluster_says(control_dir, **stats) -> None:
    """What the next reconcile runs find on the cluster (the double reports it as its set_stats)."""
    (control_dir / "reconcile.json").write_text(json.dumps(stats))


def created(api, runtime, service_id: int) -> int:
    """An active site, its creation finished as a worker does, without a playbook; the creation job's id."""
    answer = api.post("/create-site", {"service_id": service_id, **SITE})
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["job_id"]
    assert claim(runtime, job_id)
    finish(runtime, job_id, JobState.SUCCEEDED, stats={"vmid": 100, "node": "pve1", "ip": "10.77.0.100"})
    return job_id


def status(api, service_id: int) -> dict:
    return api.get("/status", service_id=service_id).get_json()


def test_drift_is_recorded_kept_while_it_persists_and_cleared_once_gone(api, runtime, worker, control_dir, process_env):
    answer = api.post("/create-site", {"service_id": 31, **SITE})
    assert wait_job(api, answer.get_json()["job_id"])["state"] == "succeeded"
    made = api.post("/action/mkbak", {"service_id": 31})
    assert wait_job(api, made.get_json()["job_id"])["state"] == "succeeded"
    bak = made.get_json()["bak"]

    gone = {"key": f"backup:{bak}", "what": f"Backup {bak} no longer exists on the cluster", "action": "dropped"}
    cluster_says(control_dir, backups=[], drift=[STOPPED, NO_HA, OFF], repaired=[gone])
    first = cli(process_env, "--service-id", "31", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"repaired: Backup {bak} no longer exists on the cluster (dropped)" in first.stdout
    assert f"drift: {STOPPED['what']}: expected running, found {STOPPED['found']}" in first.stdout
    (given,) = [json.loads(line) for line in (control_dir / "reconcile-vars.jsonl").read_text().splitlines()]
    assert given == {
        "service_id": 31,
        "site_state": "active",
        "proxy_enabled": True,
        "public_ip": "203.0.113.10",
        "domains": [],
        "recorded_backups": [bak],
    }
    site = status(api, 31)
    assert api.get("/action/getbak", service_id=31).get_json()["backups"] == []
    assert site["state"] == "active" and site["last_job"]["kind"] == "mkbak", "a reconcile is not the last job"
    assert [{key: item[key] for key in STOPPED} for item in site["drift"]] == [STOPPED, NO_HA, OFF]
    found_at = {item["key"]: item["found_at"] for item in site["drift"]}

    # Found again the same way, the time it was first found stays; found otherwise, it is a new finding; no longer
    # found, it is gone.
    cluster_says(control_dir, drift=[STOPPED, dict(NO_HA, found="requested state stopped")], repaired=[])
    again = cli(process_env, "--service-id", "31", "--wait")
    assert again.returncode == 0 and "repaired" not in again.stdout, again.stdout + again.stderr
    site = status(api, 31)
    assert [item["key"] for item in site["drift"]] == ["container_power", "ha_resource"]
    kept, changed = site["drift"]
    assert kept["found_at"] == found_at["container_power"]
    assert changed["found"] == "requested state stopped"
    assert datetime.fromisoformat(changed["found_at"]) > datetime.fromisoformat(found_at["ha_resource"])
    assert site["last_job"]["kind"] == "mkbak"


def test_a_site_with_a_job_queued_or_running_is_left_alone(api, runtime, control_dir, process_env):
    created(api, runtime, 32)
    (reconcile,) = queue_reconciles(runtime, [32])
    power = api.post("/action/power", {"service_id": 32, "action": "restart"}).get_json()["job_id"]

    refused = cli(process_env, "--service-id", "32")
    assert refused.returncode == 1
    assert refused.stdout == f"service 32: skipped: job {reconcile.job_id} of the site is queued or running\n"

    # The reconcile queued first steps aside for the power job queued behind it: it never runs its playbook.
    execute(runtime, reconcile.job_id)
    job = api.get(f"/jobs/{reconcile.job_id}").get_json()["job"]
    assert job["state"] == "cancelled" and job["message"].startswith(f"Skipped: job {power} of this site is queued")
    site = status(api, 32)
    assert (site["state"], site["last_job"]["kind"], site["drift"]) == ("active", "create", [])
    assert runs(control_dir) == []

    unknown = cli(process_env, "--service-id", "33")
    assert (unknown.returncode, unknown.stdout) == (1, "service 33: skipped: there is no site for this service\n")


def test_the_worker_reconciles_every_live_site_once_per_period(api, runtime, start_worker, control_dir):
    for service_id in (34, 35):
        created(api, runtime, service_id)
    for op in ("site_create", "site_power"):
        (control_dir / f"block-{op}").touch()
    api.post("/create-site", {"service_id": 36, **SITE})  # still being created: not reconciled
    held = api.post("/action/power", {"service_id": 35, "action": "restart"}).get_json()["job_id"]
    for _ in range(2):  # two workers schedule at once; each site gets one job per period, not one per worker
        start_worker(PROXMOXWP_RECONCILE_SECONDS="1")

    def reconciles(service_id: int) -> list[Job]:
        with runtime.db.session() as session:
            query = select(Job).where(Job.service_id == service_id, Job.kind == "reconcile").order_by(Job.id)
            return list(session.scalars(query))

    wait_until(lambda: len([j for j in reconciles(34) if j.state == "succeeded"]) >= 2, 60, what="2 reconciles")
    starts = [job.created_at for job in reconciles(34)]
    assert all((later - earlier).total_seconds() >= 0.9 for earlier, later in itertools.pairwise(starts)), starts
    assert reconciles(35) == [] and reconciles(36) == [], "a site with a job pending is left alone"
    assert status(api, 34)["last_job"]["kind"] == "create"
    for op in ("site_create", "site_power"):
        (control_dir / f"release-{op}").touch()
    assert wait_job(api, held)["state"] == "succeeded"

"""State rules, quotas and idempotency with a real worker running the playbook doubles (docs/api.md, docs/jobs.md).

The jobs under test are run by `proxmoxwp worker` through ansible-runner; the doubles in tests/playbooks/ops
record their runs in `control_dir/runs.jsonl`, fail when `fail-<op>` exists (after changing the site) or
`refuse-<op>` exists (before changing anything), and block while `block-<op>` exists.
To keep the suite quick, the `site` fixture records the creation of the site the way a worker records a
successful run (the creation itself is exercised by the tests that create sites through the worker).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from conftest import TOKEN, runs, wait_job, wait_until

from api.jobs.engine import claim, finish
from api.models import Base, JobState

pytestmark = pytest.mark.db

SITE = {"service_id": 17, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


def table_rows(runtime) -> dict[str, list[tuple]]:
    with runtime.db.engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(table.select().order_by(*table.primary_key))]
            for table in Base.metadata.sorted_tables
        }


def accepted(api, path: str, body: dict) -> dict:
    answer = api.post(path, body)
    assert answer.status_code == 202, (path, body, answer.get_json())
    result = answer.get_json()
    assert result["success"] is True and isinstance(result["job_id"], int)
    return result


def succeeded(api, path: str, body: dict) -> dict:
    """Send a change and wait until its job has succeeded."""
    result = accepted(api, path, body)
    job = wait_job(api, result["job_id"])
    assert job["state"] == "succeeded", job
    return result


def status(api, service_id: int = 17) -> dict:
    answer = api.get("/status", service_id=service_id)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def refused(api, runtime, path: str, body: dict, status_code: int, code: str, job_running: bool = False) -> dict:
    """The request is refused and changes nothing (a running job writes its own progress and events: those aside)."""
    before = table_rows(runtime)
    answer = api.post(path, body)
    assert answer.status_code == status_code, (path, body, answer.get_json())
    result = answer.get_json()
    assert result["success"] is False and result["code"] == code, result
    assert result["error"].endswith("."), result
    after = table_rows(runtime)
    if job_running:
        for rows in (before, after):
            rows["jobs"] = sorted(row[0] for row in rows["jobs"])  # ids: no new job
            rows.pop("job_events")
    assert after == before, f"{path} changed the database"
    return result


def ops(control_dir) -> list[str]:
    return [run["op"] for run in runs(control_dir)]


def today() -> str:
    return datetime.now(UTC).strftime("%d%m%Y")


def settled_site(api, runtime, service_id: int = 17, plan: str = "basic") -> dict:
    """A site whose creation job is recorded as succeeded, with the stats the create double reports."""
    created = accepted(api, "/create-site", dict(SITE, service_id=service_id, plan=plan))
    assert claim(runtime, created["job_id"])
    stats = {"vmid": 100000 + service_id, "node": "pve-test-1", "ip": f"10.77.0.{service_id % 250 + 2}"}
    finish(runtime, created["job_id"], JobState.SUCCEEDED, stats=stats)
    assert status(api, service_id)["state"] == "active"
    return created


@pytest.fixture
def site(api, runtime, start_worker) -> dict:
    """Site 17 on the basic plan, active; then a worker runs whatever comes next."""
    created = settled_site(api, runtime)
    start_worker()
    return created


# ---- suspension -------------------------------------------------------------------------------------------------

CUSTOMER_ACTIONS = [
    ("/action/power", {"service_id": 17, "action": "start"}),
    ("/action/power", {"service_id": 17, "action": "reset"}),
    ("/action/mkbak", {"service_id": 17}),
    ("/action/setdomain", {"service_id": 17, "domain": "shop.example.com"}),
    ("/action/toggle", {"service_id": 17}),
    ("/action/delbak", {"service_id": 17, "bak": "{bak}"}),
    ("/action/rollback", {"service_id": 17, "bak": "{bak}"}),
]


def customer_actions(bak: str) -> list[tuple[str, dict]]:
    return [
        (path, {k: v.format(bak=bak) if isinstance(v, str) else v for k, v in body.items()})
        for path, body in CUSTOMER_ACTIONS
    ]


def test_a_suspended_site_refuses_customer_actions(api, runtime, site, control_dir):
    bak = succeeded(api, "/action/mkbak", {"service_id": 17})["bak"]
    (control_dir / "block-site_suspend").touch()
    suspending = accepted(api, "/suspend-site", {"service_id": 17})
    assert suspending["heading_to"] == "suspended"
    wait_until(lambda: "site_suspend" in ops(control_dir), what="the suspension to start")
    # refused as soon as the suspension is on its way, and asking again queues nothing
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 409, "suspended", job_running=True)
    while_running = api.post("/suspend-site", {"service_id": 17})
    assert while_running.status_code == 200 and while_running.get_json()["job_id"] is None
    assert status(api)["state"] == "active", "the job's outcome, not the request, moves the state"
    (control_dir / "release-site_suspend").touch()
    assert wait_job(api, suspending["job_id"])["state"] == "succeeded"
    assert status(api)["state"] == "suspended"

    for path, body in customer_actions(bak):
        refused(api, runtime, path, body, 409, "suspended")
    # reads still answer
    assert [b["name"] for b in api.get("/action/getbak", service_id=17).get_json()["backups"]] == [bak]
    assert api.get("/action/getdomain", service_id=17).status_code == 200

    jobs_before = len(table_rows(runtime)["jobs"])
    again = api.post("/suspend-site", {"service_id": 17})
    assert again.status_code == 200
    assert again.get_json()["success"] is True
    assert again.get_json()["job_id"] is None and again.get_json()["state"] == "suspended"
    assert len(table_rows(runtime)["jobs"]) == jobs_before

    resumed = succeeded(api, "/unsuspend-site", {"service_id": 17})
    assert resumed["heading_to"] == "active"
    assert status(api)["state"] == "active"
    assert ops(control_dir) == ["backup_create", "site_suspend", "site_unsuspend"]
    accepted(api, "/action/toggle", {"service_id": 17})


def test_power_moves_between_active_and_stopped(api, site, control_dir):
    stopped = succeeded(api, "/action/power", {"service_id": 17, "action": "stop", "status": "active"})
    assert stopped["heading_to"] == "stopped"
    assert status(api)["state"] == "stopped"
    succeeded(api, "/action/power", {"service_id": 17, "action": "start"})
    assert status(api)["state"] == "active"
    assert [run["vars"]["power_action"] for run in runs(control_dir) if run["op"] == "site_power"] == [
        "stop",
        "start",
    ]


# ---- quotas -----------------------------------------------------------------------------------------------------


def test_backup_quota(api, runtime, site, control_dir):
    (control_dir / "block-backup_create").touch()
    made = [accepted(api, "/action/mkbak", {"service_id": 17}) for _ in range(3)]
    assert [m["bak"] for m in made] == [f"BAK{today()}-{n}" for n in (1, 2, 3)]
    wait_until(lambda: "backup_create" in ops(control_dir), what="the first backup to start")
    # backups on their way count against the quota
    over = refused(api, runtime, "/action/mkbak", {"service_id": 17}, 422, "backup_quota", job_running=True)
    assert "3" in over["error"]
    (control_dir / "block-backup_create").unlink()
    (control_dir / "release-backup_create").touch()
    for m in made:
        assert wait_job(api, m["job_id"])["state"] == "succeeded"

    listed = api.get("/action/getbak", service_id=17).get_json()
    assert [(b["name"], b["state"]) for b in listed["backups"]] == [(m["bak"], "present") for m in made]
    assert listed["quota"] == {"limit": 3, "used": 3, "available": 0}
    assert status(api)["quotas"]["backups"] == {"limit": 3, "used": 3, "available": 0}
    assert [run["vars"]["bak"] for run in runs(control_dir) if run["op"] == "backup_create"] == [m["bak"] for m in made]
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 422, "backup_quota")

    succeeded(api, "/action/delbak", {"service_id": 17, "bak": made[0]["bak"]})
    listed = api.get("/action/getbak", service_id=17).get_json()
    assert [b["name"] for b in listed["backups"]] == [made[1]["bak"], made[2]["bak"]]
    assert listed["quota"]["available"] == 1
    again = accepted(api, "/action/mkbak", {"service_id": 17})
    assert again["bak"] == f"BAK{today()}-4", "a name is never given twice on one day"


def test_a_backup_that_fails_does_not_use_the_quota(api, site, control_dir):
    (control_dir / "fail-backup_create").write_text("snapshot feature is not available")
    made = accepted(api, "/action/mkbak", {"service_id": 17})
    job = wait_job(api, made["job_id"])
    assert job["state"] == "failed" and "snapshot feature is not available" in job["message"]
    listed = api.get("/action/getbak", service_id=17).get_json()
    assert listed["backups"] == [] and listed["quota"]["available"] == 3


def test_domain_quota_and_ownership(api, runtime, site, control_dir):
    settled_site(api, runtime, 18, "premium")

    (control_dir / "block-domain_add").touch()
    added = accepted(api, "/action/setdomain", {"service_id": 17, "domain": "shop.example.com"})
    assert added["domain_state"] == "pending"
    wait_until(lambda: "domain_add" in ops(control_dir), what="the domain job to start")
    retried = api.post("/action/setdomain", {"service_id": 17, "domain": "SHOP.example.com."})
    assert retried.get_json()["job_id"] == added["job_id"], "a retry while it runs is the same job"
    for service_id, domain, status_code, code in [(17, "blog.example.com", 422, "domain_quota"),
                                                  (18, "shop.example.com", 409, "domain_taken")]:  # fmt: skip
        body = {"service_id": service_id, "domain": domain}
        refused(api, runtime, "/action/setdomain", body, status_code, code, job_running=True)
    (control_dir / "block-domain_add").unlink()
    (control_dir / "release-domain_add").touch()
    assert wait_job(api, added["job_id"])["state"] == "succeeded"

    jobs_before = len(table_rows(runtime)["jobs"])
    same = api.post("/action/setdomain", {"service_id": 17, "domain": "shop.example.com"})
    assert same.status_code == 200
    assert same.get_json()["job_id"] is None
    assert (same.get_json()["domain"], same.get_json()["domain_state"]) == ("shop.example.com", "active")
    assert len(table_rows(runtime)["jobs"]) == jobs_before
    refused(api, runtime, "/action/setdomain", {"service_id": 17, "domain": "blog.example.com"}, 422, "domain_quota")
    refused(api, runtime, "/action/setdomain", {"service_id": 18, "domain": "shop.example.com"}, 409, "domain_taken")
    assert status(api)["quotas"]["domains"] == {"limit": 1, "used": 1, "available": 0}

    removed = succeeded(api, "/action/deldomain", {"service_id": 17, "domain": "shop.example.com"})
    assert removed["domain_state"] == "removing"
    listed = api.get("/action/getdomain", service_id=17).get_json()
    assert listed["domains"] == [] and listed["quota"] == {"limit": 1, "used": 0, "available": 1}
    domain_runs = [(run["op"], run["vars"]["domain"]) for run in runs(control_dir) if "domain" in run["op"]]
    assert domain_runs == [("domain_add", "shop.example.com"), ("domain_remove", "shop.example.com")]

    # the name is free again: the other site may have it, and 17 may take another one
    accepted(api, "/action/setdomain", {"service_id": 18, "domain": "shop.example.com"})
    accepted(api, "/action/setdomain", {"service_id": 17, "domain": "blog.example.com"})


def test_a_domain_that_fails_is_shown_failed_and_may_be_tried_again(api, site, control_dir):
    (control_dir / "fail-domain_add").write_text("shop.example.com does not resolve to 203.0.113.10")
    added = accepted(api, "/action/setdomain", {"service_id": 17, "domain": "shop.example.com"})
    assert wait_job(api, added["job_id"])["state"] == "failed"
    listed = api.get("/action/getdomain", service_id=17).get_json()["domains"]
    assert [(d["domain"], d["state"]) for d in listed] == [("shop.example.com", "failed")]
    assert "does not resolve" in listed[0]["message"]

    (control_dir / "fail-domain_add").unlink()
    again = succeeded(api, "/action/setdomain", {"service_id": 17, "domain": "shop.example.com"})
    assert again["job_id"] != added["job_id"]
    listed = api.get("/action/getdomain", service_id=17).get_json()["domains"]
    assert [(d["domain"], d["state"], d["message"]) for d in listed] == [("shop.example.com", "active", None)]


# ---- toggle ------------------------------------------------------------------------------------------------------


def test_toggle_is_serialised(api, site, control_dir):
    (control_dir / "block-proxy_toggle").touch()
    first = accepted(api, "/action/toggle", {"service_id": 17})
    second = accepted(api, "/action/toggle", {"service_id": 17})
    # the second answer already counts the first, which has not run yet
    assert (first["proxy_enabled"], second["proxy_enabled"]) == (False, True)
    wait_until(lambda: "proxy_toggle" in ops(control_dir), what="the first toggle to start")
    assert api.get(f"/jobs/{second['job_id']}").get_json()["job"]["state"] == "queued"
    assert status(api)["proxy_enabled"] is True, "the job's outcome, not the request, moves the state"

    (control_dir / "release-proxy_toggle").touch()
    assert wait_job(api, first["job_id"])["state"] == "succeeded"
    assert wait_job(api, second["job_id"])["state"] == "succeeded"
    toggles = [run for run in runs(control_dir) if run["op"] == "proxy_toggle"]
    assert [(run["job"], run["vars"]["proxy_enabled"]) for run in toggles] == [
        (first["job_id"], False),
        (second["job_id"], True),
    ]
    assert status(api)["proxy_enabled"] is True


def test_toggles_fired_in_parallel_alternate(api, site, server, control_dir):
    (control_dir / "block-proxy_toggle").touch()  # nothing runs: only the answers and the queue count

    def toggle(_index):
        return requests.post(
            server + "/action/toggle",
            json={"service_id": 17},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(toggle, range(6)))
    assert [answer.status_code for answer in answers] == [202] * 6, [a.text for a in answers]
    by_job = sorted((answer.json()["job_id"], answer.json()["proxy_enabled"]) for answer in answers)
    assert len({job_id for job_id, _ in by_job}) == 6
    assert [enabled for _, enabled in by_job] == [False, True, False, True, False, True]


# ---- upgrade ----------------------------------------------------------------------------------------------------


def test_upgrade_changes_plan_and_quotas_after_the_job(api, site, control_dir):
    (control_dir / "block-site_upgrade").touch()
    upgraded = accepted(api, "/wp/upgrade/", {"service_id": 17, "plan": "premium"})
    wait_until(lambda: "site_upgrade" in ops(control_dir), what="the upgrade to start")
    assert status(api)["plan"] == "basic", "the job's outcome, not the request, changes the plan"
    (control_dir / "release-site_upgrade").touch()
    assert wait_job(api, upgraded["job_id"])["state"] == "succeeded"

    after = status(api)
    assert after["plan"] == "premium" and after["state"] == "active"
    assert after["quotas"] == {
        "backups": {"limit": 10, "used": 0, "available": 10},
        "domains": {"limit": 5, "used": 0, "available": 5},
    }
    assert [run["vars"]["plan"] for run in runs(control_dir) if run["op"] == "site_upgrade"] == ["premium"]
    assert api.get("/action/getdomain", service_id=17).get_json()["quota"]["limit"] == 5


def test_a_plan_with_a_smaller_disk_is_refused_before_anything_runs(api, runtime):
    settled_site(api, runtime, service_id=18, plan="premium")
    body = refused(api, runtime, "/wp/upgrade/", {"service_id": 18, "plan": "basic"}, 422, "disk_too_small")
    assert body["error"] == ("The plan basic has a 8 GB disk, smaller than this site's 16 GB; a disk cannot shrink.")


# ---- failures -----------------------------------------------------------------------------------------------------


def test_a_failed_creation_is_shown_and_may_be_tried_again(api, runtime, worker, control_dir):
    (control_dir / "block-site_create").touch()
    (control_dir / "fail-site_create").write_text("no space left on storage drbd1")
    first = accepted(api, "/create-site", SITE)
    wait_until(lambda: "site_create" in ops(control_dir), what="the creation to start")
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 409, "provisioning", job_running=True)
    refused(api, runtime, "/action/toggle", {"service_id": 17}, 409, "provisioning", job_running=True)
    (control_dir / "release-site_create").touch()
    job = wait_job(api, first["job_id"])
    assert job["state"] == "failed"
    assert job["failed_task"] == "Fail when the test asks for it"
    assert "no space left on storage drbd1" in job["message"]
    failed = status(api)
    assert failed["state"] == "failed"
    assert "Fail when the test asks for it" in failed["failure_reason"]
    assert "no space left on storage drbd1" in failed["failure_reason"]
    assert failed["last_job"]["id"] == first["job_id"]
    # a site that never came up has nothing to act on
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 409, "not_created")

    (control_dir / "fail-site_create").unlink()
    second = accepted(api, "/create-site", SITE)
    assert second["job_id"] != first["job_id"]
    assert second["admin_password"] and second["admin_password"] != first["admin_password"]
    assert second["state"] == "provisioning" and second["heading_to"] == "active"
    assert wait_job(api, second["job_id"])["state"] == "succeeded"
    after = status(api)
    assert (after["state"], after["failure_reason"]) == ("active", None)
    passwords = [run["vars"]["admin_password"] for run in runs(control_dir) if run["op"] == "site_create"]
    assert passwords == [first["admin_password"], second["admin_password"]]

    repeated = api.post("/create-site", SITE)
    assert repeated.status_code == 200 and repeated.get_json()["job_id"] is None
    accepted(api, "/action/mkbak", {"service_id": 17})


def test_a_site_that_fails_later_is_not_created_again(api, runtime, site, control_dir):
    (control_dir / "fail-site_power").write_text("CT 100017 is locked (backup)")
    powered = accepted(api, "/action/power", {"service_id": 17, "action": "restart"})
    assert wait_job(api, powered["job_id"])["state"] == "failed"
    assert status(api)["state"] == "failed"
    jobs_before = len(table_rows(runtime)["jobs"])
    again = api.post("/create-site", SITE)
    assert again.status_code == 200 and again.get_json()["job_id"] is None
    assert again.get_json()["admin_password"] is None
    assert len(table_rows(runtime)["jobs"]) == jobs_before
    assert "site_create" not in ops(control_dir)


def test_a_job_that_changed_nothing_leaves_the_site_as_it_was(api, runtime, site, control_dir):
    (control_dir / "refuse-site_power").write_text("CT 100017 is locked (backup)")
    powered = accepted(api, "/action/power", {"service_id": 17, "action": "restart"})
    job = wait_job(api, powered["job_id"])
    assert (job["state"], job["message"]) == ("failed", "CT 100017 is locked (backup)")
    after = status(api)
    assert (after["state"], after["failure_reason"]) == ("active", None)
    assert (after["last_job"]["id"], after["last_job"]["state"]) == (powered["job_id"], "failed")
    assert after["last_job"]["message"] == "CT 100017 is locked (backup)"

    # A deletion shows `deleting` while it runs; refused, the site is what it was before.
    (control_dir / "refuse-site_delete").write_text("Proxmox VE API did not answer")
    deleted = accepted(api, "/delete-site", {"service_id": 17})
    assert wait_job(api, deleted["job_id"])["state"] == "failed"
    after = status(api)
    assert (after["state"], after["heading_to"], after["failure_reason"]) == ("active", None, None)
    assert ops(control_dir) == ["site_power", "site_delete"]


def test_a_failure_that_changed_nothing_keeps_a_failed_or_uncreated_site_failed(api, runtime):
    # A creation that changed nothing leaves no site: it is failed all the same.
    created = accepted(api, "/create-site", SITE)
    assert claim(runtime, created["job_id"])
    finish(runtime, created["job_id"], JobState.FAILED, message="no node has room", changed=0)
    assert (status(api)["state"], status(api)["failure_reason"]) == ("failed", "no node has room")
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 409, "not_created")

    # A site that broke keeps its reason when a later job fails without changing anything.
    settled_site(api, runtime, service_id=18)
    powered = accepted(api, "/action/power", {"service_id": 18, "action": "stop"})
    assert claim(runtime, powered["job_id"])
    finish(runtime, powered["job_id"], JobState.FAILED, message="stop task failed", changed=1)
    deleted = accepted(api, "/delete-site", {"service_id": 18})
    assert claim(runtime, deleted["job_id"])
    assert status(api, 18)["state"] == "deleting"
    finish(runtime, deleted["job_id"], JobState.FAILED, message="Proxmox VE API did not answer", changed=0)
    after = status(api, 18)
    assert (after["state"], after["failure_reason"]) == ("failed", "stop task failed")
    assert after["last_job"]["message"] == "Proxmox VE API did not answer"


def test_a_failed_job_still_brings_the_backups_in_line_with_the_cluster(api, runtime):
    settled_site(api, runtime)
    made = accepted(api, "/action/mkbak", {"service_id": 17})
    assert claim(runtime, made["job_id"])
    finish(runtime, made["job_id"], JobState.SUCCEEDED, stats={"backups": [made["bak"]]})
    rollback = accepted(api, "/action/rollback", {"service_id": 17, "bak": made["bak"]})
    assert claim(runtime, rollback["job_id"])
    gone = f"Backup {made['bak']} no longer exists on the cluster (it was deleted outside the API)"
    finish(runtime, rollback["job_id"], JobState.FAILED, stats={"backups": []}, message=gone, changed=0)
    assert api.get("/action/getbak", service_id=17).get_json()["backups"] == []
    assert (status(api)["state"], status(api)["last_job"]["message"]) == ("active", gone)


# ---- deletion --------------------------------------------------------------------------------------------------------


def test_delete_site(api, runtime, site, control_dir):
    succeeded(api, "/action/mkbak", {"service_id": 17})
    succeeded(api, "/action/setdomain", {"service_id": 17, "domain": "shop.example.com"})
    deleted = succeeded(api, "/delete-site", {"service_id": 17})
    assert deleted["heading_to"] == "deleted"

    after = status(api)
    assert after["state"] == "deleted" and after["vmid"] is None
    assert after["quotas"]["backups"]["used"] == 0 and after["quotas"]["domains"]["used"] == 0
    rows = table_rows(runtime)
    assert rows["backups"] == [] and rows["domains"] == []
    delete_runs = [run for run in runs(control_dir) if run["op"] == "site_delete"]
    assert len(delete_runs) == 1 and delete_runs[0]["vars"]["subdomain"] == "wp17.sites.example.net"

    for path in ("/action/getbak", "/action/getdomain"):
        answer = api.get(path, service_id=17)
        assert answer.status_code == 404 and answer.get_json()["code"] == "unknown_service"
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 404, "unknown_service")
    refused(api, runtime, "/suspend-site", {"service_id": 17}, 404, "unknown_service")

    again = api.post("/delete-site", {"service_id": 17})
    assert again.status_code == 200 and again.get_json()["job_id"] is None
    assert len(table_rows(runtime)["jobs"]) == len(rows["jobs"])
    assert ops(control_dir).count("site_delete") == 1


def test_delete_cancels_what_is_still_queued(api, runtime, site, control_dir):
    (control_dir / "block-backup_create").touch()
    made = accepted(api, "/action/mkbak", {"service_id": 17})
    wait_until(lambda: "backup_create" in ops(control_dir), what="the backup to start")
    toggled = accepted(api, "/action/toggle", {"service_id": 17})
    deleted = accepted(api, "/delete-site", {"service_id": 17})
    assert api.get(f"/jobs/{toggled['job_id']}").get_json()["job"]["state"] == "cancelled"
    refused(api, runtime, "/action/mkbak", {"service_id": 17}, 409, "deleting", job_running=True)

    (control_dir / "release-backup_create").touch()
    assert wait_job(api, made["job_id"])["state"] == "succeeded"
    assert wait_job(api, deleted["job_id"])["state"] == "succeeded"
    assert status(api)["state"] == "deleted"
    assert "proxy_toggle" not in ops(control_dir)
    assert table_rows(runtime)["backups"] == []

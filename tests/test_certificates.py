"""Certificates through the API with the playbook doubles (tests/playbooks/ops): a certificate that could not be
issued is in /status with its reason and its next retry, POST /action/ssl-retry and the worker's schedule ask for
it again (later after each failure), and create-site again of such a site retries it too."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import runs, wait_job
from sqlalchemy import select
from test_api_state_rules import refused

from api.jobs.engine import claim, finish
from api.models import Certificate, JobState
from api.ssl_retry import queue_ssl_retries

pytestmark = pytest.mark.db

SITE = {"email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
REASON = "Let's Encrypt could not reach the name over HTTP"


def certificate(api, service_id: int) -> dict:
    """The site's one certificate (of its subdomain) as /status shows it."""
    site = api.get("/status", service_id=service_id).get_json()
    (only,) = site["certificates"]
    assert only["name"] == only["name_unicode"] == site["subdomain"]
    return only


def retry_delay(cert: dict) -> timedelta:
    return datetime.fromisoformat(cert["next_retry_at"]) - datetime.fromisoformat(cert["checked_at"])


def queued(outcomes) -> list[int]:
    return [outcome.job_id for outcome in outcomes if outcome.job_id is not None]


def test_a_failed_certificate_is_shown_and_retried_on_demand_until_it_is_active(api, runtime, worker, control_dir):
    (control_dir / "ssl-error").write_text(REASON)
    created = api.post("/create-site", {"service_id": 41, **SITE}).get_json()
    assert wait_job(api, created["job_id"])["state"] == "succeeded"
    cert = certificate(api, 41)
    assert (cert["state"], cert["message"], cert["attempts"]) == ("error", REASON, 1)
    assert retry_delay(cert) == timedelta(seconds=600), "PROXMOXWP_SSL_RETRY_SECONDS' default"

    # The retry fails again: the next one is twice as far.
    again = api.post("/action/ssl-retry", {"service_id": 41, "wait": 60})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["names"] == [created["subdomain"]]
    cert = certificate(api, 41)
    assert (cert["state"], cert["attempts"], retry_delay(cert)) == ("error", 2, timedelta(seconds=1200))

    (control_dir / "ssl-error").unlink()
    issued = api.post("/action/ssl-retry", {"service_id": 41, "wait": 60})
    assert issued.status_code == 200 and issued.get_json()["job"]["kind"] == "ssl_retry", issued.get_json()
    cert = certificate(api, 41)
    assert (cert["state"], cert["message"], cert["attempts"], cert["next_retry_at"]) == ("active", None, 0, None)
    site = api.get("/status", service_id=41).get_json()
    assert (site["state"], site["last_job"]["kind"]) == ("active", "create"), "a retry is not the site's last job"
    retries = [run["vars"] for run in runs(control_dir) if run["op"] == "ssl_retry"]
    assert [(given["names"], given["ip"]) for given in retries] == [([created["subdomain"]], site["ip"])] * 2

    answer = refused(api, runtime, "/action/ssl-retry", {"service_id": 41}, 409, "no_certificate_error")
    assert answer["error"] == "No certificate of this site is in error; there is nothing to retry."


def settle(runtime, job_id: int, state: JobState = JobState.SUCCEEDED, **outcome) -> None:
    """Finish a queued job as a worker does, without running a playbook."""
    assert claim(runtime, job_id)
    finish(runtime, job_id, state, **outcome)


def certificates(api, service_id: int) -> list[dict]:
    return api.get("/status", service_id=service_id).get_json()["certificates"]


def test_the_schedule_retries_when_due_and_backs_off_after_each_failure(api, runtime, monkeypatch):
    monkeypatch.setattr(runtime.settings, "ssl_retry_seconds", 100.0)
    created = api.post("/create-site", {"service_id": 42, **SITE}).get_json()
    name, domain = created["subdomain"], "shop.example.com"
    found = [{"name": name, "ssl": "error", "ssl_error": REASON}]
    settle(runtime, created["job_id"], stats={"vmid": 100042, "ip": "10.77.0.44", "certificates": found})
    added = api.post("/action/setdomain", {"service_id": 42, "domain": domain}).get_json()
    found = [{"name": domain, "ssl": "error", "ssl_error": "No A record yet"}]
    settle(runtime, added["job_id"], stats={"domain_state": "ssl_error", "certificates": found})
    cert, shop = certificates(api, 42)
    assert (cert["name"], cert["state"], cert["message"], retry_delay(cert)) == (
        name,
        "error",
        REASON,
        timedelta(seconds=100),
    )
    assert (shop["name"], shop["state"], shop["message"]) == (domain, "error", "No A record yet")
    checked = datetime.fromisoformat(cert["checked_at"])

    assert queued(queue_ssl_retries(runtime)) == []
    assert queued(queue_ssl_retries(runtime, now=checked + timedelta(seconds=99))) == [], "not before it is due"
    # both are due once the later one is
    (due,) = queued(queue_ssl_retries(runtime, now=datetime.fromisoformat(shop["next_retry_at"])))
    job = api.get(f"/jobs/{due}").get_json()["job"]
    assert (job["kind"], job["params"]["names"], job["params"]["ip"]) == ("ssl_retry", [name, domain], "10.77.0.44")
    assert queued(queue_ssl_retries(runtime, now=checked + timedelta(days=1))) == [], "one job at a time"

    # The domain's certificate is issued, the subdomain's fails again: its next retry is twice as far.
    found = [{"name": name, "ssl": "error", "ssl_error": REASON}, {"name": domain, "ssl": "active"}]
    settle(runtime, due, stats={"certificates": found})
    cert, shop = certificates(api, 42)
    assert (cert["attempts"], retry_delay(cert)) == (2, timedelta(seconds=200))
    assert (shop["state"], shop["attempts"], shop["next_retry_at"]) == ("active", 0, None)
    (attached,) = api.get("/action/getdomain", service_id=42).get_json()["domains"]
    assert (attached["state"], attached["message"]) == ("active", None)

    # Paymenter's create-site again answers the site, with a retry of the subdomain; a run that fails (NPM did not
    # answer) counts as a failed attempt too.
    again = api.post("/create-site", {"service_id": 42, **SITE})
    assert again.status_code == 202 and again.get_json()["admin_password"] is None, again.get_json()
    retry = api.get(f"/jobs/{again.get_json()['job_id']}").get_json()["job"]
    assert (retry["kind"], retry["params"]["names"]) == ("ssl_retry", [name])
    settle(runtime, retry["id"], JobState.FAILED, message="NPM did not answer.")
    cert, _ = certificates(api, 42)
    assert (cert["attempts"], retry_delay(cert)) == (3, timedelta(seconds=400))
    assert api.get("/status", service_id=42).get_json()["state"] == "active"

    removed = api.post("/action/deldomain", {"service_id": 42, "domain": domain}).get_json()
    settle(runtime, removed["job_id"])
    with runtime.db.session() as session:
        assert session.scalars(select(Certificate.name)).all() == [name], "the domain's certificate row is gone"

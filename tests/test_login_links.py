"""One-click login through the API (POST /action/login-link) and a new administrator password
(POST /action/admin-password), with a worker running the playbook doubles (tests/playbooks/ops): a site that holds
its login key gets a signed single-use link at once and nothing that would log in is kept; a site without the key
(made before one-click login, or restored from a disk that may be older) is given it by a job first; a stopped
site is refused; a new password is answered once and reaches the run sealed, never its record.

That a link logs in once, and is refused a second time or after its lifetime, is WordPress's side: the must-use
plugin on a real lab site (tests/test_lab_e2e.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import runs, wait_job

from api import login_links
from api.models import Base, Service

pytestmark = pytest.mark.db

SITE = {"service_id": 4101, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


def created(api) -> dict:
    answer = api.post("/create-site", SITE)
    assert answer.status_code == 202, answer.get_json()
    assert wait_job(api, answer.get_json()["job_id"])["state"] == "succeeded"
    return answer.get_json()


def claims_of(url: str) -> tuple[dict, str, str]:
    """The claims of a link's token, with the token's two parts."""
    token = parse_qs(urlsplit(url).query)["token"][0]
    body, signature = token.split(".")
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))), body, signature


def every_value(runtime) -> str:
    """Every row of every table as text: what the API keeps."""
    with runtime.db.engine.connect() as connection:
        return "\n".join(
            repr(tuple(row)) for table in Base.metadata.sorted_tables for row in connection.execute(table.select())
        )


def site_key(runtime, service_id: int) -> bytes:
    with runtime.db.session() as session:
        return login_links.site_key(runtime.secret_box, session.get(Service, service_id))


def forget_login_key(runtime, service_id: int) -> None:
    """The site as one made before one-click login: the API knows of no key it holds."""
    with runtime.db.session(write=True) as session:
        session.get(Service, service_id).login_key_id = None


def test_a_site_holding_its_key_gets_a_signed_single_use_link_at_once_and_nothing_is_kept(
    api, worker, runtime, control_dir
):
    site = created(api)
    jobs_before = len(api.get("/jobs", service_id=SITE["service_id"]).get_json()["jobs"])

    first = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    second = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    assert first.status_code == second.status_code == 200, first.get_json()
    answer = first.get_json()
    assert answer["job_id"] is None and answer["admin_user"] == site["admin_user"]
    assert answer["login_url"].startswith(f"https://{site['subdomain']}/wp-login.php?action=proxmoxwp-login&token=")

    claims, body, signature = claims_of(answer["login_url"])
    key = site_key(runtime, SITE["service_id"])
    expected = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert hmac.compare_digest(signature, expected)
    assert claims["u"] == site["admin_user"]
    assert abs(claims["e"] - (time.time() + runtime.settings.login_link_seconds)) < 5
    assert datetime.fromisoformat(answer["expires_at"]).timestamp() == claims["e"]
    assert claims_of(second.get_json()["login_url"])[0]["n"] != claims["n"]  # each link its own nonce

    # No job for a link, and neither the links nor the key are anywhere in the database.
    assert len(api.get("/jobs", service_id=SITE["service_id"]).get_json()["jobs"]) == jobs_before
    kept = every_value(runtime)
    for secret in (body, signature, claims_of(second.get_json()["login_url"])[2], key.hex()):
        assert secret not in kept
    # The creation handed the key to its run sealed: its id is in the params, the key only in the run's variables.
    (create,) = [run for run in runs(control_dir) if run["op"] == "site_create"]
    assert create["vars"]["has_login_key"] and create["vars"]["login_key_id"] == login_links.key_id(key)


def test_a_site_without_its_key_is_given_it_by_one_job_then_gets_the_link(api, worker, runtime, control_dir):
    created(api)
    forget_login_key(runtime, SITE["service_id"])

    asked = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    again = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    assert asked.status_code == 202, asked.get_json()
    assert asked.get_json()["login_url"] is None and asked.get_json()["job_id"]
    assert again.get_json()["job_id"] == asked.get_json()["job_id"]  # one job, however often the customer clicks
    setup = wait_job(api, asked.get_json()["job_id"])
    assert setup["kind"] == "login_setup" and setup["state"] == "succeeded"
    key = site_key(runtime, SITE["service_id"])
    assert setup["params"]["login_key_id"] == login_links.key_id(key)
    assert key.hex() not in json.dumps(setup)
    (run,) = [run for run in runs(control_dir) if run["op"] == "site_login"]
    assert run["vars"]["has_login_key"] and run["vars"]["admin_password"] is None

    ready = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    assert ready.status_code == 200 and ready.get_json()["login_url"]

    # A caller that may wait gets the link in the same answer, once the key is set up.
    forget_login_key(runtime, SITE["service_id"])
    waited = api.post("/action/login-link", {"service_id": SITE["service_id"], "wait": 60})
    assert waited.status_code == 200, waited.get_json()
    assert waited.get_json()["login_url"] and waited.get_json()["job_id"] is None
    assert len([run for run in runs(control_dir) if run["op"] == "site_login"]) == 2
    # The customer's last operation is still the creation: setting up the key is the API's own doing.
    assert api.get("/status", service_id=SITE["service_id"]).get_json()["last_job"]["kind"] == "create"


def test_a_restored_backup_may_be_older_than_the_key_so_the_next_link_sets_it_up_again(api, worker, runtime):
    created(api)
    made = api.post("/action/mkbak", {"service_id": SITE["service_id"]}).get_json()
    assert wait_job(api, made["job_id"])["state"] == "succeeded"
    restored = api.post("/action/rollback", {"service_id": SITE["service_id"], "bak": made["bak"]}).get_json()
    assert wait_job(api, restored["job_id"])["state"] == "succeeded"

    asked = api.post("/action/login-link", {"service_id": SITE["service_id"]})
    assert asked.status_code == 202 and asked.get_json()["login_url"] is None


@pytest.mark.parametrize("action", ["stop", "suspend"])
def test_a_site_that_does_not_run_gets_no_link_and_no_job(api, worker, runtime, action):
    created(api)
    if action == "stop":
        answer = api.post("/action/power", {"service_id": SITE["service_id"], "action": "stop"})
    else:
        answer = api.post("/suspend-site", {"service_id": SITE["service_id"]})
    assert wait_job(api, answer.get_json()["job_id"])["state"] == "succeeded"
    before = every_value(runtime)

    for path in ("/action/login-link", "/action/admin-password"):
        refused = api.post(path, {"service_id": SITE["service_id"]})
        assert refused.status_code == 409, refused.get_json()
        assert refused.get_json()["code"] == ("not_active" if action == "stop" else "suspended")
    assert every_value(runtime) == before


def test_a_new_admin_password_is_answered_once_and_reaches_the_run_sealed(api, worker, runtime, control_dir):
    site = created(api)

    answer = api.post("/action/admin-password", {"service_id": SITE["service_id"]})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    password = body["admin_password"]
    assert body["admin_user"] == site["admin_user"] and len(password) >= 20 and password != site["admin_password"]
    job = wait_job(api, body["job_id"])
    assert job["kind"] == "admin_password" and job["state"] == "succeeded"

    (run,) = [run for run in runs(control_dir) if run["op"] == "site_login"]
    assert run["vars"]["admin_password"] == password and run["vars"]["admin_user"] == site["admin_user"]
    assert run["vars"]["has_login_key"]
    # Asked by the customer, so it is the site's last job; the password is nowhere the API keeps.
    assert api.get("/status", service_id=SITE["service_id"]).get_json()["last_job"]["kind"] == "admin_password"
    assert password not in every_value(runtime)
    assert api.post("/action/login-link", {"service_id": SITE["service_id"]}).status_code == 200

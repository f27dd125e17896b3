"""The API contract (docs/api.md) as Paymenter sees it: every endpoint in the shape the extension sends, and the
answers it gets.

Jobs here are finished the way a worker finishes them (`claim` then `finish`) without running a playbook, except
where the test is about what a real run does (the `worker` fixture).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from conftest import OTHER_TOKEN, TOKEN, runs, wait_job
from sqlalchemy.exc import OperationalError

from api.jobs.engine import claim, finish
from api.models import Base, Drift, JobState, Service

pytestmark = pytest.mark.db

SITE = {"service_id": 17, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}

JOB_KEYS = {
    "id",
    "service_id",
    "kind",
    "params",
    "state",
    "heading_to",
    "attempts",
    "max_attempts",
    "created_at",
    "started_at",
    "finished_at",
    "duration_seconds",
    "progress",
    "rc",
    "stats",
    "failed_task",
    "failed_host",
    "message",
}
STATUS_KEYS = {
    "success",
    "service_id",
    "subdomain",
    "site_url",
    "state",
    "heading_to",
    "failure_reason",
    "plan",
    "email",
    "vmid",
    "node",
    "ip",
    "proxy_enabled",
    "quotas",
    "last_job",
    "leftovers",
    "drift",
    "certificates",
}


# ---- helpers ---------------------------------------------------------------------------------------------


def table_rows(runtime) -> dict[str, list[tuple]]:
    """Every row of every table, to compare before and after a request."""
    with runtime.db.engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(table.select().order_by(*table.primary_key))]
            for table in Base.metadata.sorted_tables
        }


def settle(runtime, job_id: int, state: JobState = JobState.SUCCEEDED, **outcome) -> None:
    """Finish a queued job as a worker does (claim it, record its outcome), without running a playbook."""
    assert claim(runtime, job_id), f"job {job_id} is not the next one of its service"
    finish(runtime, job_id, state, **outcome)


def active_site(api, runtime, service_id: int = 17, plan: str = "basic") -> dict:
    answer = api.post("/create-site", dict(SITE, service_id=service_id, plan=plan))
    assert answer.status_code == 202, answer.get_json()
    stats = {"vmid": 100000 + service_id, "node": "pve-test-1", "ip": "10.77.0.2"}
    settle(runtime, answer.get_json()["job_id"], stats=stats)
    assert api.get("/status", service_id=service_id).get_json()["state"] == "active"
    return answer.get_json()


def assert_json_error(answer, status: int, code: str | None = None) -> dict:
    assert answer.status_code == status, answer.data
    assert answer.mimetype == "application/json", answer.data
    body = answer.get_json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert isinstance(body["code"], str) and body["code"], body
    assert "<html" not in answer.get_data(as_text=True).lower()
    assert "Traceback" not in body["error"]
    if code is not None:
        assert body["code"] == code, body
    return body


def today() -> str:
    return datetime.now(UTC).strftime("%d%m%Y")


# What a correct request to each authenticated endpoint looks like (for an active site 17 with one backup).
VALID = {
    ("POST", "/create-site"): dict(SITE, service_id=18),
    ("POST", "/delete-site"): {"service_id": 17},
    ("POST", "/suspend-site"): {"service_id": 17},
    ("POST", "/unsuspend-site"): {"service_id": 17},
    ("POST", "/wp/upgrade/"): {"service_id": 17, "plan": "premium"},
    ("POST", "/wp/upgrade"): {"service_id": 17, "plan": "premium"},
    ("POST", "/action/power"): {"service_id": 17, "action": "restart", "status": "active"},
    ("GET", "/status"): {"service_id": "17"},
    ("GET", "/action/getdomain"): {"service_id": "17"},
    ("POST", "/action/setdomain"): {"service_id": 17, "domain": "shop.example.com"},
    ("POST", "/action/deldomain"): {"service_id": 17, "domain": "shop.example.com"},
    ("GET", "/action/getbak"): {"service_id": "17"},
    ("POST", "/action/mkbak"): {"service_id": 17},
    ("POST", "/action/delbak"): {"service_id": 17, "bak": "BAK{today}-1"},
    ("POST", "/action/rollback"): {"service_id": 17, "bak": "BAK{today}-1"},
    ("POST", "/action/toggle"): {"service_id": 17},
    ("GET", "/jobs/1"): {},
    ("GET", "/jobs"): {"service_id": "17"},
}


def send(client, method: str, path: str, payload: dict, headers: dict):
    payload = {key: value.format(today=today()) if isinstance(value, str) else value for key, value in payload.items()}
    if method == "GET":
        return client.get(path, query_string=payload, headers=headers)
    return client.post(path, json=payload, headers=headers)


@pytest.fixture
def site_with_backup(api, runtime) -> dict:
    site = active_site(api, runtime)
    made = api.post("/action/mkbak", {"service_id": 17})
    settle(runtime, made.get_json()["job_id"])
    return site


# ---- health, unknown paths, methods ------------------------------------------------------------------


def test_health_answers_without_a_token(api):
    answer = api.get("/health", token=None)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["success"] is True and body["status"] == "ok" and body["version"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/action/nope", 404, "not_found"),
        ("GET", "/action/", 404, "not_found"),
        ("POST", "/create-site/", 404, "not_found"),
        ("GET", "/jobs/abc", 404, "not_found"),
        ("GET", "/create-site", 405, "method_not_allowed"),
        ("POST", "/status", 405, "method_not_allowed"),
        ("POST", "/action/getbak", 405, "method_not_allowed"),
        ("GET", "/action/mkbak", 405, "method_not_allowed"),
        ("PUT", "/action/toggle", 405, "method_not_allowed"),
        ("DELETE", "/jobs/1", 405, "method_not_allowed"),
        ("POST", "/health", 405, "method_not_allowed"),
    ],
)
@pytest.mark.parametrize("token", [TOKEN, None])
def test_unknown_paths_and_methods_answer_json(api, method, path, status, code, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = api.client.open(path, method=method, headers=headers, json={"service_id": 17})
    assert_json_error(answer, status, code)


def test_an_unexpected_error_is_a_json_500_without_details(api, app, monkeypatch):
    def broken(_data):
        raise RuntimeError("secret detail /etc/proxmoxwp/token=abc")

    monkeypatch.setattr(app.extensions["proxmoxwp"].lifecycle, "status", broken)
    answer = api.get("/status", service_id=17)
    body = assert_json_error(answer, 500, "internal_error")
    assert "secret detail" not in answer.get_data(as_text=True)
    assert "RuntimeError" not in body["error"]


def test_an_unreachable_database_is_a_json_503(api, app, monkeypatch):
    def unreachable(_data):
        raise OperationalError("SELECT 1", {}, Exception("connection to postgres://user:pw@db refused"))

    monkeypatch.setattr(app.extensions["proxmoxwp"].lifecycle, "status", unreachable)
    answer = api.get("/status", service_id=17)
    assert_json_error(answer, 503, "unavailable")
    assert "pw@db" not in answer.get_data(as_text=True)


def test_a_body_over_the_size_limit_is_a_json_413(api, runtime):
    before = table_rows(runtime)
    answer = api.post("/create-site", dict(SITE, email="a" * 70_000 + "@example.com"))
    assert_json_error(answer, 413)
    assert table_rows(runtime) == before


# ---- authentication ---------------------------------------------------------------------------------------


def bad_authorizations() -> list[tuple[str, dict]]:
    basic = base64.b64encode(f"paymenter:{TOKEN}".encode()).decode()
    return [
        ("no header", {}),
        ("empty header", {"Authorization": ""}),
        ("wrong token", {"Authorization": "Bearer not-the-token"}),
        ("token with a suffix", {"Authorization": f"Bearer {TOKEN}x"}),
        ("prefix of the token", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
        ("scheme without token", {"Authorization": "Bearer"}),
        ("scheme with blank token", {"Authorization": "Bearer    "}),
        ("basic scheme", {"Authorization": f"Basic {basic}"}),
        ("token scheme", {"Authorization": f"Token {TOKEN}"}),
        ("token without scheme", {"Authorization": TOKEN}),
        ("token in another header", {"X-Api-Key": TOKEN}),
    ]


@pytest.mark.parametrize(("method", "path"), list(VALID))
def test_every_endpoint_but_health_needs_a_valid_bearer_token(api, runtime, site_with_backup, method, path):
    before = table_rows(runtime)
    for what, headers in bad_authorizations():
        answer = send(api.client, method, path, VALID[(method, path)], headers)
        body = assert_json_error(answer, 401, "unauthorized")
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
        assert TOKEN not in answer.get_data(as_text=True), what
        assert set(body) == {"success", "error", "code"}, what
    assert table_rows(runtime) == before


def test_authentication_comes_before_validation(api, runtime):
    answer = api.post("/create-site", {"service_id": "not a number"}, token="wrong")
    assert_json_error(answer, 401, "unauthorized")
    answer = api.get("/status", token=None)
    assert_json_error(answer, 401, "unauthorized")


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_every_configured_token_is_accepted(api, runtime, token):
    created = api.post("/create-site", SITE, token=token)
    assert created.status_code == 202, created.get_json()
    assert api.get("/status", token=token, service_id=17).status_code == 200
    assert api.get("/action/getbak", token=token, service_id=17).status_code == 200
    assert api.get(f"/jobs/{created.get_json()['job_id']}", token=token).status_code == 200


def test_the_scheme_name_is_case_insensitive(api, runtime):
    active_site(api, runtime)
    answer = api.client.get("/status?service_id=17", headers={"Authorization": f"bearer {TOKEN}"})
    assert answer.status_code == 200


def test_tokens_are_never_logged_nor_stored(api, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    active_site(api, runtime)
    api.post("/action/mkbak", {"service_id": 17})
    api.post("/action/toggle", {"service_id": 17}, token=OTHER_TOKEN)
    api.post("/action/toggle", {"service_id": 17}, token="wrong-token-value")
    dump = json.dumps(table_rows(runtime), default=str)
    for token in (TOKEN, OTHER_TOKEN, "wrong-token-value"):
        assert token not in dump
        assert token not in caplog.text


# ---- unknown services ------------------------------------------------------------------------------------

FOR_A_SERVICE = [
    ("POST", "/suspend-site", {"service_id": 99}),
    ("POST", "/unsuspend-site", {"service_id": 99}),
    ("POST", "/wp/upgrade/", {"service_id": 99, "plan": "premium"}),
    ("POST", "/wp/upgrade", {"service_id": 99, "plan": "premium"}),
    ("POST", "/action/power", {"service_id": 99, "action": "start"}),
    ("GET", "/status", {"service_id": "99"}),
    ("GET", "/action/getdomain", {"service_id": "99"}),
    ("POST", "/action/setdomain", {"service_id": 99, "domain": "shop.example.com"}),
    ("POST", "/action/deldomain", {"service_id": 99, "domain": "shop.example.com"}),
    ("GET", "/action/getbak", {"service_id": "99"}),
    ("POST", "/action/mkbak", {"service_id": 99}),
    ("POST", "/action/delbak", {"service_id": 99, "bak": "BAK01012025-1"}),
    ("POST", "/action/rollback", {"service_id": 99, "bak": "BAK01012025-1"}),
    ("POST", "/action/toggle", {"service_id": 99}),
    ("GET", "/jobs", {"service_id": "99"}),
]


@pytest.mark.parametrize(("method", "path", "payload"), FOR_A_SERVICE)
def test_an_unknown_service_is_a_json_404(api, runtime, method, path, payload):
    active_site(api, runtime)  # another service exists
    before = table_rows(runtime)
    answer = send(api.client, method, path, payload, {"Authorization": f"Bearer {TOKEN}"})
    body = assert_json_error(answer, 404, "unknown_service")
    assert "99" in body["error"]
    assert table_rows(runtime) == before


def test_an_unknown_job_is_a_json_404(api, runtime):
    assert_json_error(api.get("/jobs/424242"), 404, "unknown_job")
    assert_json_error(api.get(f"/jobs/{2**40}"), 404, "unknown_job")  # beyond a PostgreSQL integer
    assert_json_error(api.get(f"/jobs/{2**64}"), 404, "unknown_job")  # beyond a SQLite integer
    assert_json_error(api.get("/jobs/0"), 404)


# ---- create-site --------------------------------------------------------------------------------------------


def test_create_site_answers_at_once_with_what_the_welcome_mail_needs(api, runtime):
    answer = api.post("/create-site", SITE)
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["success"] is True
    assert body["service_id"] == 17
    assert body["subdomain"] == "wp17.sites.example.net"
    assert body["site_url"] == "https://wp17.sites.example.net/"
    assert body["admin_url"] == "https://wp17.sites.example.net/wp-admin/"
    assert re.fullmatch(r"wpadmin-[a-z0-9]{6}", body["admin_user"]), "the prefix of tests/inventory's naming.yml"
    assert isinstance(body["admin_password"], str) and len(body["admin_password"]) >= 16
    assert body["state"] == "provisioning" and body["heading_to"] == "active"
    assert isinstance(body["job_id"], int)
    job = api.get(f"/jobs/{body['job_id']}").get_json()["job"]
    assert job["kind"] == "create" and job["state"] == "queued" and job["service_id"] == 17
    assert job["params"]["subdomain"] == "wp17.sites.example.net"
    assert body["admin_password"] not in json.dumps(job)

    other = api.post("/create-site", dict(SITE, service_id=18)).get_json()
    assert other["subdomain"] == "wp18.sites.example.net"
    assert other["admin_password"] != body["admin_password"]
    assert other["admin_user"] != body["admin_user"] and other["admin_user"].startswith("wpadmin-")


def test_a_creation_tried_again_keeps_the_admin_login_and_a_site_made_anew_gets_another(
    api, runtime, worker, control_dir
):
    """The login is chosen once per site: a failed creation tried again may find WordPress installed with it."""
    (control_dir / "fail-site_create").write_text("no storage left on drbd1")
    failed = api.post("/create-site", SITE).get_json()
    assert wait_job(api, failed["job_id"])["state"] == "failed"
    (control_dir / "fail-site_create").unlink()
    retried = api.post("/create-site", SITE).get_json()
    assert retried["job_id"] != failed["job_id"] and retried["admin_user"] == failed["admin_user"]
    assert wait_job(api, retried["job_id"])["state"] == "succeeded"
    asked = [run["vars"]["admin_user"] for run in runs(control_dir) if run["op"] == "site_create"]
    assert asked == [failed["admin_user"]] * 2, "both runs were given the login the API answered"

    assert wait_job(api, api.post("/delete-site", {"service_id": 17}).get_json()["job_id"])["state"] == "succeeded"
    anew = api.post("/create-site", SITE).get_json()
    assert anew["admin_user"] != failed["admin_user"] and anew["admin_user"].startswith("wpadmin-")


def test_service_id_may_come_as_a_string(api, runtime):
    first = api.post("/create-site", dict(SITE, service_id="17")).get_json()
    assert first["service_id"] == 17
    again = api.post("/create-site", SITE).get_json()
    assert again["job_id"] == first["job_id"]


def test_create_site_twice_gives_one_site_and_one_job(api, runtime):
    first = api.post("/create-site", SITE)
    second = api.post("/create-site", SITE)
    assert first.status_code == second.status_code == 202
    one, two = first.get_json(), second.get_json()
    assert one["job_id"] == two["job_id"]
    assert one["admin_password"] == two["admin_password"]
    assert one["subdomain"] == two["subdomain"]
    rows = table_rows(runtime)
    assert len(rows["services"]) == 1
    assert len(rows["jobs"]) == 1
    assert len(api.get("/jobs", service_id=17).get_json()["jobs"]) == 1


def test_create_site_fired_in_parallel_gives_one_site_and_one_job(server, runtime):
    def create(_index):
        return requests.post(
            server + "/create-site", json=SITE, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(8)))
    assert {answer.status_code for answer in answers} == {202}, [a.text for a in answers]
    bodies = [answer.json() for answer in answers]
    assert len({body["job_id"] for body in bodies}) == 1
    assert len({body["admin_password"] for body in bodies}) == 1
    rows = table_rows(runtime)
    assert len(rows["services"]) == 1 and len(rows["jobs"]) == 1


def test_create_site_for_an_existing_site_with_other_settings_is_a_conflict(api, runtime):
    active_site(api, runtime)
    before = table_rows(runtime)
    answer = api.post("/create-site", dict(SITE, email="someone.else@example.org"))
    assert_json_error(answer, 409, "already_exists")
    assert table_rows(runtime) == before


@pytest.mark.parametrize(
    "other",
    [{"email": "someone.else@example.org"}, {"plan": "premium"}, {"public_ip": "203.0.113.99"}],
    ids=["email", "plan", "public_ip"],
)
def test_create_site_with_other_settings_while_the_creation_is_pending_is_a_conflict(api, runtime, other):
    """Only the same request is told the pending job and its password; another gets 409 and changes nothing."""
    pending = api.post("/create-site", SITE).get_json()
    before = table_rows(runtime)
    answer = api.post("/create-site", dict(SITE, **other))
    assert_json_error(answer, 409, "already_exists")
    assert pending["admin_password"] not in answer.get_data(as_text=True)
    assert table_rows(runtime) == before

    claim(runtime, pending["job_id"])  # running now: the same holds
    assert_json_error(api.post("/create-site", dict(SITE, **other)), 409, "already_exists")
    same = api.post("/create-site", SITE).get_json()
    assert (same["job_id"], same["admin_password"]) == (pending["job_id"], pending["admin_password"])


def test_the_admin_password_is_used_once_then_forgotten(api, runtime, worker, control_dir, tmp_path):
    created = api.post("/create-site", SITE).get_json()
    password = created["admin_password"]
    job = wait_job(api, created["job_id"])
    assert job["state"] == "succeeded", job

    again = api.post("/create-site", SITE)
    assert again.status_code == 200
    body = again.get_json()
    assert body["admin_password"] is None
    assert body["job_id"] is None
    assert body["state"] == "active" and body["subdomain"] == "wp17.sites.example.net"

    # the playbook got it...
    recorded = [run for run in runs(control_dir) if run["op"] == "site_create"]
    assert len(recorded) == 1 and recorded[0]["vars"]["admin_password"] == password
    # ...and nothing keeps it: no table (params, events, messages, stats, sealed secrets), no file (data dir,
    # runs, queue, database file), no log
    rows = table_rows(runtime)
    assert rows["job_events"], "the run's events were stored"
    dump = json.dumps(rows, default=lambda value: value.hex() if isinstance(value, bytes) else str(value))
    assert password not in dump
    assert all(row_value is None for row_value in _column(rows, runtime, "jobs", "sealed_secrets"))
    places = [path for path in tmp_path.iterdir() if path != control_dir]  # data dir, runs, queue, worker log
    url = runtime.settings.database_url
    if url.startswith("sqlite:///"):  # the database file itself, with its write-ahead log
        places.append(Path(url.removeprefix("sqlite:///")).parent)
    # Another process reads the files: closing a descriptor of a SQLite file that this process has open would
    # drop this process's POSIX locks on it (and let another process delete the WAL under its feet).
    found = subprocess.run(["grep", "-rlaF", "--", password, *map(str, places)], capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == "", found


def _column(rows: dict, runtime, table: str, column: str) -> list:
    index = [c.name for c in Base.metadata.tables[table].columns].index(column)
    return [row[index] for row in rows[table]]


def test_wait_gives_the_finished_job(api, runtime, worker):
    answer = api.post("/create-site", dict(SITE, wait=60))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["state"] == "active" and body["heading_to"] is None
    assert body["job"]["state"] == "succeeded" and body["job"]["id"] == body["job_id"]
    assert body["admin_password"]


def test_wait_for_a_failing_job_answers_its_failure(api, runtime, worker, control_dir):
    (control_dir / "fail-site_create").write_text("no storage left on drbd1")
    answer = api.post("/create-site", dict(SITE, wait=60))
    body = assert_json_error(answer, 503, "job_failed")
    assert "Fail when the test asks for it" in body["error"]
    assert "no storage left on drbd1" in body["error"]
    assert isinstance(body["job_id"], int)


# ---- every other endpoint ---------------------------------------------------------------------------------


def test_status_answers_the_whole_record(api, runtime):
    active_site(api, runtime)
    answer = api.get("/status", service_id=17)
    assert answer.status_code == 200
    body = answer.get_json()
    assert set(body) == STATUS_KEYS
    assert body["success"] is True
    assert body["subdomain"] == "wp17.sites.example.net"
    assert body["site_url"] == "https://wp17.sites.example.net/"
    assert (body["state"], body["heading_to"], body["failure_reason"]) == ("active", None, None)
    assert body["plan"] == "basic" and body["email"] == "owner@example.com"
    assert (body["vmid"], body["node"], body["ip"]) == (100017, "pve-test-1", "10.77.0.2")
    assert body["proxy_enabled"] is True
    assert body["quotas"] == {
        "backups": {"limit": 3, "used": 0, "available": 3},
        "domains": {"limit": 1, "used": 0, "available": 1},
    }
    assert set(body["last_job"]) == JOB_KEYS
    assert body["last_job"]["kind"] == "create" and body["last_job"]["state"] == "succeeded"


def test_status_shows_each_name_certificate_and_drift_in_order(api, runtime):
    """/status reads a site, its job and its subdomain's certificate joined, and its domains (each with its
    certificate, or none yet) and its drift only when it has some: every part shows up, in its order."""
    active_site(api, runtime, plan="premium")
    names = ("b.example.com", "a.example.com")
    added = [api.post("/action/setdomain", {"service_id": 17, "domain": name}) for name in names]
    assert [answer.status_code for answer in added] == [202, 202]
    issued = {"name": "wp17.sites.example.net", "ssl": "active", "ssl_error": ""}
    settle(runtime, added[0].get_json()["job_id"], stats={"domain_state": "active", "certificates": [
        issued, {"name": "b.example.com", "ssl": "error", "ssl_error": "the name does not point here"},
    ]})  # fmt: skip
    with runtime.db.session(write=True) as session:
        session.add(Drift(service_id=17, key="container", what="the container", expected="running", found="stopped"))

    body = api.get("/status", service_id=17).get_json()
    assert [(c["name"], c["state"]) for c in body["certificates"]] == [
        ("wp17.sites.example.net", "active"),
        ("b.example.com", "error"),
        ("a.example.com", "none"),  # attached after b.example.com, its certificate not asked for yet
    ]
    assert body["certificates"][1]["message"] == "the name does not point here"
    assert [(d["key"], d["found"]) for d in body["drift"]] == [("container", "stopped")]
    assert body["quotas"]["domains"]["used"] == 2
    settled, newest = (answer.get_json()["job_id"] for answer in added)
    assert body["last_job"]["id"] == settled and body["last_job"]["state"] == "succeeded"

    # a recorded last job that is gone (pruned) gives way to the newest
    with runtime.db.session(write=True) as session:
        session.get(Service, 17).last_job_id = 10**9
    assert api.get("/status", service_id=17).get_json()["last_job"]["id"] == newest


def test_backups_make_list_rollback_delete(api, runtime):
    active_site(api, runtime)
    listed = api.get("/action/getbak", service_id=17)
    assert listed.status_code == 200
    assert listed.get_json() == {
        "success": True,
        "service_id": 17,
        "backups": [],
        "quota": {"limit": 3, "used": 0, "available": 3},
    }

    made = api.post("/action/mkbak", {"service_id": 17})
    assert made.status_code == 202
    body = made.get_json()
    name = f"BAK{today()}-1"
    assert body["success"] is True and body["bak"] == name and isinstance(body["job_id"], int)
    assert body["state"] == "active" and "heading_to" in body
    listed = api.get("/action/getbak", service_id=17).get_json()
    assert [(b["name"], b["state"]) for b in listed["backups"]] == [(name, "pending")]
    assert listed["quota"] == {"limit": 3, "used": 1, "available": 2}
    settle(runtime, body["job_id"])
    assert api.get("/action/getbak", service_id=17).get_json()["backups"][0]["state"] == "present"

    rolled = api.post("/action/rollback", {"service_id": 17, "bak": name})
    assert rolled.status_code == 202
    assert rolled.get_json()["bak"] == name and rolled.get_json()["heading_to"] == "active"
    settle(runtime, rolled.get_json()["job_id"])

    deleted = api.post("/action/delbak", {"service_id": 17, "bak": name})
    assert deleted.status_code == 202
    job_id = deleted.get_json()["job_id"]
    assert api.get("/action/getbak", service_id=17).get_json()["backups"][0]["state"] == "deleting"
    retried = api.post("/action/delbak", {"service_id": 17, "bak": name})
    assert retried.get_json()["job_id"] == job_id, "a retried delete is the same job"
    settle(runtime, job_id)
    assert api.get("/action/getbak", service_id=17).get_json()["backups"] == []
    assert_json_error(api.post("/action/delbak", {"service_id": 17, "bak": name}), 404, "unknown_backup")


def test_domains_set_list_delete(api, runtime):
    active_site(api, runtime)
    listed = api.get("/action/getdomain", service_id=17)
    assert listed.status_code == 200
    assert listed.get_json() == {
        "success": True,
        "service_id": 17,
        "domains": [],
        "quota": {"limit": 1, "used": 0, "available": 1},
    }

    added = api.post("/action/setdomain", {"service_id": 17, "domain": "Shop.Example.com"})
    assert added.status_code == 202
    body = added.get_json()
    assert body["success"] is True and isinstance(body["job_id"], int)
    assert (body["domain"], body["domain_unicode"], body["domain_state"]) == (
        "shop.example.com",
        "shop.example.com",
        "pending",
    )
    job = api.get(f"/jobs/{body['job_id']}").get_json()["job"]
    assert job["kind"] == "domain_add" and job["params"]["domain"] == "shop.example.com"
    settle(runtime, body["job_id"], stats={"domain_state": "active"})
    listed = api.get("/action/getdomain", service_id=17).get_json()
    assert [(d["domain"], d["domain_unicode"], d["state"]) for d in listed["domains"]] == [
        ("shop.example.com", "shop.example.com", "active")
    ]
    assert set(listed["domains"][0]) == {"domain", "domain_unicode", "state", "message", "created_at"}
    assert listed["quota"] == {"limit": 1, "used": 1, "available": 0}

    removed = api.post("/action/deldomain", {"service_id": 17, "domain": "shop.example.com"})
    assert removed.status_code == 202
    assert removed.get_json()["domain_state"] == "removing"
    settle(runtime, removed.get_json()["job_id"])
    assert api.get("/action/getdomain", service_id=17).get_json()["domains"] == []
    answer = api.post("/action/deldomain", {"service_id": 17, "domain": "shop.example.com"})
    assert_json_error(answer, 404, "unknown_domain")


@pytest.mark.parametrize(
    ("action", "heading_to"),
    [("start", "active"), ("stop", "stopped"), ("restart", "active"), ("reset", "active")],
)
def test_power_actions(api, runtime, action, heading_to):
    active_site(api, runtime)
    answer = api.post("/action/power", {"service_id": 17, "action": action, "status": "active"})
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["success"] is True and body["action"] == action
    assert body["heading_to"] == heading_to and isinstance(body["job_id"], int)
    job = api.get(f"/jobs/{body['job_id']}").get_json()["job"]
    assert job["kind"] == "power" and job["params"]["power_action"] == action
    assert job["params"]["paymenter_status"] == "active"
    settle(runtime, body["job_id"])
    assert api.get("/status", service_id=17).get_json()["state"] == heading_to


def test_toggle_answers_the_new_proxy_state(api, runtime):
    active_site(api, runtime)
    answer = api.post("/action/toggle", {"service_id": 17})
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["success"] is True and body["proxy_enabled"] is False and isinstance(body["job_id"], int)
    settle(runtime, body["job_id"])
    assert api.get("/status", service_id=17).get_json()["proxy_enabled"] is False


def test_suspend_and_unsuspend(api, runtime):
    active_site(api, runtime)
    suspended = api.post("/suspend-site", {"service_id": 17})
    assert suspended.status_code == 202
    body = suspended.get_json()
    assert body["success"] is True and body["heading_to"] == "suspended" and isinstance(body["job_id"], int)
    settle(runtime, body["job_id"])
    assert api.get("/status", service_id=17).get_json()["state"] == "suspended"

    again = api.post("/suspend-site", {"service_id": 17})
    assert again.status_code == 200
    assert again.get_json()["job_id"] is None and again.get_json()["state"] == "suspended"

    resumed = api.post("/unsuspend-site", {"service_id": 17})
    assert resumed.status_code == 202
    assert resumed.get_json()["heading_to"] == "active"
    settle(runtime, resumed.get_json()["job_id"])
    assert api.get("/status", service_id=17).get_json()["state"] == "active"
    again = api.post("/unsuspend-site", {"service_id": 17})
    assert again.status_code == 200 and again.get_json()["job_id"] is None


@pytest.mark.parametrize("first, second", [("/wp/upgrade/", "/wp/upgrade"), ("/wp/upgrade", "/wp/upgrade/")])
def test_upgrade_with_and_without_the_slash(api, runtime, first, second):
    active_site(api, runtime)
    answer = api.post(first, {"service_id": 17, "plan": "premium"})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["success"] is True and body["plan"] == "premium" and isinstance(body["job_id"], int)
    job = api.get(f"/jobs/{body['job_id']}").get_json()["job"]
    assert job["kind"] == "upgrade" and job["params"]["plan"] == "premium"
    settle(runtime, body["job_id"])
    assert api.get("/status", service_id=17).get_json()["plan"] == "premium"

    same = api.post(second, {"service_id": 17, "plan": "premium"})
    assert same.status_code == 200 and same.get_json()["job_id"] is None
    back = api.post(second, {"service_id": 17, "plan": "basic"})  # the basic plan's disk is smaller
    assert back.status_code == 422 and back.get_json()["code"] == "disk_too_small"


def test_delete_site_and_its_idempotency(api, runtime):
    unknown = api.post("/delete-site", {"service_id": 4242})
    assert unknown.status_code == 200
    assert unknown.get_json() == {
        "success": True,
        "service_id": 4242,
        "state": "deleted",
        "heading_to": None,
        "job_id": None,
    }
    assert table_rows(runtime)["services"] == []

    active_site(api, runtime)
    answer = api.post("/delete-site", {"service_id": 17})
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["success"] is True and body["heading_to"] == "deleted" and isinstance(body["job_id"], int)
    retried = api.post("/delete-site", {"service_id": 17})
    assert retried.get_json()["job_id"] == body["job_id"], "a retried delete is the same job"
    settle(runtime, body["job_id"])
    assert api.get("/status", service_id=17).get_json()["state"] == "deleted"

    jobs_before = len(table_rows(runtime)["jobs"])
    again = api.post("/delete-site", {"service_id": 17})
    assert again.status_code == 200
    assert again.get_json()["success"] is True and again.get_json()["job_id"] is None
    assert again.get_json()["state"] == "deleted"
    assert len(table_rows(runtime)["jobs"]) == jobs_before


# ---- jobs ----------------------------------------------------------------------------------------------------


def test_jobs_one_and_a_service_s_list(api, runtime):
    created = active_site(api, runtime)
    toggled = api.post("/action/toggle", {"service_id": 17}).get_json()

    one = api.get(f"/jobs/{created['job_id']}")
    assert one.status_code == 200
    body = one.get_json()
    assert body["success"] is True and set(body["job"]) == JOB_KEYS
    job = body["job"]
    assert (job["id"], job["service_id"], job["kind"], job["state"]) == (
        created["job_id"],
        17,
        "create",
        "succeeded",
    )
    assert job["heading_to"] == "active" and job["attempts"] == 1 and job["max_attempts"] >= 1
    assert job["started_at"] and job["finished_at"] and job["duration_seconds"] >= 0
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    assert set(job["progress"]) == {"done", "total"}
    assert job["stats"]["vmid"] == 100017
    assert (job["failed_task"], job["failed_host"], job["message"]) == (None, None, None)

    listed = api.get("/jobs", service_id=17)
    assert listed.status_code == 200
    jobs = listed.get_json()["jobs"]
    assert listed.get_json()["success"] is True
    assert [j["id"] for j in jobs] == [toggled["job_id"], created["job_id"]], "newest first"
    assert jobs[0]["state"] == "queued" and jobs[0]["started_at"] is None
    assert all(set(j) == JOB_KEYS for j in jobs)
    limited = api.get("/jobs", service_id=17, limit=1).get_json()["jobs"]
    assert [j["id"] for j in limited] == [toggled["job_id"]]


def test_a_failed_job_tells_its_task_host_and_message(api, runtime):
    created = api.post("/create-site", SITE).get_json()
    settle(
        runtime,
        created["job_id"],
        JobState.FAILED,
        rc=2,
        failed_task="Create the container",
        failed_host="localhost",
        message="storage drbd1 is full",
    )
    job = api.get(f"/jobs/{created['job_id']}").get_json()["job"]
    assert (job["state"], job["failed_task"], job["failed_host"], job["message"]) == (
        "failed",
        "Create the container",
        "localhost",
        "storage drbd1 is full",
    )
    status = api.get("/status", service_id=17).get_json()
    assert status["state"] == "failed"
    assert "Create the container" in status["failure_reason"] and "storage drbd1 is full" in status["failure_reason"]

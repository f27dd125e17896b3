"""Requests with `wait` hold a server thread each: only PROXMOXWP_MAX_WAITERS of them may wait at once in a server
process, so that /health and every other request still get a thread; one more is refused before anything is done."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from click.testing import CliRunner
from conftest import TOKEN, Api, HttpApi, job_state, wait_until

from api import create_app
from api.cli import main
from api.config import DEFAULT_THREADS

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SITE = {"service_id": 600, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
WAITERS = 50


@pytest.fixture
def roomy_server(start_server) -> str:
    """One gunicorn process with room for WAITERS waiting requests and a few threads besides."""
    return start_server("--workers", "1", "--threads", "56", PROXMOXWP_MAX_WAITERS=str(WAITERS))


def health(base: str) -> dict:
    answer = requests.get(base + "/health", timeout=5)  # a server whose threads all wait does not answer in time
    assert answer.status_code == 200
    return answer.json()


def test_health_answers_while_the_waiters_are_blocked_and_one_more_is_refused(roomy_server, worker, control_dir):
    base = roomy_server
    (control_dir / "block-site_create").touch()
    created = requests.post(base + "/create-site", json=SITE, headers=HEADERS, timeout=10)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    wait_until(lambda: job_state(HttpApi(base, TOKEN), job_id)["state"] == "running", what="the job to be held")

    def waiter():  # Paymenter's retry of the same order, waiting for the held creation
        return requests.post(base + "/create-site", json=dict(SITE, wait=60), headers=HEADERS, timeout=90)

    with ThreadPoolExecutor(max_workers=WAITERS) as pool:
        waiting = [pool.submit(waiter) for _ in range(WAITERS)]
        wait_until(lambda: health(base)["waiters"] == WAITERS, 30, what=f"{WAITERS} requests waiting")
        now = health(base)
        assert (now["status"], now["waiters"], now["max_waiters"]) == ("ok", WAITERS, WAITERS)

        over = requests.post(
            base + "/create-site", json=dict(SITE, service_id=601, wait=60), headers=HEADERS, timeout=10
        )
        assert over.status_code == 503, over.text
        assert over.json()["code"] == "too_many_waiters"
        assert int(over.headers["Retry-After"]) > 0
        unknown = requests.get(base + "/status", params={"service_id": 601}, headers=HEADERS, timeout=10)
        assert unknown.json()["code"] == "unknown_service"  # refused before anything was done
        assert not any(future.done() for future in waiting)

        (control_dir / "release-site_create").touch()
        answers = [future.result() for future in waiting]
    assert {answer.status_code for answer in answers} == {200}
    assert {(answer.json()["job"]["id"], answer.json()["job"]["state"]) for answer in answers} == {
        (job_id, "succeeded")
    }
    assert health(base)["waiters"] == 0


def test_a_waiter_beyond_the_bound_is_refused_and_nothing_is_done(runtime):
    runtime.settings.max_waiters = 0
    api = Api(create_app(runtime.settings).test_client())
    refused = api.post("/create-site", dict(SITE, wait=5))
    assert refused.status_code == 503
    body = refused.get_json()
    assert (body["success"], body["code"]) == (False, "too_many_waiters")
    assert "nothing was done" in body["error"]
    assert refused.headers["Retry-After"].isdigit()
    assert api.get("/status", service_id=600).get_json()["code"] == "unknown_service"
    assert api.post("/create-site", SITE).status_code == 202  # the same request without wait is served


def test_by_default_part_of_the_threads_may_wait(api):
    limit = api.get("/health", token=None).get_json()["max_waiters"]
    assert 0 < limit < DEFAULT_THREADS


def test_a_bound_that_takes_every_thread_stops_serve(runtime):
    result = CliRunner().invoke(main, ["serve", "--threads", "4"], env={"PROXMOXWP_MAX_WAITERS": "4"})
    assert result.exit_code == 2
    assert "PROXMOXWP_MAX_WAITERS" in result.output and "--threads" in result.output

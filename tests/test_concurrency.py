"""Requests for one service fired in parallel at a real gunicorn server are serialised."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import TOKEN, HttpApi, wait_job

pytestmark = pytest.mark.db

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
CREATE = {"email": "owner@example.com", "public_ip": "203.0.113.10"}


def fire(server: str, path: str, bodies: list[dict]) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(lambda body: requests.post(server + path, json=body, headers=HEADERS, timeout=60), bodies))


def test_parallel_create_site_makes_one_service_and_one_job(server):
    answers = fire(server, "/create-site", [{"service_id": 500, "plan": "basic", **CREATE}] * 12)
    assert {answer.status_code for answer in answers} == {202}
    bodies = [answer.json() for answer in answers]
    assert len({body["job_id"] for body in bodies}) == 1
    assert len({body["admin_password"] for body in bodies}) == 1
    jobs = requests.get(server + "/jobs", params={"service_id": 500}, headers=HEADERS, timeout=10).json()["jobs"]
    assert len(jobs) == 1


def _active_site(server: str, service_id: int, plan: str) -> None:
    answer = requests.post(
        server + "/create-site", json={"service_id": service_id, "plan": plan, **CREATE}, headers=HEADERS, timeout=10
    )
    assert answer.status_code == 202
    assert wait_job(HttpApi(server, TOKEN), answer.json()["job_id"])["state"] == "succeeded"


def test_parallel_backups_respect_the_quota_and_number_each_once(server, worker):
    _active_site(server, 501, "premium")  # 10 backups
    answers = fire(server, "/action/mkbak", [{"service_id": 501}] * 14)
    accepted = [answer.json() for answer in answers if answer.status_code == 202]
    refused = [answer.json() for answer in answers if answer.status_code == 422]
    assert len(accepted) == 10 and len(refused) == 4
    assert {body["code"] for body in refused} == {"backup_quota"}
    numbers = sorted(int(body["bak"].rsplit("-", 1)[1]) for body in accepted)
    assert numbers == list(range(1, 11))


def test_parallel_toggles_alternate(server, worker):
    _active_site(server, 502, "basic")
    answers = fire(server, "/action/toggle", [{"service_id": 502}] * 6)
    bodies = sorted((answer.json() for answer in answers), key=lambda body: body["job_id"])
    assert [body["proxy_enabled"] for body in bodies] == [False, True] * 3


def test_one_domain_goes_to_one_site_when_two_ask_at_once(server, worker):
    _active_site(server, 503, "basic")
    _active_site(server, 504, "basic")
    bodies = [{"service_id": 503, "domain": "shop.example.com"}, {"service_id": 504, "domain": "shop.example.com"}]
    answers = fire(server, "/action/setdomain", bodies * 3)
    codes = sorted(answer.status_code for answer in answers)
    winners = {answer.json()["service_id"] for answer in answers if answer.status_code in (200, 202)}
    assert len(winners) == 1
    assert codes.count(409) == 3
    assert {answer.json()["code"] for answer in answers if answer.status_code == 409} == {"domain_taken"}

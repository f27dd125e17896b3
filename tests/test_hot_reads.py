"""The machinery of the hot reads (/status, getbak, getdomain): statements run on the driver's cursor
(api/prepared.py), the gate that makes them take turns in a server process on SQLite (api/read_gate.py), and the
answers SQLite's server processes keep until the database changes (api/read_answers.py).

What the endpoints answer is tests/test_api_contract.py; here, that a prepared statement gives exactly what
SQLAlchemy gives for it, on SQLite and (pass 2) on PostgreSQL, and that its failures are SQLAlchemy's.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_until
from sqlalchemy import Column, Integer, MetaData, Table, func, select
from sqlalchemy.exc import DBAPIError

from api import reads
from api.models import Backup, Certificate, Domain, Drift, Job, JobState, Service, ServiceState
from api.prepared import Prepared
from api.read_answers import Answers
from api.read_gate import HOT_READS, ReadGate, Turns

pytestmark = pytest.mark.db

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@pytest.fixture
def site(runtime) -> int:
    """A site with a finished job and a queued one, two backups, two custom domains (one with a certificate), its
    subdomain's certificate and a drift: every column type the hot reads return, and every join."""
    with runtime.db.session(write=True) as session:
        service = Service(
            service_id=41, email="owner@example.com", plan="premium", public_ip="203.0.113.10",
            subdomain="wp41.sites.example.net", admin_user="admin41", state=ServiceState.ACTIVE, vmid=100041,
            node="pve-test-1", ip="10.77.0.41", proxy_enabled=True, created_at=MOMENT, updated_at=MOMENT,
        )  # fmt: skip
        session.add(service)
        session.flush()
        done = Job(
            service_id=41, kind="create", params={"service_id": 41, "plan": "premium", "nested": [1, "two"]},
            state=JobState.SUCCEEDED, attempts=1, max_attempts=2, created_at=MOMENT, started_at=MOMENT,
            finished_at=MOMENT + timedelta(seconds=38), rc=0, stats={"vmid": 100041}, progress_done=9,
            progress_total=9,
        )  # fmt: skip
        queued = Job(
            service_id=41, kind="power", params={"service_id": 41, "power_action": "stop"}, state=JobState.QUEUED,
            heading_to=ServiceState.STOPPED, max_attempts=2, created_at=MOMENT + timedelta(hours=1),
        )  # fmt: skip
        session.add_all([done, queued])
        session.flush()
        service.last_job_id = done.id
        for number, name in enumerate(("b.example.com", "a.example.com"), start=1):
            session.add(Backup(service_id=41, name=f"BAK0403-{number}", state="present", created_at=MOMENT))
            session.add(Domain(service_id=41, domain=name, state="active", created_at=MOMENT))
        session.add(Certificate(service_id=41, name="wp41.sites.example.net", state="active", checked_at=MOMENT))
        session.add(
            Certificate(
                service_id=41, name="b.example.com", state="error", message="no", attempts=2, checked_at=MOMENT,
                retry_at=MOMENT + timedelta(minutes=5),
            )
        )  # fmt: skip
        session.add(Drift(service_id=41, key="container", what="the container", expected="running", found="stopped"))
        session.add(Drift(service_id=41, key="memory", what="the memory", expected="2048", found="1024"))
    return 41


@pytest.mark.parametrize(
    "statement",
    [reads.SERVICE, reads.DRIFT, *reads.LISTINGS.values()],
    ids=["status", "drift", *reads.LISTINGS],
)
def test_a_prepared_statement_gives_what_sqlalchemy_gives(runtime, site, statement):
    with runtime.db.engine.connect() as connection:
        expected = [dict(row) for row in connection.execute(statement, {"service_id": site}).mappings()]
    with runtime.db.rows() as reader:
        prepared = Prepared(statement)
        found = prepared.rows(reader, service_id=site)
        again = prepared.rows(reader, service_id=site)  # compiled and typed once, then reused
        none = prepared.rows(reader, service_id=999)
    assert found == expected and again == expected
    assert len(found) >= 2 and none == []
    assert [{key: type(value) for key, value in row.items()} for row in found] == [
        {key: type(value) for key, value in row.items()} for row in expected
    ]


def test_the_status_statement_reads_every_part_in_one_go(runtime, site):
    with runtime.db.rows() as reader:
        found = reads.status(reader, site)
    assert found.service.subdomain == "wp41.sites.example.net" and found.service.proxy_enabled is True
    assert found.service.heading_to == ServiceState.STOPPED and found.service.backups == 2
    assert found.last_job.kind == "create" and found.last_job.params["nested"] == [1, "two"]
    assert isinstance(found.last_job.finished_at, datetime)
    assert found.domains == ["b.example.com", "a.example.com"]  # in the order they were attached
    assert sorted(found.certificates) == ["b.example.com", "wp41.sites.example.net"]
    assert found.certificates["b.example.com"].attempts == 2 and found.certificates["b.example.com"].message == "no"
    assert [(drift.key, drift.found) for drift in found.drift] == [("container", "stopped"), ("memory", "1024")]


def test_wrong_parameters_are_refused_before_anything_runs(runtime):
    prepared = Prepared(reads.DRIFT)
    with runtime.db.rows() as reader:
        with pytest.raises(TypeError, match=r"takes the parameters \['service_id'\], not \[\]"):
            prepared.rows(reader)
        with pytest.raises(TypeError, match=r"not \['service', 'service_id'\]"):
            prepared.rows(reader, service_id=1, service=2)


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(runtime):
    missing = Table("no_such_table", MetaData(), Column("id", Integer), Column("service_id", Integer))
    statement = select(missing.c.id).where(missing.c.service_id == reads.SERVICE_ID)
    with runtime.db.engine.connect() as connection, pytest.raises(DBAPIError) as by_sqlalchemy:
        connection.execute(statement, {"service_id": 1})
    with runtime.db.rows() as reader:
        with pytest.raises(DBAPIError) as prepared:
            Prepared(statement).rows(reader, service_id=1)
        # the connection is still good for the next read
        assert Prepared(select(func.count(Service.service_id).label("services"))).rows(reader) == [{"services": 0}]
    assert type(prepared.value) is type(by_sqlalchemy.value)  # an OperationalError is the API's 503
    assert type(prepared.value.orig) is type(by_sqlalchemy.value.orig)


def test_a_statement_with_two_columns_of_one_name_or_one_without_is_refused():
    with pytest.raises(ValueError, match="distinct key"):
        Prepared(select(Service.service_id, Job.service_id))
    with pytest.raises(ValueError, match="distinct key"):
        Prepared(select(func.count(Service.service_id)))


def test_the_hot_reads_take_turns_on_sqlite_and_every_other_request_runs_at_once(app, runtime):
    assert isinstance(app.wsgi_app, ReadGate) is runtime.db.is_sqlite
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods}
    assert {(path, "GET") for path in HOT_READS} <= routes  # a renamed read would leave the gate silently

    meeting = threading.Barrier(2, timeout=1)

    def inner(environ, start_response):
        meeting.wait()  # returns only when the other request is inside at the same time
        start_response("200 OK", [])
        return [b"met"]

    gate = ReadGate(inner)

    def both(path: str) -> list[object]:
        meeting.reset()
        outcomes: list[object] = []

        def call() -> None:
            try:
                outcomes.append(gate({"REQUEST_METHOD": "GET", "PATH_INFO": path}, lambda *_: None))
            except threading.BrokenBarrierError as exc:
                outcomes.append(exc)

        callers = [threading.Thread(target=call) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=30)
        return outcomes

    assert both("/health") == [[b"met"], [b"met"]]
    # the two hot reads never meet: the first waits out the barrier alone, then the second does
    assert [type(outcome) for outcome in both("/status")] == [threading.BrokenBarrierError] * 2


def test_turns_are_taken_in_the_order_they_were_asked_for():
    turns, order = Turns(), []

    def take(name: str) -> None:
        with turns:
            order.append(name)

    with turns:
        callers = []
        for number, name in enumerate(("first", "second", "third"), start=1):
            caller = threading.Thread(target=take, args=(name,))
            caller.start()
            callers.append(caller)
            wait_until(lambda number=number: turns.waiting == number, 30, what=f"{name} waiting for its turn")
    # the turn was handed to `first` on leaving: coming back at once, this thread queues behind the others
    take("again")
    for caller in callers:
        caller.join(timeout=30)
    assert order == ["first", "second", "third", "again"]
    assert turns.waiting == 0


def statements_run(app) -> list[str]:
    """The statements the app's hot-read connection runs from now on (SQLite's trace of it)."""
    database = app.extensions["proxmoxwp"].runtime.db
    run: list[str] = []
    with database.rows() as reader:
        reader.connection.dbapi_connection.set_trace_callback(run.append)
    return run


@pytest.mark.parametrize(("path", "key"), [("/status", "state"), ("/action/getbak", "backups")])
def test_an_answer_is_kept_until_anything_is_committed_and_then_read_anew(app, api, runtime, site, path, key):
    first = api.get(path, service_id=site)
    assert first.status_code == 200
    run = statements_run(app) if runtime.db.is_sqlite else None
    assert api.get(path, service_id=site).get_json() == first.get_json()
    if run is not None:  # SQLite keeps answers: only its count of commits was read
        assert run and all("data_version" in statement for statement in run), run

    # a change another connection commits (the worker's, another server process's) is in the next answer
    with runtime.db.session(write=True) as session:
        session.get(Service, site).state = ServiceState.STOPPED
        session.add(Backup(service_id=site, name="BAK0403-3", state="present", created_at=MOMENT))
    changed = api.get(path, service_id=site).get_json()
    assert changed[key] != first.get_json()[key]
    if path == "/status":
        assert changed["state"] == "stopped"
    else:
        assert [backup["name"] for backup in changed["backups"]][-1] == "BAK0403-3"
    # a commit that changes nothing the answer shows reads it anew all the same, and answers the same
    with runtime.db.session(write=True) as session:
        session.add(Service(service_id=43, email="o@example.com", plan="basic", public_ip="203.0.113.10",
                            subdomain="wp43.example.net", admin_user="admin43", state=ServiceState.ACTIVE))  # fmt: skip
    assert api.get(path, service_id=site).get_json() == changed


def test_an_unknown_site_is_not_kept_as_unknown(api, runtime):
    assert api.get("/status", service_id=42).status_code == 404
    with runtime.db.session(write=True) as session:
        session.add(Service(service_id=42, email="o@example.com", plan="basic", public_ip="203.0.113.10",
                            subdomain="wp42.example.net", admin_user="admin42", state=ServiceState.ACTIVE))  # fmt: skip
    assert api.get("/status", service_id=42).status_code == 200


def test_the_oldest_answer_is_forgotten_first_beyond_the_limit():
    answers = Answers(limit=2)
    made: list[str] = []

    def make(key: str):
        return lambda: made.append(key) or key.upper()

    assert [answers.get(key, make(key)) for key in ("a", "b", "a", "c", "b", "a")] == ["A", "B", "A", "C", "B", "A"]
    assert made == ["a", "b", "c", "a"]  # "c" pushed "a" out, the oldest; "b" was still there

"""Locks shared by the workers: the lease in the database, the broker a run's modules ask, the modules' client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT, TESTS, wait_until
from sites import load_module_util

from api.jobs import locks
from api.jobs.lock_broker import SOCKET_VARIABLE, LockBroker
from api.jobs.runner import PlaybookRun
from api.models import Lock
from api.waiting import holds_within

pytestmark = pytest.mark.db

client = load_module_util("proxmoxwp_lock")
NAME = "npm-certbot:https://npm.example.test:81/api"


def lease(runtime, name: str = NAME) -> Lock | None:
    with runtime.db.session() as session:
        return session.get(Lock, name)


def expiry(row: Lock) -> datetime:
    """expires_at as an aware datetime (SQLite gives it back without its zone)."""
    return row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)


@pytest.fixture
def broker(runtime, tmp_path, monkeypatch):
    with LockBroker(runtime.db, tmp_path, ttl=60, poll_interval=0.05) as serving:
        monkeypatch.setenv(SOCKET_VARIABLE, str(serving.path))
        yield serving


def test_two_holders_cannot_hold_one_name(runtime):
    assert locks.try_acquire(runtime.db, NAME, "worker-a", 60)
    assert not locks.try_acquire(runtime.db, NAME, "worker-b", 60)
    assert locks.try_acquire(runtime.db, NAME, "worker-a", 60)  # its own lock: taken again, not refused
    assert locks.try_acquire(runtime.db, "another name", "worker-b", 60)
    assert lease(runtime).holder == "worker-a"


def test_an_expired_lease_is_taken_over(runtime):
    assert locks.try_acquire(runtime.db, NAME, "killed-worker", 0.3)
    wait_until(lambda: locks.try_acquire(runtime.db, NAME, "worker-b", 60), 10, 0.05, "the lease to expire")
    assert lease(runtime).holder == "worker-b"
    assert not locks.renew(runtime.db, NAME, "killed-worker", 60)  # the old holder learns it lost the lock
    assert not locks.release(runtime.db, NAME, "killed-worker")
    assert lease(runtime).holder == "worker-b"


def test_only_the_holder_releases(runtime):
    assert locks.try_acquire(runtime.db, NAME, "worker-a", 60)
    assert not locks.release(runtime.db, NAME, "worker-b")
    assert lease(runtime).holder == "worker-a"
    assert locks.release(runtime.db, NAME, "worker-a")
    assert lease(runtime) is None
    assert locks.try_acquire(runtime.db, NAME, "worker-b", 60)


def test_a_second_client_waits_until_the_first_closes(runtime, broker):
    order: list[str] = []
    first_in, first_may_leave, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with client.held(NAME, 10) as held:
            assert held is True
            order.append("first in")
            first_in.set()
            first_may_leave.wait(30)
            order.append("first out")

    def second() -> None:
        with client.held(NAME, 30):
            order.append("second in")
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_in.wait(30)
    threads[1].start()
    wait_until(lambda: len(broker._connections) == 2, 10, 0.05, "the second client to ask the broker")
    assert not holds_within(second_in.is_set, 1.0, interval=0.05)  # the broker keeps it waiting
    first_may_leave.set()
    wait_until(second_in.is_set, 10, 0.05, "the second client to get the lock")
    for thread in threads:
        thread.join(30)
    assert order == ["first in", "first out", "second in"]
    wait_until(lambda: lease(runtime) is None, 10, 0.05, "the second client's release")


def test_a_client_is_told_when_the_lock_stays_taken(runtime, broker):
    assert locks.try_acquire(runtime.db, NAME, "another-worker", 60)
    with (
        pytest.raises(client.LockTimeout, match=r"not held within 0\.3s: another holder kept it"),
        client.held(NAME, 0.3),
    ):
        pytest.fail("the block ran without the lock")
    assert lease(runtime).holder == "another-worker"


def test_a_client_that_dies_frees_the_lock(runtime, broker):
    # A module killed while it holds the lock (a cancelled job): the kernel closes its socket, nothing else.
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'plugins' / 'module_utils')!r})\n"
        "from proxmoxwp_lock import held\n"
        f"with held({NAME!r}, 10):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert lease(runtime) is not None
        holder.kill()
        holder.wait(30)
    finally:
        holder.kill()
    # well within the 60 s lease: freed by the broker, not by expiry
    with client.held(NAME, 10) as held:
        assert held is True


def test_the_lease_is_renewed_while_held(runtime, tmp_path, monkeypatch):
    ttl = 0.6
    with LockBroker(runtime.db, tmp_path, ttl=ttl, poll_interval=0.05) as short:
        monkeypatch.setenv(SOCKET_VARIABLE, str(short.path))
        with client.held(NAME, 5):
            # renewed at a time when the first lease would have run out
            beyond_first = expiry(lease(runtime)) + timedelta(seconds=ttl)
            wait_until(lambda: expiry(lease(runtime)) > beyond_first, 10, 0.05, "a renewal after the first ttl")
            assert not locks.try_acquire(runtime.db, NAME, "another-worker", 60)
            with pytest.raises(client.LockTimeout), client.held(NAME, 0):
                pytest.fail("two holders at once")
    assert lease(runtime) is None


def test_without_a_broker_the_client_holds_nothing(monkeypatch):
    # ansible-playbook run by hand: the module goes on, relying on its own retrying
    monkeypatch.delenv(SOCKET_VARIABLE, raising=False)
    with client.held(NAME, 10) as held:
        assert held is False


def test_a_bad_request_is_answered_and_holds_nothing(runtime, broker):
    for request in (b"not json\n", json.dumps({"acquire": "x" * 201, "timeout": 1}).encode() + b"\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            client._connect(connection, str(broker.path))  # the client's way: the path may be too long
            connection.sendall(request)
            answer = json.loads(connection.makefile().readline())
        assert answer["held"] is False
        assert answer["reason"]
    with runtime.db.session() as session:
        assert session.query(Lock).count() == 0


def test_a_socket_deep_in_a_run_directory_is_served_there_and_goes_with_it(runtime, tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    with LockBroker(runtime.db, deep) as broker:
        assert len(os.fsencode(broker.path)) > 108  # longer than a UNIX socket address may be
        assert broker.path.parent.is_relative_to(deep) and broker.path.parent.stat().st_mode & 0o777 == 0o700
        monkeypatch.setenv(SOCKET_VARIABLE, str(broker.path))
        with client.held("deep", timeout=5) as holding:
            assert holding is True
    assert not broker.path.exists()


def test_a_run_serves_locks_to_its_playbook_and_releases_them_at_its_end(runtime, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    variables = {"started_file": str(started), "release_file": str(release), "names": [SOCKET_VARIABLE]}
    run = PlaybookRun(
        project_dir=ROOT,
        playbook=TESTS / "playbooks" / "report_env.yml",
        inventory=TESTS / "inventory",
        runs_dir=tmp_path / "runs",
        variables=variables,
        secrets={},
        timeout=120,
        ident="locks",
        locks_db=runtime.db,
    )
    thread = threading.Thread(target=run.run)
    thread.start()
    try:
        wait_until(started.exists, 60, what="the playbook to start")
        (command,) = (tmp_path / "runs").rglob("command")
        path = json.loads(command.read_text())["env"][SOCKET_VARIABLE]
        # a module that is still holding its lock when the run ends
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client._connect(connection, path)
        connection.sendall(json.dumps({"acquire": NAME, "timeout": 5}).encode() + b"\n")
        assert json.loads(connection.makefile().readline()) == {"held": True}
    finally:
        release.touch()
        thread.join(60)
    connection.close()
    assert run.result.status == "successful", run.result.message
    assert run.result.stats["environment"] == {SOCKET_VARIABLE: path}
    assert lease(runtime) is None
    assert not Path(path).exists()

"""Shared fixtures: an isolated configuration per test, the app, a real worker process, a real server.

The database and queue come from PROXMOXWP_TEST_DATABASE_URL / PROXMOXWP_TEST_QUEUE_URL when set (the test
script sets them to a PostgreSQL server and a Redis server it started); otherwise SQLite files in tmp. Under
pytest-xdist each worker has its own: a database `<name>_<worker>` beside the given one, and a Redis database
index of its own (tests/workers.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from api import create_app
from api.config import load_settings
from api.db import Database
from api.migrate import upgrade
from api.models import Base
from api.waiting import wait_for
from lab.ports import free_port
from tests.workers import remove_run_cache, worker_database_url, worker_queue_url

pytest_plugins = [
    "tests.skip_policy",
    "tests.timing",
    "tests.pve.plugin",
    "tests.lxc",
    "tests.powerdns",
    "tests.cloudflare.plugin",
    "tests.npm",
    "tests.published_dns",
    "tests.edge",
    "tests.shared_lab",
    "tests.wheels",
]

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "second-token-0123456789abcdef"
BIN = Path(sys.executable).parent


# The order tests are handed to pytest-xdist's workers in. First the shared lab: its start builds the rootfs and the
# golden image, the longest chain of the run. Then the playbooks against the fake cluster and the collection's
# ansible-test sanity (CPU) while those caches are built; then the other container tests (mostly waiting on I/O, and
# on those caches); then the short tests that fill the end evenly. Within a rank, tests that run real jobs or
# playbooks (the longest) go first.
RUN_ORDER = ("shared-lab", "cluster", "collection", "containers", "db")
LONG_RUNNING = {"pve", "worker", "start_worker", "server", "lab_containers"}


def run_order(item: pytest.Item) -> tuple[int, int]:
    fixtures = set(getattr(item, "fixturenames", ()))
    if "shared_lab" in fixtures:
        return 0, 1 if item.get_closest_marker("lab_down") else 0
    long_running = 0 if fixtures & LONG_RUNNING else 1
    rank = next((rank for rank, marker in enumerate(RUN_ORDER) if item.get_closest_marker(marker)), len(RUN_ORDER))
    return rank, long_running


# Fixtures that several tests share and that are costly to make (a lab, a booted container): every test that takes
# one is put in its group, so that pytest-xdist (--dist loadgroup) runs them on one worker and it is made once.
SHARED_FIXTURES = {
    "shared_lab": "shared-lab",  # tests/shared_lab.py
    "web": "lab-containers-web",  # test_lab_containers.py
    "golden_site": "wordpress-golden-site",  # test_wordpress_role.py
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, group in SHARED_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=run_order)  # stable: within a rank, the files' order


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's shared caches (tests/lxc.py) go when the whole run ends: with pytest-xdist, in the controller."""
    if not hasattr(session.config, "workerinput"):
        remove_run_cache(session.config._tmp_path_factory.getbasetemp())


def wait_until(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.1, what: str = ""):
    """Poll `condition` until it returns something truthy; fail the test with `what` after `timeout`."""
    return wait_for(
        condition, timeout=timeout, what=what or str(condition), interval=interval, error=pytest.fail.Exception
    )


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    given = os.environ.get("PROXMOXWP_TEST_DATABASE_URL")
    if not given:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'proxmoxwp.sqlite3'}"
        return
    url = worker_database_url(given)
    database = Database(load_settings(database_url=url, data_dir="/tmp").database_url)
    Base.metadata.drop_all(database.engine)
    with database.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    database.dispose()
    yield url


@pytest.fixture
def control_dir(tmp_path) -> Path:
    path = tmp_path / "control"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path, control_dir, database_url, dns_resolvers) -> dict[str, str]:
    """The PROXMOXWP_* environment of one test: its own data dir, inventory copy, database and queue; custom
    domains are checked against the session's PowerDNS (tests/published_dns.py), never the system's resolver."""
    inventory = tmp_path / "inventory"
    shutil.copytree(TESTS / "inventory", inventory)
    (inventory / "group_vars" / "all" / "control.yml").write_text(f"test_control_dir: {control_dir}\n")
    given_queue = os.environ.get("PROXMOXWP_TEST_QUEUE_URL")
    queue_url = worker_queue_url(given_queue) if given_queue else f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    values = {
        "PROXMOXWP_DATA_DIR": str(tmp_path / "data"),
        "PROXMOXWP_API_TOKENS": f"{TOKEN},{OTHER_TOKEN}",
        "PROXMOXWP_DATABASE_URL": database_url,
        "PROXMOXWP_QUEUE_URL": queue_url,
        "PROXMOXWP_INVENTORY": str(inventory),
        "PROXMOXWP_PLAYBOOK_DIR": str(TESTS / "playbooks" / "ops"),
        "PROXMOXWP_HEARTBEAT_SECONDS": "0.5",
        "PROXMOXWP_STALE_AFTER_SECONDS": "5",
        "PROXMOXWP_REAPER_SECONDS": "0.5",
        "PROXMOXWP_WORKERS": "4",
        "PROXMOXWP_DNS_RESOLVERS": dns_resolvers,
        "PROXMOXWP_DNS_TIMEOUT": "2",
    }
    return values


@pytest.fixture
def settings(env, monkeypatch):
    for key in [k for k in os.environ if k.startswith("PROXMOXWP_") and not k.startswith("PROXMOXWP_TEST_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture
def runtime(settings):
    from api.runtime import Runtime

    runtime = Runtime(settings)
    upgrade(runtime.db)
    _reset_database(runtime.db)
    runtime.queue.flush()
    yield runtime
    runtime.queue.flush()
    runtime.db.dispose()


def _reset_database(database: Database) -> None:
    """Empty every table: the database is shared by the whole session."""
    if database.is_sqlite:
        with database.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        return
    with database.engine.begin() as connection:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        existing = set(connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'")).scalars())
        present = [t for t in tables if t in existing]
        if present:
            connection.execute(text(f"TRUNCATE {', '.join(present)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def app(runtime):
    return create_app(runtime.settings)


class Api:
    """A Flask test client that speaks like Paymenter: JSON bodies, query strings, a bearer token."""

    def __init__(self, client, token: str | None = TOKEN) -> None:
        self.client, self.token = client, token

    def _headers(self, token):
        token = self.token if token == "default" else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, path: str, body: object = None, token: str | None = "default", **kwargs):
        return self.client.post(path, json=body, headers=self._headers(token), **kwargs)

    def get(self, path: str, token: str | None = "default", **params):
        return self.client.get(path, query_string=params, headers=self._headers(token))


class HttpApi:
    """The same interface over real HTTP, for tests against a running server."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params):
        response = requests.get(self.base + path, params=params, headers=self.headers, timeout=30)
        response.get_json = response.json
        return response


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of a killed process group
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def process_env(env) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOXWP_")}
    return {**base, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@contextlib.contextmanager
def _processes(process_env: dict[str, str], tmp_path: Path, name: str) -> Iterator[Callable[..., Process]]:
    """Start `proxmoxwp` processes, each with its log `<name>-N.log`; all are stopped (their whole process group)
    when the block ends."""
    started: list[Process] = []

    def launch(*args: str, **extra_env: str) -> Process:
        proc = Process(
            [str(BIN / "proxmoxwp"), *args], {**process_env, **extra_env}, tmp_path / f"{name}-{len(started)}.log"
        )
        started.append(proc)
        return proc

    try:
        yield launch
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def start_worker(runtime, process_env, tmp_path) -> Iterator[Callable[..., Process]]:
    """Start `proxmoxwp worker` processes; all are stopped at the end."""
    with _processes(process_env, tmp_path, "worker") as launch:
        yield lambda concurrency=4, **extra_env: launch("worker", "--concurrency", str(concurrency), **extra_env)


@pytest.fixture
def worker(start_worker) -> Process:
    return start_worker()


@pytest.fixture
def start_server(runtime, process_env, tmp_path) -> Iterator[Callable[..., str]]:
    """Start `proxmoxwp serve` on a free loopback port (options after --bind, settings as extra environment) and
    give its base URL once /health answers; every server started is stopped at the end."""
    with _processes(process_env, tmp_path, "server") as launch:

        def start(*options: str, **extra_env: str) -> str:
            port = free_port()
            proc = launch("serve", "--bind", f"127.0.0.1:{port}", *options, **extra_env)
            base = f"http://127.0.0.1:{port}"

            def up():
                try:
                    return requests.get(base + "/health", timeout=1).ok
                except requests.RequestException:
                    return proc.proc.poll() is not None and pytest.fail(proc.output())

            wait_until(up, 30, what="the API server")
            return base

        yield start


@pytest.fixture
def server(start_server) -> str:
    """`proxmoxwp serve` with two worker processes; its base URL."""
    return start_server("--workers", "2")


def runs(control_dir: Path) -> list[dict]:
    """What the operation double recorded, in order."""
    path = control_dir / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_state(api: Api, job_id: int) -> dict:
    return api.get(f"/jobs/{job_id}").get_json()["job"]


def wait_job(api: Api, job_id: int, timeout: float = 90) -> dict:
    def finished():
        job = job_state(api, job_id)
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(finished, timeout, 0.1, f"job {job_id} to finish")

"""The files only the service may read: the SQLite databases (with their -wal and -shm), huey's queue database and
the key file are 0600 in DATA_DIR/private (0700), and a job's sealed secrets are gone from them once it ends.

SQLite only (the default install): PostgreSQL keeps old row versions until VACUUM (docs/jobs.md), so these are
not `db` tests.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import job_state, wait_job, wait_until
from flask.testing import FlaskClient
from sqlalchemy import select, text

from api import create_app
from api.config import ConfigError, load_settings
from api.db import SQLITE_BUSY_MS, Database
from api.jobs.engine import claim, finish
from api.migrate import upgrade
from api.models import Job, JobState
from api.runtime import Runtime

SITE = {"service_id": 17, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
DEFAULT_FILES = {"proxmoxwp.sqlite3", "queue.sqlite3", "secret.key"}


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The default places of the databases: the data dir's private folder."""
    return {key: value for key, value in env.items() if key not in ("PROXMOXWP_DATABASE_URL", "PROXMOXWP_QUEUE_URL")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(folder: Path, expected: set[str]) -> None:
    files = {path.name: mode(path) for path in folder.iterdir()}
    assert expected <= set(files), files
    assert files == dict.fromkeys(files, 0o600), files
    assert mode(folder) == 0o700


def sealed_secrets(runtime, job_id: int) -> bytes:
    with runtime.db.session() as session:
        return session.scalar(select(Job.sealed_secrets).where(Job.id == job_id))


def holding(folder: Path, sealed: list[bytes], clear: list[str]) -> str:
    """The files under `folder` that hold a piece of a sealed token (past its version and time) or a password."""
    patterns = [*clear]
    for token in sealed:
        text = token.decode()
        patterns += [text[start : start + 24] for start in range(12, len(text) - 24, 24)]
    # grep, another process: closing a descriptor of a SQLite file this process has open would drop its locks
    found = subprocess.run(
        ["grep", "-rlaF", *(arg for pattern in patterns for arg in ("-e", pattern)), "--", str(folder)],
        capture_output=True,
        text=True,
    )
    assert found.returncode in (0, 1), found.stderr
    return found.stdout


@contextmanager
def running_app(settings, migrate: bool = False) -> Iterator[FlaskClient]:
    """A test client of the API on `settings`; its database and queue are closed afterwards, as at a stop."""
    app = create_app(settings, check=not migrate)
    runtime = app.extensions["proxmoxwp"].runtime
    try:
        if migrate:
            upgrade(runtime.db)
        yield app.test_client()
    finally:
        runtime.db.dispose()
        runtime.queue.huey.storage.close()


def test_a_site_creation_leaves_private_files_and_its_secrets_nowhere(api, runtime, start_worker, control_dir):
    private = runtime.settings.data_dir / "private"
    assert runtime.settings.database_url == f"sqlite:///{private / 'proxmoxwp.sqlite3'}"
    (control_dir / "block-site_create").touch()
    start_worker()
    created = api.post("/create-site", SITE).get_json()
    job_id, password = created["job_id"], created["admin_password"]
    wait_until(lambda: job_state(api, job_id)["state"] == "running", 60, what="the create job to run")
    sealed = sealed_secrets(runtime, job_id)
    assert sealed and password

    # while the API and the worker have them open, with their write-ahead logs
    assert_private(private, DEFAULT_FILES | {"proxmoxwp.sqlite3-wal", "proxmoxwp.sqlite3-shm", "queue.sqlite3-wal"})

    (control_dir / "release-site_create").touch()
    assert wait_job(api, job_id)["state"] == "succeeded"
    assert sealed_secrets(runtime, job_id) is None
    # the worker empties the write-ahead log right after it records the job's end
    wait_until(
        lambda: holding(runtime.settings.data_dir, [sealed], [password]) == "",
        10,
        what="the sealed password to be gone from the database files",
    )
    assert_private(private, DEFAULT_FILES)


def test_a_reader_holds_the_erasure_up_without_failing_the_job_and_the_next_job_erases(api, runtime):
    private = runtime.settings.private_dir
    first, second = (api.post("/create-site", dict(SITE, service_id=i)).get_json()["job_id"] for i in (17, 18))
    sealed = [sealed_secrets(runtime, job_id) for job_id in (first, second)]
    assert all(claim(runtime, job_id) for job_id in (first, second))

    reader = sqlite3.connect(private / "proxmoxwp.sqlite3")
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM jobs").fetchone()  # a read transaction the checkpoint has to wait for
        started = time.monotonic()
        finish(runtime, first, JobState.SUCCEEDED)
        assert time.monotonic() - started < SQLITE_BUSY_MS / 1000 / 3, "the checkpoint waited for the reader"
        assert job_state(api, first)["state"] == "succeeded"
        assert api.get("/status", service_id=17).get_json()["state"] == "active"
        assert holding(private, sealed[:1], []), "the reader kept the earlier pages in the write-ahead log"
    finally:
        reader.close()

    # The checkpoint held up by the reader still copied what the reader saw into the database file: the second
    # job's sealed secrets are in it, not only in the log, when that job ends.
    finish(runtime, second, JobState.FAILED, message="no storage left")
    assert job_state(api, second)["state"] == "failed"
    assert holding(private, sealed, []) == ""


def test_an_older_install_is_moved_into_the_private_folder_and_keeps_its_jobs(settings):
    data = settings.data_dir
    headers = {"Authorization": f"Bearer {settings.api_tokens[0]}"}
    # an install from before the private folder: its databases and key in the data dir itself, 0644
    older = load_settings(
        database_url=f"sqlite:///{data / 'proxmoxwp.sqlite3'}", queue_url=f"sqlite:///{data / 'queue.sqlite3'}"
    )
    with running_app(older, migrate=True) as client:
        created = client.post("/create-site", json=SITE, headers=headers)
        assert created.status_code == 202, created.get_json()
    (data / "private" / "secret.key").rename(data / "secret.key")
    (data / "private").rmdir()
    for name in ("proxmoxwp.sqlite3-wal", "proxmoxwp.sqlite3-shm"):
        (data / name).touch()  # what a process that was killed leaves
    for path in data.iterdir():
        if path.is_file():
            path.chmod(0o644)

    with running_app(settings) as client:
        again = client.post("/create-site", json=SITE, headers=headers)
        # the same pending job, and its password opened with the key that sealed it
        assert again.status_code == 202, again.get_json()
        assert (again.get_json()["job_id"], again.get_json()["admin_password"]) == (
            created.get_json()["job_id"],
            created.get_json()["admin_password"],
        )
        assert not {path.name for path in data.iterdir()} & (DEFAULT_FILES | {"proxmoxwp.sqlite3-wal"})
        assert_private(data / "private", DEFAULT_FILES)


def test_an_older_database_beside_a_new_one_is_refused_and_nothing_moves(settings):
    older, newer = settings.data_dir / "proxmoxwp.sqlite3", settings.data_dir / "private" / "proxmoxwp.sqlite3"
    newer.parent.mkdir(parents=True)
    older.write_bytes(b"")
    newer.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"{older} and {newer} both exist"):
        Runtime(settings).check()
    assert older.exists() and newer.exists()


def test_files_an_operator_put_in_place_are_made_private_at_start(settings, tmp_path):
    private = settings.private_dir
    private.mkdir(parents=True)
    private.chmod(0o755)
    (private / "secret.key").write_text("a key restored from a backup\n")
    (private / "secret.key").chmod(0o644)
    folder = tmp_path / "shared"  # a database at a configured path, in a folder that is the operator's business
    folder.mkdir()
    folder.chmod(0o755)
    names = ("site.sqlite3", "site.sqlite3-wal", "site.sqlite3-shm")
    for name in names:
        (folder / name).touch()
        (folder / name).chmod(0o644)  # as an older version left them
    runtime = Runtime(load_settings(database_url=f"sqlite:///{folder / 'site.sqlite3'}"))
    try:
        upgrade(runtime.db)
        runtime.check()
        assert {path.name: mode(path) for path in folder.iterdir()} == dict.fromkeys(names, 0o600)
        assert mode(folder) == 0o755
        assert mode(private / "secret.key") == 0o600 and mode(private) == 0o700
    finally:
        runtime.db.dispose()


def test_a_new_database_is_private_from_its_first_write(tmp_path):
    path = tmp_path / "new" / "site.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        with database.session(write=True) as session:
            session.execute(text("CREATE TABLE t (x)"))
        # SQLite made the log and the index beside it with the mode of the file it found
        assert {p.name: mode(p) for p in path.parent.iterdir()} == dict.fromkeys(
            ("site.sqlite3", "site.sqlite3-wal", "site.sqlite3-shm"), 0o600
        )
        assert mode(path.parent) == 0o700
    finally:
        database.dispose()

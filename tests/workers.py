"""What each pytest-xdist worker has of its own when tests run in parallel: a PostgreSQL database, a Redis database
index, a subnet pool for its bridges; and the one directory the whole run shares (its caches). Without xdist
(PYTEST_XDIST_WORKER unset) everything is as given.

The test script starts one PostgreSQL and one Redis for the whole run; workers must not see each other's rows or
queue messages, since every test empties the tables and flushes the queue it uses.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.build_host.mounts import remove_tree

RUN_CACHE = "lab-cache"  # the run's Debian rootfs and golden image (tests/lxc.py)
REDIS_DATABASES = 64  # scripts/test.sh starts redis-server with this many


def worker_name() -> str | None:
    """`gw0`, `gw1`, ... under pytest-xdist; None in a plain run."""
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def worker_number() -> int:
    name = worker_name()
    found = re.fullmatch(r"gw(\d+)", name or "")
    return int(found.group(1)) if found else 0


def worker_database_url(url: str) -> str:
    """`url` with the database `<database>_<worker>` of this worker, created on the same server when missing."""
    worker = worker_name()
    if worker is None:
        return url
    given = make_url(url)
    name = f"{given.database}_{worker}"
    admin = create_engine(given.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if exists.scalar() is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


def worker_queue_url(url: str) -> str:
    """A Redis URL with this worker's own database index (the given index plus the worker's number)."""
    if worker_name() is None:
        return url
    parts = urlsplit(url)
    index = int(parts.path.strip("/") or 0) + worker_number()
    if index >= REDIS_DATABASES:
        raise RuntimeError(f"Redis has {REDIS_DATABASES} databases: too many xdist workers for {url}")
    return urlunsplit(parts._replace(path=f"/{index}"))


def worker_pool(pool: str) -> str:
    """A sixteenth of `pool` for this worker, so two workers never pick the same free subnet at the same moment."""
    network = ipaddress.IPv4Network(pool)
    parts = list(network.subnets(new_prefix=network.prefixlen + 4))
    return str(parts[worker_number() % len(parts)])


def run_directory(factory: pytest.TempPathFactory) -> Path:
    """The directory of the whole run: with pytest-xdist each worker's base directory is inside the controller's."""
    base = factory.getbasetemp()
    return base.parent if worker_name() else base


def remove_run_cache(run_dir: Path) -> None:
    remove_tree(run_dir / RUN_CACHE)

"""Engine and sessions for SQLite (the default) and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.prepared import Reader
from api.private_files import private_sqlite_file, sqlite_path
from api.read_answers import Answers

T = TypeVar("T")

SQLITE_BUSY_MS = 30_000
# How long the checkpoint that erases cleared secrets waits for readers (it holds the write lock meanwhile).
ERASE_BUSY_MS = 200
ERASE_AFTER_COMMIT = "proxmoxwp_erase_after_commit"

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path is not None:
            private_sqlite_file(path)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000})
        _sqlite_transactions(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_transactions(engine: Engine) -> None:
    """WAL for concurrent readers; writers take the lock at BEGIN so two writers never deadlock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # what a transaction deletes or overwrites is zeroed in the page, not left in its free space (sealed
        # secrets, Database.erase_freed)
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        immediate = connection.get_execution_options().get("proxmoxwp_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = url.startswith("sqlite:")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(proxmoxwp_write=True), expire_on_commit=False)
        # No BEGIN and ROLLBACK around PostgreSQL's hot reads (a round trip each). SQLite's connections all run in
        # autocommit mode, with BEGIN only where a transaction is wanted (_sqlite_transactions).
        self._reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader: Reader | None = None  # SQLite's, taken from the pool once and kept (`rows`)
        self._answers = Answers()  # what was read on it while nothing was committed (`kept`)
        self._reader_lock = threading.Lock()

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        factory = self._write if write else self._read
        with factory() as session, session.begin():
            yield session
        if session.info.pop(ERASE_AFTER_COMMIT, False):
            self.erase_freed()

    @contextmanager
    def rows(self) -> Iterator[Reader]:
        """A driver connection for the hot reads' prepared statements (api/reads.py), without a transaction: each
        statement reads a snapshot of its own. /status reads all it shows in one statement, except a site's drift,
        which at worst shows one a job added or removed in between.

        On SQLite the hot reads of a process share one connection of their own, one read at a time (they take turns
        anyway, api/read_gate.py): a checkout from the pool and its return cost more than the read itself. Its
        connection runs in autocommit mode, so between reads it holds no snapshot and no lock. The answers read on it
        are forgotten here when another connection has committed since (`kept`)."""
        if not self.is_sqlite:
            with self._reads.connect() as connection:
                yield Reader(connection.dialect, connection.connection)
            return
        with self._reader_lock:
            if self._reader is None or not self._reader.connection.is_valid:
                self._reader, self._answers = Reader(self.engine.dialect, self.engine.raw_connection()), Answers()
            self._answers.refresh(self._reader)
            yield self._reader

    def kept(self, key: Hashable, read: Callable[[Reader], T]) -> T:
        """`read(reader)` on the hot reads' connection (`rows`); on SQLite, what it gave for `key` before, as long as
        nothing has been committed since (api/read_answers.py)."""
        with self.rows() as reader:
            if not self.is_sqlite:
                return read(reader)
            return self._answers.get(key, lambda: read(reader))

    def write(self, work: Callable[[Session], T], attempts: int = 3) -> T:
        """Run `work` in a write transaction, again if a concurrent writer won a race on a unique key."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session(write=True) as session:
                    return work(session)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts or not _is_race(exc):
                    raise
        raise AssertionError("unreachable")

    def erase_freed(self) -> bool:
        """Make what committed transactions cleared unrecoverable from the database files; False if that has to
        wait for the next call (readers were busy).

        On SQLite, secure_delete (every connection) zeroes what a change frees in a page, but the write-ahead log
        still holds every earlier image of the pages it changed: a TRUNCATE checkpoint copies the newest images into
        the database and empties the log. It waits ERASE_BUSY_MS at most for readers, holding the write lock
        meanwhile; one it cannot finish is finished by the next, and fails nothing. (A key per job, deleted with
        its secrets, was the other way: it would have to live in the database too, for workers on other machines.)
        On PostgreSQL, old row versions stay in the table until VACUUM (docs/jobs.md)."""
        if not self.is_sqlite:
            return False
        try:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout={ERASE_BUSY_MS}")
                try:
                    busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
                    cursor.close()
            finally:
                connection.close()
        except (sqlite3.Error, SQLAlchemyError) as exc:
            log.warning("the write-ahead log was not emptied (%s); the next job's checkpoint empties it", exc)
            return False
        if busy:
            log.info("the write-ahead log is in use; the next job's checkpoint empties it")
        return not busy

    def dispose(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.connection.close()
                self._reader = None
        self.engine.dispose()


def erase_after_commit(session: Session) -> None:
    """Have what this transaction clears erased from the database files once it is committed."""
    session.info[ERASE_AFTER_COMMIT] = True


def _is_race(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return "could not serialize" in text or "deadlock" in text or "database is locked" in text

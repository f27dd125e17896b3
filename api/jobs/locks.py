"""Named locks shared by every worker, on every machine: a lease in the `locks` table.

A holder keeps a lock by renewing its lease before `expires_at`; a lease not renewed (its worker was killed, its
machine lost) is free once it expires, so nobody waits for a dead holder longer than one lease. Taking a lock is
one INSERT, or, when the row exists, one conditional UPDATE: two workers never both hold a name, on SQLite and on
PostgreSQL alike. The time is the worker's clock: the machines' clocks must agree to well within a lease.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.exc import IntegrityError

from api.db import Database
from api.models import Lock

NAME_LIMIT = 200  # the column's length


def _now() -> datetime:
    return datetime.now(UTC)


def try_acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take the lock `name` for `holder` for `ttl` seconds if it is free (or expired, or already its own)."""
    expires = _now() + timedelta(seconds=ttl)
    try:
        # Its own transaction: on PostgreSQL a failed INSERT spoils the transaction it is in.
        with db.session(write=True) as session:
            session.execute(insert(Lock).values(name=name, holder=holder, expires_at=expires))
        return True
    except IntegrityError:
        pass
    with db.session(write=True) as session:
        taken = session.execute(
            update(Lock)
            .where(Lock.name == name, or_(Lock.expires_at < _now(), Lock.holder == holder))
            .values(holder=holder, expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        return taken.rowcount == 1


def renew(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Extend `holder`'s lease by `ttl` seconds from now; False when it no longer holds the lock."""
    with db.session(write=True) as session:
        renewed = session.execute(
            update(Lock)
            .where(Lock.name == name, Lock.holder == holder)
            .values(expires_at=_now() + timedelta(seconds=ttl))
            .execution_options(synchronize_session=False)
        )
        return renewed.rowcount == 1


def release(db: Database, name: str, holder: str) -> bool:
    """Give the lock up; only its holder can (a holder whose lease was taken over releases nothing)."""
    with db.session(write=True) as session:
        released = session.execute(
            delete(Lock).where(Lock.name == name, Lock.holder == holder).execution_options(synchronize_session=False)
        )
        return released.rowcount == 1

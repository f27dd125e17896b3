"""The database: services, their domains and backups, jobs and job events, and the warm pool."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, int: Integer}


class ServiceState(enum.StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


class Service(Base):
    __tablename__ = "services"

    service_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(254))
    plan: Mapped[str] = mapped_column(String(32))
    public_ip: Mapped[str] = mapped_column(String(45))
    subdomain: Mapped[str] = mapped_column(String(253), unique=True)
    admin_user: Mapped[str] = mapped_column(String(60))
    state: Mapped[str] = mapped_column(String(16), default=ServiceState.PROVISIONING)
    # The state to return to when a job that does not change power state succeeds after a failure.
    settled_state: Mapped[str | None] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    vmid: Mapped[int | None]
    node: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    proxy_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The id of the one-click login key the site holds (api/login_links.py), or None when it holds none we know of.
    login_key_id: Mapped[str | None] = mapped_column(String(16))
    last_job_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]

    domains: Mapped[list[Domain]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="Domain.id"
    )
    backups: Mapped[list[Backup]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="Backup.id"
    )
    drift: Mapped[list[Drift]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="Drift.id"
    )
    certificates: Mapped[list[Certificate]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="Certificate.id"
    )


class Domain(Base):
    __tablename__ = "domains"
    # every /status and getdomain reads a site's domains in the order they were attached
    __table_args__ = (Index("ix_domains_service_id", "service_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("services.service_id", ondelete="CASCADE"))
    # A-label (punycode) form, lower case; one site at a time may hold a name.
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    service: Mapped[Service] = relationship(back_populates="domains")


class Backup(Base):
    __tablename__ = "backups"
    __table_args__ = (UniqueConstraint("service_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("services.service_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    service: Mapped[Service] = relationship(back_populates="backups")


class Drift(Base):
    """One way the cluster or the edge differs from the record, as the last reconcile found it and could not
    repair. `key` names what was checked (`container`, `proxy_host:<name>`, ...): while the same key is found
    the same way, `found_at` keeps the time it was first seen."""

    __tablename__ = "drift"
    __table_args__ = (UniqueConstraint("service_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("services.service_id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))
    what: Mapped[str] = mapped_column(Text)
    expected: Mapped[str] = mapped_column(Text)
    found: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)

    service: Mapped[Service] = relationship(back_populates="drift")


class Certificate(Base):
    """The Let's Encrypt certificate of one of the site's names (its subdomain or a custom domain), as the last job
    that requested or checked it found it: `state` active, error (with the reason the job found in `message`) or
    none. A certificate in error is tried again at `retry_at`, later after each failed `attempts` (backoff)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("service_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("services.service_id", ondelete="CASCADE"))
    # A-label form, lower case, as the proxy host's name
    name: Mapped[str] = mapped_column(String(253))
    state: Mapped[str] = mapped_column(String(16), default="none")
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    retry_at: Mapped[datetime | None]
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)

    service: Mapped[Service] = relationship(back_populates="certificates")


class Lock(Base):
    """A named lock shared by every worker, held by `holder` until `expires_at` (a lease its holder renews): the
    one certbot of an NPM instance, for example. An expired lease is free, so a killed holder cannot block others."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


class PoolMember(Base):
    """A container of the warm pool (docs/pool.md), as the workers' pool keeper made and last checked it. `ready`
    members wait on their node; create-site takes one with a conditional update (`claimed`, with the service), so
    no member goes to two sites; `removing` ones are being drained and are never given. A claimed member's row
    goes when its creation ends: from then on the container is the site's."""

    __tablename__ = "pool_members"
    __table_args__ = (Index("ix_pool_members_state_node", "state", "node"),)

    vmid: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    node: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    # the tag of the golden image it was made from (img-<digest>)
    image: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="ready")
    service_id: Mapped[int | None] = mapped_column(BigInteger)
    made_at: Mapped[datetime] = mapped_column(default=utcnow)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]


class PoolControl(Base):
    """Whether the pool keeper keeps the pool filled: `proxmoxwp pool drain` pauses it, `proxmoxwp pool fill`
    resumes it. One row (id 1); no row is the default, filling."""

    __tablename__ = "pool_control"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    # every /status reads a site's newest jobs (ix_jobs_service_newest), the worker the unfinished ones
    __table_args__ = (
        Index("ix_jobs_service_state", "service_id", "state"),
        Index("ix_jobs_service_newest", "service_id", "id"),
        Index("ix_jobs_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("services.service_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict] = mapped_column(default=dict)
    # Fernet token of the secrets the playbook needs; erased as soon as the job has used them.
    sealed_secrets: Mapped[bytes | None] = mapped_column(LargeBinary)
    heading_to: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=1)
    timeout_seconds: Mapped[int] = mapped_column(default=600)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    rc: Mapped[int | None]
    stats: Mapped[dict | None]
    failed_task: Mapped[str | None] = mapped_column(Text)
    failed_host: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(Text)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int | None]
    events_stored: Mapped[int] = mapped_column(default=0)

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobEvent.seq"
    )


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    attempt: Mapped[int] = mapped_column(default=1)
    event: Mapped[str] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="events")

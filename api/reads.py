"""`GET /status` as prebuilt statements of plain rows: the read Paymenter makes on every client-area page.

Through the ORM, a status cost six statements, each with the ORM's per-statement work (identity map, loaders, lazy
loads of the service's domains, certificates and drift): about six times the CPU of an empty Flask request
(bench/README.md). Here the statements are built once, at import, with bound parameters, so SQLAlchemy finds their
compiled form by a memoized cache key, and they run on a Core connection: rows, no objects. The answer is the same
(tests/test_api_contract.py); the presenters read rows as they read objects, by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, func, select

from api.models import UNFINISHED, Backup, Certificate, Domain, Drift, Job, Service

SERVICE_ID = bindparam("service_id", type_=BigInteger)
# Jobs whose newest says whether a cut-off creation's clean-up is the site's last word (presenters.leftovers_view).
LIFECYCLE_KINDS = ("create", "delete", "cleanup")


def _newest_job(*conditions) -> Any:
    return (
        select(Job.id)
        .where(Job.service_id == Service.service_id, *conditions)
        .order_by(Job.id.desc())
        .limit(1)
        .scalar_subquery()
    )


SERVICE = select(
    *Service.__table__.c,
    select(func.count(Backup.id)).where(Backup.service_id == Service.service_id).scalar_subquery().label("backups"),
    select(func.count(Domain.id)).where(Domain.service_id == Service.service_id).scalar_subquery().label("domains"),
    select(Job.heading_to)
    .where(Job.service_id == Service.service_id, Job.state.in_(UNFINISHED), Job.heading_to.is_not(None))
    .order_by(Job.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("heading_to"),
    _newest_job().label("newest_job_id"),
    _newest_job(Job.kind.in_(LIFECYCLE_KINDS)).label("lifecycle_job_id"),
).where(Service.service_id == SERVICE_ID)
JOBS = select(*Job.__table__.c).where(Job.id.in_(bindparam("job_ids", expanding=True)))
DOMAINS = select(Domain.domain).where(Domain.service_id == SERVICE_ID).order_by(Domain.id)
CERTIFICATES = select(*Certificate.__table__.c).where(Certificate.service_id == SERVICE_ID).order_by(Certificate.id)
DRIFT = select(*Drift.__table__.c).where(Drift.service_id == SERVICE_ID).order_by(Drift.id)


@dataclass(frozen=True)
class Status:
    """What /status shows of a service, as rows."""

    service: Any
    last_job: Any | None
    cleanup: Any | None  # the clean-up of a cut-off creation, unless a newer creation or deletion has taken over
    domains: list[str]
    certificates: list[Any]
    drift: list[Any]


def status(connection: Connection, service_id: int) -> Status | None:
    params = {"service_id": service_id}
    service = connection.execute(SERVICE, params).first()
    if service is None:
        return None
    ids = (service.last_job_id, service.newest_job_id, service.lifecycle_job_id)
    wanted = sorted({job_id for job_id in ids if job_id is not None})
    jobs = {row.id: row for row in connection.execute(JOBS, {"job_ids": wanted})} if wanted else {}
    lifecycle = jobs.get(service.lifecycle_job_id)
    return Status(
        service=service,
        # the job recorded as the site's last, or its newest when none is (or the one recorded is gone)
        last_job=jobs.get(service.last_job_id) or jobs.get(service.newest_job_id),
        cleanup=lifecycle if lifecycle is not None and lifecycle.kind == "cleanup" else None,
        domains=list(connection.execute(DOMAINS, params).scalars()),
        certificates=list(connection.execute(CERTIFICATES, params)),
        drift=list(connection.execute(DRIFT, params)),
    )

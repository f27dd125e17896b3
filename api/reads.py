"""`GET /status` as prebuilt statements of plain rows: the read Paymenter makes on every client-area page.

Through the ORM, a status cost six statements, each with the ORM's per-statement work (identity map, loaders, lazy
loads of the service's domains, certificates and drift): about six times the CPU of an empty Flask request
(bench/README.md). Here the statements are built once, at import, with bound parameters, so SQLAlchemy finds their
compiled form by a memoized cache key, and they run on a Core connection: rows, no objects.

Most sites have no custom domain and no drift, so one statement answers for them: the service with its counts, its
job, the clean-up of a cut-off creation and its subdomain's certificate, joined. The domains (with their
certificates) and the drift are read only when the counts say there are some. One statement is also one snapshot,
so it needs no transaction. The answer is the same (tests/test_api_contract.py); the presenters read rows as they
read objects, by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, bindparam, func, or_, select

from api.models import UNFINISHED, Backup, Certificate, Domain, Drift, Job, Service, ServiceState

SERVICE_ID = bindparam("service_id", type_=BigInteger)
# Jobs whose newest says whether a cut-off creation's clean-up is the site's last word (presenters.leftovers_view).
LIFECYCLE_KINDS = ("create", "delete", "cleanup")

_SHOWN = Job.__table__.alias("shown_job")
_LIFECYCLE = Job.__table__.alias("lifecycle_job")
_OWN_CERTIFICATE = Certificate.__table__.alias("own_certificate")


def _one_of(column, values: tuple[str, ...]) -> Any:
    """`column IN values` as plain comparisons: an IN of bound values is expanded again for every execution."""
    return or_(*(column == value for value in values))


def _newest_job(*conditions) -> Any:
    return (
        select(Job.id)
        .where(Job.service_id == Service.service_id, *conditions)
        .order_by(Job.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _count(table) -> Any:
    return select(func.count(table.id)).where(table.service_id == Service.service_id).scalar_subquery()


def _prefixed(table, prefix: str, names: tuple[str, ...] | None = None) -> list:
    return [column.label(prefix + column.key) for column in table.c if names is None or column.key in names]


# what presenters.job_view and leftovers_view read of a job: not its sealed secrets, nor the worker's bookkeeping
JOB_SHOWN = (
    "id", "service_id", "kind", "params", "state", "heading_to", "attempts", "max_attempts", "created_at",
    "started_at", "finished_at", "progress_done", "progress_total", "rc", "stats", "failed_task", "failed_host",
    "message",
)  # fmt: skip
JOB_LIFECYCLE = ("id", "kind", "state", "message")


# the job recorded as the site's last, or its newest when none is (or the one recorded is gone)
_RECORDED_JOB = select(Job.id).where(Job.id == Service.last_job_id).scalar_subquery()
SERVICE = (
    select(
        *Service.__table__.c,
        _count(Backup).label("backups"),
        _count(Domain).label("domains"),
        _count(Drift).label("drifts"),
        select(Job.heading_to)
        .where(Job.service_id == Service.service_id, _one_of(Job.state, UNFINISHED), Job.heading_to.is_not(None))
        .order_by(Job.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("heading_to"),
        *_prefixed(_SHOWN, "shown_", JOB_SHOWN),
        *_prefixed(_LIFECYCLE, "lifecycle_", JOB_LIFECYCLE),
        *_prefixed(_OWN_CERTIFICATE, "certificate_"),
    )
    .select_from(
        Service.__table__.outerjoin(_SHOWN, _SHOWN.c.id == func.coalesce(_RECORDED_JOB, _newest_job()))
        .outerjoin(_LIFECYCLE, _LIFECYCLE.c.id == _newest_job(_one_of(Job.kind, LIFECYCLE_KINDS)))
        .outerjoin(
            _OWN_CERTIFICATE,
            and_(_OWN_CERTIFICATE.c.service_id == Service.service_id, _OWN_CERTIFICATE.c.name == Service.subdomain),
        )
    )
    .where(Service.service_id == SERVICE_ID)
)
# the custom domains in the order they were attached, each with its certificate's columns (None before one is asked)
DOMAINS = (
    select(Domain.domain, *_prefixed(Certificate.__table__, "certificate_"))
    .select_from(
        Domain.__table__.outerjoin(
            Certificate.__table__,
            and_(Certificate.service_id == Domain.service_id, Certificate.name == Domain.domain),
        )
    )
    .where(Domain.service_id == SERVICE_ID)
    .order_by(Domain.id)
)
DRIFT = select(*Drift.__table__.c).where(Drift.service_id == SERVICE_ID).order_by(Drift.id)


def _listing(table, columns: tuple) -> Any:
    """The service's plan and its rows of `table` (oldest first) in one statement: one row with the columns None when
    it has none, no row for a service that does not exist or is deleted."""
    return (
        select(Service.plan, *columns)
        .outerjoin(table, table.service_id == Service.service_id)
        .where(Service.service_id == SERVICE_ID, Service.state != ServiceState.DELETED)
        .order_by(table.id)
    )


# what getbak and getdomain show, the two reads Paymenter's Overview makes beside /status on every view
LISTINGS = {
    "backups": _listing(Backup, (Backup.name, Backup.state, Backup.created_at)),
    "domains": _listing(Domain, (Domain.domain, Domain.state, Domain.message, Domain.created_at)),
}


def listing(connection: Connection, service_id: int, key: str) -> tuple[str, list[Any]] | None:
    """The service's plan and its backups or domains (`key`); None for a service that does not exist or is deleted."""
    rows = connection.execute(LISTINGS[key], {"service_id": service_id}).all()
    if not rows:
        return None
    return rows[0].plan, [row for row in rows if row[1] is not None]


@dataclass(frozen=True)
class Status:
    """What /status shows of a service, as rows."""

    service: Any
    last_job: Any | None
    cleanup: Any | None  # the clean-up of a cut-off creation, unless a newer creation or deletion has taken over
    domains: list[str]
    certificates: dict[str, Any]  # by name: the subdomain's and the custom domains' that have one
    drift: list[Any]


def _part(row: dict, prefix: str) -> SimpleNamespace | None:
    """The columns of one joined table, by their names without the prefix; None when the join found no row."""
    if row[prefix + "id"] is None:
        return None
    return SimpleNamespace(**{key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)})


def status(connection: Connection, service_id: int) -> Status | None:
    params = {"service_id": service_id}
    found = connection.execute(SERVICE, params).mappings().first()
    if found is None:
        return None
    service = SimpleNamespace(**found)
    lifecycle = _part(found, "lifecycle_")
    own = _part(found, "certificate_")
    certificates = {own.name: own} if own is not None else {}
    domains: list[str] = []
    if found["domains"]:
        for row in connection.execute(DOMAINS, params).mappings():
            domains.append(row["domain"])
            certificate = _part(row, "certificate_")
            if certificate is not None:
                certificates[certificate.name] = certificate
    return Status(
        service=service,
        last_job=_part(found, "shown_"),
        cleanup=lifecycle if lifecycle is not None and lifecycle.kind == "cleanup" else None,
        domains=domains,
        certificates=certificates,
        drift=list(connection.execute(DRIFT, params)) if found["drifts"] else [],
    )

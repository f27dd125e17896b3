"""`GET /status`, getbak and getdomain as prebuilt statements of plain rows: the reads Paymenter makes on every
client-area page.

Through the ORM, a status cost six statements, each with the ORM's per-statement work (identity map, loaders, lazy
loads of the service's domains, certificates and drift): about six times the CPU of an empty Flask request
(bench/README.md). Here each statement is built once, at import, compiled once per database dialect and run on the
driver's cursor (api/prepared.py): rows, no objects, and none of SQLAlchemy's per-execution work.

A status is one statement unless the site has drift: the service with its counts, its job, the clean-up of a
cut-off creation and its subdomain's certificate, joined, with one row per custom domain and its certificate. One
statement is one snapshot, so it needs no transaction, and one round trip. The drift, which few sites have, is read
only when the count says there is some. The answer is the same (tests/test_api_contract.py); the presenters read rows
as they read objects, by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, func, or_, select

from api.models import UNFINISHED, Backup, Certificate, Domain, Drift, Job, Service, ServiceState
from api.prepared import Prepared, Reader

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
_CUSTOM = Domain.__table__.alias("custom")
_CUSTOM_CERTIFICATE = Certificate.__table__.alias("custom_certificate")
# One row per custom domain, in the order they were attached, each with its certificate's columns (None before one
# is asked); one row with the domain None for a site without any. The service's columns repeat on every row: a site
# has a few domains at most, and one statement is one snapshot and one round trip.
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
        _CUSTOM.c.domain.label("custom_domain"),
        *_prefixed(_CUSTOM_CERTIFICATE, "custom_certificate_"),
    )
    .select_from(
        Service.__table__.outerjoin(_SHOWN, _SHOWN.c.id == func.coalesce(_RECORDED_JOB, _newest_job()))
        .outerjoin(_LIFECYCLE, _LIFECYCLE.c.id == _newest_job(_one_of(Job.kind, LIFECYCLE_KINDS)))
        .outerjoin(
            _OWN_CERTIFICATE,
            and_(_OWN_CERTIFICATE.c.service_id == Service.service_id, _OWN_CERTIFICATE.c.name == Service.subdomain),
        )
        .outerjoin(_CUSTOM, _CUSTOM.c.service_id == Service.service_id)
        .outerjoin(
            _CUSTOM_CERTIFICATE,
            and_(
                _CUSTOM_CERTIFICATE.c.service_id == _CUSTOM.c.service_id, _CUSTOM_CERTIFICATE.c.name == _CUSTOM.c.domain
            ),
        )
    )
    .where(Service.service_id == SERVICE_ID)
    .order_by(_CUSTOM.c.id)
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


_LISTINGS = {key: Prepared(statement) for key, statement in LISTINGS.items()}


def listing(reader: Reader, service_id: int, key: str) -> tuple[str, list[Any]] | None:
    """The service's plan and its backups or domains (`key`); None for a service that does not exist or is deleted."""
    prepared = _LISTINGS[key]
    rows = prepared.rows(reader, service_id=service_id)
    if not rows:
        return None
    first = prepared.keys[1]
    return rows[0]["plan"], [SimpleNamespace(**row) for row in rows if row[first] is not None]


@dataclass(frozen=True)
class Status:
    """What /status shows of a service, as rows."""

    service: Any
    last_job: Any | None
    cleanup: Any | None  # the clean-up of a cut-off creation, unless a newer creation or deletion has taken over
    domains: list[str]
    certificates: dict[str, Any]  # by name: the subdomain's and the custom domains' that have one
    drift: list[Any]


_SERVICE = Prepared(SERVICE)
_DRIFT = Prepared(DRIFT)


def _prefixed_keys(keys: tuple[str, ...], prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple((key, key[len(prefix) :]) for key in keys if key.startswith(prefix))


# each joined table's columns in a row: (key in the row, name without the prefix)
_PARTS = {
    prefix: _prefixed_keys(_SERVICE.keys, prefix)
    for prefix in ("shown_", "lifecycle_", "certificate_", "custom_certificate_")
}


def _part(row: dict, prefix: str, keys: tuple[tuple[str, str], ...]) -> SimpleNamespace | None:
    """The columns of one joined table, by their names without the prefix; None when the join found no row."""
    if row[prefix + "id"] is None:
        return None
    return SimpleNamespace(**{name: row[key] for key, name in keys})


def status(reader: Reader, service_id: int) -> Status | None:
    rows = _SERVICE.rows(reader, service_id=service_id)
    if not rows:
        return None
    found = rows[0]
    service = SimpleNamespace(**found)
    lifecycle = _part(found, "lifecycle_", _PARTS["lifecycle_"])
    own = _part(found, "certificate_", _PARTS["certificate_"])
    certificates = {own.name: own} if own is not None else {}
    domains: list[str] = []
    for row in rows:
        if row["custom_domain"] is not None:
            domains.append(row["custom_domain"])
            certificate = _part(row, "custom_certificate_", _PARTS["custom_certificate_"])
            if certificate is not None:
                certificates[certificate.name] = certificate
    return Status(
        service=service,
        last_job=_part(found, "shown_", _PARTS["shown_"]),
        cleanup=lifecycle if lifecycle is not None and lifecycle.kind == "cleanup" else None,
        domains=domains,
        certificates=certificates,
        drift=[SimpleNamespace(**row) for row in _DRIFT.rows(reader, service_id=service_id)] if found["drifts"] else [],
    )

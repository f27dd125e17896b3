"""Certificates tried again: the ssl_retry jobs (docs/operations.md, "Certificates").

The worker queues one for every active site with a certificate in error whose `retry_at` has come
(PROXMOXWP_SSL_RETRY_SECONDS), POST /action/ssl-retry on demand. As with reconcile, a site with a job queued
or running is skipped, and each site is queued in a transaction that locks its row, so two workers scheduling
at once queue one job, not two.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from api.certificates import site_names
from api.jobs.kinds import queue_job
from api.models import UNFINISHED, Certificate, Job, Service, ServiceState
from api.presenters import aware
from api.reconcile import Outcome, enqueued, pending_job
from api.runtime import Runtime


def params(service: Service, names: list[str]) -> dict:
    """What ssl_retry.yml needs: the names, where their hosts forward to and the address they must resolve to."""
    return {"names": names, "ip": service.ip, "public_ip": service.public_ip}


def in_error(service: Service, due_at: datetime | None = None) -> list[str]:
    """The site's names whose certificate is in error (due by `due_at`, when given), in /status order."""
    failed = {
        row.name
        for row in service.certificates
        if row.state == "error" and (due_at is None or (row.retry_at is not None and aware(row.retry_at) <= due_at))
    }
    return [name for name in site_names(service) if name in failed]


def retryable(service: Service) -> bool:
    """An ssl_retry can do something only for an active site whose hosts serve (a disabled host gets no
    certificate) and whose container is known (the hosts forward to it)."""
    return service.state == ServiceState.ACTIVE and bool(service.proxy_enabled) and service.ip is not None


def _queue_one(runtime: Runtime, service_id: int, now: datetime) -> Outcome:
    def work(session: Session) -> Outcome:
        service = session.get(Service, service_id, with_for_update=True)
        if service is None or not retryable(service):
            return Outcome(service_id, skipped="the site is not active with its proxy hosts on")
        pending = pending_job(session, service_id)
        if pending is not None:
            return Outcome(service_id, skipped=f"job {pending} of the site is queued or running")
        names = in_error(service, due_at=now)
        if not names:
            return Outcome(service_id, skipped="no certificate of the site is due")
        job = queue_job(session, runtime.settings, service, "ssl_retry", params(service, names))
        return Outcome(service_id, job_id=job.id)

    return runtime.db.write(work)


def queue_ssl_retries(runtime: Runtime, now: datetime | None = None) -> list[Outcome]:
    """Queue an ssl_retry job for each active site with a certificate in error due by `now` (default: the
    present) and no job queued or running. The jobs are enqueued."""
    now = now or datetime.now(UTC)
    # one read finds the candidates; only those are locked and checked again one by one
    query = (
        select(Service.service_id)
        .where(
            Service.state == ServiceState.ACTIVE,
            exists().where(
                Certificate.service_id == Service.service_id,
                Certificate.state == "error",
                Certificate.retry_at <= now,
            ),
            ~exists().where(Job.service_id == Service.service_id, Job.state.in_(UNFINISHED)),
        )
        .order_by(Service.service_id)
    )
    with runtime.db.session() as session:
        service_ids = list(session.scalars(query))
    return enqueued(runtime, [_queue_one(runtime, service_id, now) for service_id in service_ids])

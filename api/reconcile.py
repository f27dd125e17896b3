"""Reconcile: the jobs that compare sites with Proxmox VE, NPM and DNS (docs/operations.md, "Reconcile").

The worker queues one for every live site on a schedule (PROXMOXWP_RECONCILE_SECONDS), `proxmoxwp reconcile`
on demand. A site with a job queued or running is skipped: that job is about to change it, and the record would
be compared with a site in the middle of a change. Each site is queued in a transaction that locks its row, so
two workers scheduling at once queue one job, not two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from api.jobs.kinds import queue_job
from api.models import UNFINISHED, Job, Service, ServiceState
from api.presenters import aware
from api.runtime import Runtime

# States of a site that exists on the cluster and is not in the middle of a creation or deletion.
LIVE = (ServiceState.ACTIVE, ServiceState.STOPPED, ServiceState.SUSPENDED, ServiceState.FAILED)


@dataclass(frozen=True)
class Outcome:
    service_id: int
    job_id: int | None = None
    skipped: str | None = None  # why no job was queued


def params(service: Service) -> dict:
    """What site_reconcile.yml compares the cluster and the edge with: the record."""
    return {
        "subdomain": service.subdomain,
        "public_ip": service.public_ip,
        "site_state": service.state,
        "proxy_enabled": bool(service.proxy_enabled),
        "ip": service.ip,
        # only domains whose proxy host was made: a pending or failed one has nothing to compare
        "domains": [domain.domain for domain in service.domains if domain.state in ("active", "ssl_error")],
        "recorded_backups": [backup.name for backup in service.backups if backup.state == "present"],
    }


def pending_job(session: Session, service_id: int) -> int | None:
    """The oldest job of the site that is queued or running: a background job steps aside for it."""
    return session.scalar(
        select(Job.id).where(Job.service_id == service_id, Job.state.in_(UNFINISHED)).order_by(Job.id).limit(1)
    )


def enqueued(runtime: Runtime, outcomes: list[Outcome]) -> list[Outcome]:
    """Hand the jobs the outcomes queued to the workers; the outcomes as they are."""
    for outcome in outcomes:
        if outcome.job_id is not None:
            runtime.queue.enqueue(outcome.job_id)
    return outcomes


def _queue_one(runtime: Runtime, service_id: int, due_seconds: float) -> Outcome:
    def work(session: Session) -> Outcome:
        service = session.get(Service, service_id, with_for_update=True)
        if service is None:
            return Outcome(service_id, skipped="there is no site for this service")
        if service.state not in LIVE or service.vmid is None:
            what = "was never created" if service.vmid is None and service.state in LIVE else f"is {service.state}"
            return Outcome(service_id, skipped=f"the site {what}")
        pending = pending_job(session, service_id)
        if pending is not None:
            return Outcome(service_id, skipped=f"job {pending} of the site is queued or running")
        if due_seconds > 0:
            # a site is first due one period after it was created: it was just made as recorded
            last = session.scalar(
                select(func.max(Job.created_at)).where(Job.service_id == service_id, Job.kind == "reconcile")
            )
            since = max(aware(moment) for moment in (last, service.created_at) if moment is not None)
            if since > datetime.now(UTC) - timedelta(seconds=due_seconds):
                return Outcome(service_id, skipped="checked or created less than PROXMOXWP_RECONCILE_SECONDS ago")
        job = queue_job(session, runtime.settings, service, "reconcile", params(service))
        return Outcome(service_id, job_id=job.id)

    return runtime.db.write(work)


def queue_reconciles(runtime: Runtime, service_ids: list[int] | None = None, due_seconds: float = 0) -> list[Outcome]:
    """Queue a reconcile job for each of `service_ids` (default: every live site), unless the site has a job
    queued or running, or (`due_seconds` > 0) was reconciled less than that long ago. The jobs are enqueued."""
    if service_ids is None:
        # Only the candidates are locked and checked again one by one: a pass over many sites that are not due
        # takes one read, not a write transaction per site.
        query = select(Service.service_id).where(Service.state.in_(LIVE), Service.vmid.is_not(None))
        if due_seconds > 0:
            cutoff = datetime.now(UTC) - timedelta(seconds=due_seconds)
            query = query.where(
                Service.created_at <= cutoff,
                ~exists().where(Job.service_id == Service.service_id, Job.state.in_(UNFINISHED)),
                ~exists().where(Job.service_id == Service.service_id, Job.kind == "reconcile", Job.created_at > cutoff),
            )
        with runtime.db.session() as session:
            service_ids = list(session.scalars(query.order_by(Service.service_id)))
    return enqueued(runtime, [_queue_one(runtime, service_id, due_seconds) for service_id in service_ids])

"""Turning rows into the answer shapes of api.schemas."""

from __future__ import annotations

from datetime import UTC, datetime

from api import validation
from api.inventory import Plan
from api.models import UNFINISHED, Backup, Certificate, Domain, Drift, Job, JobState, Service
from api.reads import Status


def aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def job_progress(job: Job) -> dict:
    """Tasks done and expected (docs/jobs.md, Progress). The worker stores them so (api/jobs/engine.py); rows stored
    before it did (a total from `--list-tasks`, or a success short of its total) are shown by the same rule: a
    success expected what it did, and a total the run has gone past is unknown."""
    done, total = job.progress_done, job.progress_total
    if job.state == JobState.SUCCEEDED:
        total = done
    elif total is not None and done > total:
        total = None
    return {"done": done, "total": total}


def job_view(job: Job) -> dict:
    started, finished = aware(job.started_at), aware(job.finished_at)
    return {
        "id": job.id,
        "service_id": job.service_id,
        "kind": job.kind,
        "params": job.params,
        "state": job.state,
        "heading_to": job.heading_to,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": aware(job.created_at).isoformat(),
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "duration_seconds": round((finished - started).total_seconds(), 3) if started and finished else None,
        "progress": job_progress(job),
        "rc": job.rc,
        "stats": job.stats,
        "failed_task": job.failed_task,
        "failed_host": job.failed_host,
        "message": job.message,
    }


def quota(limit: int, used: int) -> dict:
    return {"limit": limit, "used": used, "available": max(limit - used, 0)}


def domain_view(domain: Domain) -> dict:
    return {
        "domain": domain.domain,
        "domain_unicode": validation.unicode_domain(domain.domain),
        "state": domain.state,
        "message": domain.message,
        "created_at": aware(domain.created_at).isoformat(),
    }


def backup_view(backup: Backup) -> dict:
    return {"name": backup.name, "state": backup.state, "created_at": aware(backup.created_at).isoformat()}


def drift_view(drift: Drift) -> dict:
    return {
        "key": drift.key,
        "what": drift.what,
        "expected": drift.expected,
        "found": drift.found,
        "found_at": aware(drift.found_at).isoformat(),
    }


def certificate_view(name: str, row: Certificate | None) -> dict:
    """A name without a row has had no certificate asked for or checked yet (a domain being attached)."""
    retry_at = aware(row.retry_at) if row is not None else None
    checked_at = aware(row.checked_at) if row is not None else None
    return {
        "name": name,
        "name_unicode": validation.unicode_domain(name),
        "state": row.state if row is not None else "none",
        "message": row.message if row is not None else None,
        "attempts": row.attempts if row is not None else 0,
        "next_retry_at": retry_at.isoformat() if retry_at and row.state == "error" else None,
        "checked_at": checked_at.isoformat() if checked_at else None,
    }


def site_url(service: Service) -> str:
    return f"https://{service.subdomain}/"


def status_view(found: Status, plan: Plan | None) -> dict:
    """GET /status from the rows api/reads.py reads."""
    service = found.service
    certificates = found.certificates
    names = [service.subdomain, *found.domains]  # in the order of certificates.site_names
    return {
        "success": True,
        "service_id": service.service_id,
        "subdomain": service.subdomain,
        "site_url": site_url(service),
        "state": service.state,
        "heading_to": service.heading_to,
        "failure_reason": service.failure_reason,
        "plan": service.plan,
        "email": service.email,
        "vmid": service.vmid,
        "node": service.node,
        "ip": service.ip,
        "proxy_enabled": service.proxy_enabled,
        "quotas": {
            "backups": quota(plan.backups if plan else 0, service.backups),
            "domains": quota(plan.domains if plan else 0, service.domains),
        },
        "last_job": job_view(found.last_job) if found.last_job else None,
        "leftovers": leftovers_view(found.cleanup),
        "drift": [drift_view(drift) for drift in found.drift],
        "certificates": [certificate_view(name, certificates.get(name)) for name in names],
    }


def leftovers_view(cleanup: Job | None) -> dict | None:
    """What the clean-up after a cut-off creation says is left: nothing once it succeeded."""
    if cleanup is None or cleanup.state == JobState.SUCCEEDED:
        return None
    if cleanup.state in UNFINISHED:
        return {
            "state": "removing",
            "job_id": cleanup.id,
            "message": "The creation was cut off; what it may have left (its container, DNS record and proxy "
            "host) is being removed.",
        }
    return {
        "state": "left",
        "job_id": cleanup.id,
        "message": f"What the cut-off creation left could not be removed: {cleanup.message or 'the job failed'} "
        "create-site again reuses or replaces it; delete-site removes it.",
    }

"""The certificate of each of a site's names, as the jobs that ask for it find it, and when a failed one is tried
again (docs/operations.md, "Certificates").

A job that makes or retries proxy hosts reports `certificates: [{name, ssl, ssl_error}]` in its stats (`ssl` is
the module's active, error or none); older playbooks report `ssl`/`ssl_error` (the subdomain) or
`domain_state`/`domain_message` (the job's domain), which are read the same way when the list is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.config import Settings
from api.models import Certificate, Job, Service

STATES = ("active", "error", "none")
NO_REASON = "The certificate could not be issued; the job gave no reason."


def backoff(settings: Settings, attempts: int) -> timedelta | None:
    """How long after its `attempts`-th failure a certificate is tried again; None when nothing retries it."""
    if settings.ssl_retry_seconds <= 0:
        return None
    seconds = settings.ssl_retry_seconds * 2 ** min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(seconds, settings.ssl_retry_max_seconds))


def site_names(service: Service) -> list[str]:
    """The site's names in the order /status lists them: the subdomain, then each custom domain."""
    return [service.subdomain, *(domain.domain for domain in service.domains)]


def reported(service: Service, job: Job) -> list[dict]:
    """What the job found of each certificate it asked for or checked: [{name, ssl, ssl_error}]."""
    stats = job.stats or {}
    items = stats.get("certificates")
    if isinstance(items, list):
        found = [item for item in items if isinstance(item, dict) and item.get("name")]
        return [
            {
                "name": str(item["name"]).lower(),
                "ssl": str(item.get("ssl") or "none"),
                "ssl_error": item.get("ssl_error"),
            }
            for item in found
        ]
    if "ssl" in stats:
        return [{"name": service.subdomain, "ssl": str(stats["ssl"]), "ssl_error": stats.get("ssl_error")}]
    if "domain_state" in stats and job.params.get("domain"):
        ssl = "error" if stats["domain_state"] == "ssl_error" else "active"
        return [{"name": job.params["domain"], "ssl": ssl, "ssl_error": stats.get("domain_message")}]
    return []


def record(session: Session, service: Service, job: Job) -> None:
    """Upsert the certificates the job reports; a custom domain's state follows its certificate."""
    items = reported(service, job)
    if not items:
        return
    settings: Settings = session.info["settings"]  # put there by the engine's finish()
    now = datetime.now(UTC)
    rows = {
        row.name: row
        for row in session.scalars(select(Certificate).where(Certificate.service_id == service.service_id))
    }
    domains = {domain.domain: domain for domain in service.domains}
    for item in items:
        name = item["name"]
        if name != service.subdomain and name not in domains:
            continue  # no longer the site's (removed while the job ran)
        row = rows.get(name)
        if row is None:
            row = rows[name] = Certificate(service_id=service.service_id, name=name, attempts=0)
            session.add(row)
        row.state = item["ssl"] if item["ssl"] in STATES else "none"
        row.checked_at = now
        if row.state == "error":
            row.attempts = (row.attempts or 0) + 1
            row.message = str(item["ssl_error"] or "") or NO_REASON
            delay = backoff(settings, row.attempts)
            row.retry_at = now + delay if delay is not None else None
        else:
            row.attempts, row.message, row.retry_at = 0, None, None
        domain = domains.get(name)
        if domain is not None and domain.state in ("active", "ssl_error"):  # pending, removing, failed: their jobs'
            domain.state = "ssl_error" if row.state == "error" else "active"
            domain.message = row.message


def retry_failed(session: Session, service: Service, job: Job) -> None:
    """A retry whose run failed (NPM unreachable, ...) counts as a failed attempt of each certificate it was for,
    so the schedule backs off instead of trying every minute. A retry cancelled or skipped did not try."""
    if job.state != "failed" or job.started_at is None:
        return
    now = datetime.now(UTC)
    names = set(job.params.get("names") or [])
    settings: Settings = session.info["settings"]
    for row in session.scalars(select(Certificate).where(Certificate.service_id == service.service_id)):
        if row.name in names and row.state == "error":
            row.attempts = (row.attempts or 0) + 1
            row.checked_at = now
            delay = backoff(settings, row.attempts)
            row.retry_at = now + delay if delay is not None else None


def forget(session: Session, service: Service, name: str) -> None:
    """The name is no longer the site's: its certificate row goes."""
    session.execute(delete(Certificate).where(Certificate.service_id == service.service_id, Certificate.name == name))

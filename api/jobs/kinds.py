"""The playbook map: each API operation, the playbook that carries it out, and what its outcome does.

The variable contract of each playbook (what comes in as extra vars, what `set_stats` gives back) is
documented in docs/playbooks.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api import certificates
from api.models import Backup, Certificate, Domain, Drift, Job, JobState, Service, ServiceState
from api.pool import members as pool_members

# set_stats keys that update the service record; everything a playbook reports is kept in the job.
SERVICE_STATS = {"vmid": int, "node": str, "ip": str, "proxy_enabled": bool}

Outcome = Callable[[Session, Service, Job], None]


def sync_backups(session: Session, service: Service, job: Job) -> None:
    """Make the service's finished backups match what the playbook found on the cluster (`backups` in its stats).

    Playbooks that touch snapshots report every backup snapshot of the site, wherever it is held, so the
    database that getbak answers from follows the cluster after each job, including snapshots an operator
    took or removed by hand. Backups still being made or deleted by a queued job are left to that job.
    """
    names = (job.stats or {}).get("backups")
    if not isinstance(names, list):
        return
    present = set(map(str, names))
    rows = session.scalars(select(Backup).where(Backup.service_id == service.service_id)).all()
    for row in rows:
        if row.state == "present" and row.name not in present:
            session.delete(row)
    known = {row.name for row in rows}
    for name in sorted(present - known):
        session.add(Backup(service_id=service.service_id, name=name, state="present"))


def _nothing(_session: Session, _service: Service, _job: Job) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    name: str
    playbook: str
    timeout: int
    # State the service shows while this job runs (instead of its current one), if any.
    running_state: str | None = None
    on_success: Outcome = field(default=_nothing)
    on_failure: Outcome = field(default=_nothing)
    # False for a job whose outcome says nothing of the site's state (the clean-up after a cut-off creation).
    settles: bool = True
    # The kind queued when a run of this kind is cut off (worker killed, timeout, cancel) before its own undo.
    cut_off_undo: str | None = None
    # False for a background job (reconcile): /status keeps showing the customer's last operation as `last_job`,
    # and the job steps aside (cancelled before it runs) when another job of the site is queued behind it.
    shown: bool = True


def _login_set_up(_session: Session, service: Service, job: Job) -> None:
    """The site holds the login key the job gave it, when the run says it set the key up (a run that installs no
    WordPress, as on a cluster without containers to reach, does not)."""
    if (job.stats or {}).get("login_ready") is True and job.params.get("login_key_id"):
        service.login_key_id = job.params["login_key_id"]


def _login_maybe_lost(_session: Session, service: Service, job: Job) -> None:
    """A restored disk (a backup, or the installed state of a reset) may be older than the site's login key: the
    next login link sets it up again."""
    if job.kind == "rollback" or job.params.get("power_action") == "reset":
        service.login_key_id = None


def _created(session: Session, service: Service, job: Job) -> None:
    service.proxy_enabled = service.proxy_enabled if service.proxy_enabled is not None else True
    certificates.record(session, service, job)
    _login_set_up(session, service, job)
    pool_members.release(session, service.service_id)


def _not_created(session: Session, service: Service, _job: Job) -> None:
    """A member of the warm pool the creation took is gone with the run's undo, or is the clean-up's to remove."""
    pool_members.release(session, service.service_id)


def _deleted(session: Session, service: Service, _job: Job) -> None:
    for table in (Domain, Backup, Drift, Certificate):
        session.execute(delete(table).where(table.service_id == service.service_id))
    service.deleted_at = datetime.now(UTC)
    service.vmid = service.node = service.ip = None


def _cleaned_up(_session: Session, service: Service, _job: Job) -> None:
    service.vmid = service.node = service.ip = None


def _backup(session: Session, job: Job) -> Backup | None:
    return session.query(Backup).filter_by(service_id=job.service_id, name=job.params.get("bak")).one_or_none()


def _domain(session: Session, job: Job) -> Domain | None:
    return session.query(Domain).filter_by(service_id=job.service_id, domain=job.params.get("domain")).one_or_none()


def _backup_made(session: Session, _service: Service, job: Job) -> None:
    if backup := _backup(session, job):
        backup.state = "present"


def _backup_not_made(session: Session, _service: Service, job: Job) -> None:
    if backup := _backup(session, job):
        session.delete(backup)


def _backup_deleted(session: Session, _service: Service, job: Job) -> None:
    if backup := _backup(session, job):
        session.delete(backup)


def _backup_kept(session: Session, _service: Service, job: Job) -> None:
    if backup := _backup(session, job):
        backup.state = "present"


def _upgraded(_session: Session, service: Service, job: Job) -> None:
    service.plan = job.params["plan"]


def _domain_added(session: Session, service: Service, job: Job) -> None:
    if domain := _domain(session, job):
        domain.state = str((job.stats or {}).get("domain_state") or "active")
        domain.message = str((job.stats or {}).get("domain_message") or "") or None
    certificates.record(session, service, job)


def _domain_failed(session: Session, _service: Service, job: Job) -> None:
    if domain := _domain(session, job):
        domain.state = "failed"
        domain.message = job.message


def _domain_removed(session: Session, service: Service, job: Job) -> None:
    if domain := _domain(session, job):
        session.delete(domain)
    certificates.forget(session, service, job.params.get("domain"))


def _toggled(_session: Session, service: Service, job: Job) -> None:
    service.proxy_enabled = bool(job.params["proxy_enabled"])


def record_drift(session: Session, service: Service, job: Job) -> None:
    """Make the service's drift the list the reconcile run reports (`drift` in its stats). An item found again the
    same way (same key, same finding) keeps the time it was first found; an item no longer reported is gone."""
    items = (job.stats or {}).get("drift")
    if not isinstance(items, list):
        return
    found_now = {}
    for item in items:
        if isinstance(item, dict) and item.get("key"):
            found_now[str(item["key"])[:300]] = {k: str(item.get(k) or "") for k in ("what", "expected", "found")}
    known = {row.key: row for row in session.scalars(select(Drift).where(Drift.service_id == service.service_id))}
    for key, row in known.items():
        if key not in found_now or row.found != found_now[key]["found"]:
            session.delete(row)
    session.flush()  # a finding that changed is a new row with a new found_at; the old one must be gone first
    for key, item in found_now.items():
        row = known.get(key)
        if row is not None and row.found == item["found"]:
            row.what, row.expected = item["what"], item["expected"]
        else:
            session.add(Drift(service_id=service.service_id, key=key, **item))


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "create",
            "site_create.yml",
            1800,
            ServiceState.PROVISIONING,
            _created,
            on_failure=_not_created,
            cut_off_undo="cleanup",
        ),
        Kind("delete", "site_delete.yml", 900, ServiceState.DELETING, _deleted),
        # What a creation that was cut off may have left: its container, DNS record and proxy host. The site never
        # came up, so everything of the service goes; the service stays failed, with the creation's reason.
        Kind("cleanup", "site_delete.yml", 900, on_success=_cleaned_up, settles=False),
        Kind("suspend", "site_suspend.yml", 600),
        Kind("unsuspend", "site_unsuspend.yml", 600),
        Kind("upgrade", "site_upgrade.yml", 1200, on_success=_upgraded),
        Kind("power", "site_power.yml", 900, on_success=_login_maybe_lost),
        Kind("mkbak", "backup_create.yml", 900, on_success=_backup_made, on_failure=_backup_not_made),
        Kind("delbak", "backup_delete.yml", 900, on_success=_backup_deleted, on_failure=_backup_kept),
        Kind("rollback", "backup_rollback.yml", 1800, on_success=_login_maybe_lost),
        Kind("domain_add", "domain_add.yml", 900, on_success=_domain_added, on_failure=_domain_failed),
        Kind("domain_remove", "domain_remove.yml", 600, on_success=_domain_removed, on_failure=_domain_failed),
        Kind("toggle", "proxy_toggle.yml", 300, on_success=_toggled),
        # One-click login set up on a site that does not hold its key (POST /action/login-link), and a new password
        # for the site's administrator (POST /action/admin-password), which sets the key up too. Neither changes
        # the site's state; the password is the customer's own doing and shows as the site's last job.
        Kind("login_setup", "site_login.yml", 600, on_success=_login_set_up, settles=False, shown=False),
        Kind("admin_password", "site_login.yml", 600, on_success=_login_set_up, settles=False),
        # Compares the site with Proxmox VE, NPM and DNS, repairs what is safe and reports the rest as drift
        # (docs/operations.md, "Reconcile"). It never changes the service's state.
        Kind("reconcile", "site_reconcile.yml", 600, on_success=record_drift, settles=False, shown=False),
        # Asks again for the certificates of `names` that could not be issued (on a schedule with backoff, or
        # POST /action/ssl-retry). Like a reconcile it never changes the service's state and is not its last job.
        Kind(
            "ssl_retry",
            "ssl_retry.yml",
            600,
            on_success=certificates.record,
            on_failure=certificates.retry_failed,
            settles=False,
            shown=False,
        ),
    )
}


def queue_job(
    session: Session,
    settings,
    service: Service,
    kind: str,
    params: dict,
    heading_to: str | None = None,
    sealed: bytes | None = None,
) -> Job:
    """A new queued job of `kind` for the service, with the configured attempts and the kind's timeout."""
    session.flush()  # the service row first: the job refers to it
    job = Job(
        service_id=service.service_id,
        kind=kind,
        params={"service_id": service.service_id, **params},
        heading_to=heading_to,
        sealed_secrets=sealed,
        state=JobState.QUEUED,
        max_attempts=settings.job_max_attempts,
        timeout_seconds=settings.job_timeouts.get(kind, KINDS[kind].timeout),
    )
    session.add(job)
    session.flush()
    return job

"""What each API request does to the database: state rules, quotas, idempotency, and the job it queues.

Every change runs in one write transaction that locks the service row (SQLite: the database write lock),
so concurrent requests for one service are serialised. The job's outcome, not the request, moves the state.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import domain_dns, login_links, presenters, reads, ssl_retry, validation
from api.certificates import site_names
from api.errors import ApiError, bad_request, conflict, not_found, unprocessable
from api.jobs.kinds import KINDS, queue_job
from api.jobs.secrets import forget_sealed
from api.models import UNFINISHED, Backup, Domain, Job, JobState, Service, ServiceState
from api.pool import members as pool_members
from api.prepared import Reader
from api.runtime import Runtime
from api.schemas import (
    BackupRequest,
    ChangeRequest,
    CreateSite,
    DomainRequest,
    Power,
    ServiceRef,
    SslRetryRequest,
    Upgrade,
)
from api.waiting import TimedOut, wait_for

# jobs.id is a 32-bit integer column (PostgreSQL `integer`): a larger id cannot exist and must not be queried.
JOB_ID_MAX = 2**31 - 1

POWER_HEADING = {
    "start": ServiceState.ACTIVE,
    "restart": ServiceState.ACTIVE,
    "reset": ServiceState.ACTIVE,
    "stop": ServiceState.STOPPED,
}


class _PlaceFirst(Exception):
    """create-site needs a new job, whose node must be chosen before the transaction that makes it."""


@dataclass
class Answer:
    body: dict
    job_id: int | None = None
    extra: dict = field(default_factory=dict)


class Lifecycle:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # ---- helpers -----------------------------------------------------------------------------------

    def _plan(self, name: str):
        plan = self.runtime.inventory.plans.get(name)
        if plan is None:
            known = ", ".join(sorted(self.runtime.inventory.plans))
            raise bad_request("unknown_plan", f"Plan '{name}' does not exist; known plans: {known}.")
        return plan

    @staticmethod
    def _locked(session: Session, service_id: int) -> Service | None:
        return session.get(Service, service_id, with_for_update=True)

    @staticmethod
    def _unfinished(session: Session, service_id: int) -> list[Job]:
        return list(
            session.scalars(select(Job).where(Job.service_id == service_id, Job.state.in_(UNFINISHED)).order_by(Job.id))
        )

    @staticmethod
    def _heading_to_query(service_id):
        return (
            select(Job.heading_to)
            .where(Job.service_id == service_id, Job.state.in_(UNFINISHED), Job.heading_to.is_not(None))
            .order_by(Job.id.desc())
            .limit(1)
        )

    def heading_to(self, session: Session, service: Service) -> str | None:
        """The state the service will be in once its unfinished jobs succeed (None if none changes it)."""
        return session.scalar(self._heading_to_query(service.service_id))

    def _projected(self, session: Session, service: Service) -> str:
        return self.heading_to(session, service) or service.state

    def _existing(self, session: Session, service_id: int, lock: bool = True) -> Service:
        service = self._locked(session, service_id) if lock else session.get(Service, service_id)
        if service is None or service.state == ServiceState.DELETED:
            raise not_found("unknown_service", f"There is no site for service {service_id}.")
        return service

    def _for_customer(self, session: Session, service_id: int, lock: bool = True) -> Service:
        """A service on which the customer may act: it exists, is not suspended, created or deleted."""
        service = self._existing(session, service_id, lock)
        projected = self._projected(session, service)
        if projected in (ServiceState.DELETING, ServiceState.DELETED):
            raise conflict("deleting", "This site is being deleted.")
        if projected == ServiceState.SUSPENDED:
            raise conflict("suspended", "This site is suspended; actions are not available.")
        if service.state == ServiceState.PROVISIONING:
            raise conflict("provisioning", "This site is still being created; try again in a moment.")
        if self._creation_failed(session, service):
            raise conflict("not_created", "This site could not be created; it will be available once it is.")
        return service

    def _for_billing(self, session: Session, service_id: int) -> Service:
        service = self._existing(session, service_id)
        if self._projected(session, service) in (ServiceState.DELETING, ServiceState.DELETED):
            raise conflict("deleting", "This site is being deleted.")
        return service

    def _job(self, session: Session, service: Service, kind: str, params: dict, **options) -> Job:
        """queue_job with this API's settings; options: heading_to, sealed."""
        return queue_job(session, self.runtime.settings, service, kind, params, **options)

    def _accepted(self, session: Session, service: Service, job: Job | None, **extra) -> Answer:
        body = {
            "success": True,
            "service_id": service.service_id,
            "state": service.state,
            "heading_to": self.heading_to(session, service),
            "job_id": job.id if job else None,
            **extra,
        }
        return Answer(body, job.id if job and job.state == JobState.QUEUED else None)

    # ---- site ------------------------------------------------------------------------------------------

    def create_site(self, data: CreateSite) -> Answer:
        plan = self._plan(data.plan)
        try:
            return self._create_site(data, node=None, place=self.runtime.placer.places)
        except _PlaceFirst:
            # Read the cluster outside the transaction, then make the site there; a 503 leaves nothing made.
            return self._create_site(data, node=self.runtime.placer.node_for(plan), place=False)

    def _create_site(self, data: CreateSite, node: str | None, place: bool) -> Answer:
        """create-site's transaction; with `place`, it stops (_PlaceFirst) where a new job would need a node."""
        inventory = self.runtime.inventory

        def work(session: Session) -> Answer:
            service = self._locked(session, data.service_id)
            password = None
            if service is None:
                service = Service(service_id=data.service_id, subdomain=inventory.subdomain(data.service_id))
                session.add(service)
            elif service.state != ServiceState.DELETED:
                pending = [job for job in self._unfinished(session, service.service_id) if job.kind == "create"]
                if pending:
                    # Only the same request gets the pending job and its password: another one would be told its
                    # settings were taken while the site is made with the first request's.
                    asked = pending[0].params
                    if (asked.get("email"), asked.get("plan"), asked.get("public_ip")) != (
                        data.email,
                        data.plan,
                        data.public_ip,
                    ):
                        raise conflict(
                            "already_exists",
                            f"Service {data.service_id} already has a site being created with other settings.",
                        )
                    password = self.runtime.secret_box.open(pending[0].sealed_secrets).get("admin_password")
                    return self._site_answer(session, service, pending[0], password)
                if not self._creation_failed(session, service):
                    if (service.email, service.public_ip) != (data.email, data.public_ip):
                        raise conflict(
                            "already_exists",
                            f"Service {data.service_id} already has a site with other settings.",
                        )
                    return self._site_answer(session, service, self._subdomain_retry(session, service), None)
            # a new site, a deleted one made again, or a creation that failed and is tried again
            if place:
                raise _PlaceFirst
            service.email, service.plan, service.public_ip = data.email, data.plan, data.public_ip
            if service.state in (None, ServiceState.DELETED) or not service.admin_user:
                # chosen once per site: a failed creation tried again may find WordPress installed with it
                service.admin_user = inventory.naming.new_admin_user()
            service.state = ServiceState.PROVISIONING
            service.settled_state, service.failure_reason, service.deleted_at = None, None, None
            service.proxy_enabled = True
            password = secrets.token_urlsafe(18)
            key = login_links.site_key(self.runtime.secret_box, service)
            # a member of the warm pool on the chosen node, if one is ready: the site takes it over (docs/pool.md)
            member = pool_members.claim(
                session, inventory.pool, self.runtime.pool_image, inventory.plans[data.plan], node, service.service_id
            )
            site_node = member.node if member is not None else node
            service.node = site_node
            job = self._job(
                session,
                service,
                "create",
                {
                    "email": data.email,
                    "plan": data.plan,
                    "public_ip": data.public_ip,
                    "subdomain": service.subdomain,
                    "admin_user": service.admin_user,
                    "login_key_id": login_links.key_id(key),
                    **({"node": site_node} if site_node else {}),
                    **({"pool_vmid": member.vmid} if member else {}),
                },
                heading_to=ServiceState.ACTIVE,
                sealed=self.runtime.secret_box.seal({"admin_password": password, "login_key": key.hex()}),
            )
            return self._site_answer(session, service, job, password)

        return self.runtime.db.write(work)

    def _subdomain_retry(self, session: Session, service: Service) -> Job | None:
        """create-site again of a site served without its certificate asks for it again: the ssl_retry job (the
        pending one, if a retry is queued or running), or None when there is nothing to retry."""
        subdomain = service.subdomain
        if not ssl_retry.retryable(service) or subdomain not in ssl_retry.in_error(service):
            return None
        for job in self._unfinished(session, service.service_id):
            if job.kind == "ssl_retry" and subdomain in job.params.get("names", []):
                return job
        return self._job(session, service, "ssl_retry", ssl_retry.params(service, [subdomain]))

    @staticmethod
    def _creation_failed(session: Session, service: Service) -> bool:
        """The site never came up: it is failed and its newest create job did not succeed."""
        if service.state != ServiceState.FAILED:
            return False
        last_create = session.scalar(
            select(Job.state)
            .where(Job.service_id == service.service_id, Job.kind == "create")
            .order_by(Job.id.desc())
            .limit(1)
        )
        return last_create != JobState.SUCCEEDED

    def _site_answer(self, session: Session, service: Service, job: Job | None, password: str | None) -> Answer:
        url = presenters.site_url(service)
        return self._accepted(
            session,
            service,
            job,
            subdomain=service.subdomain,
            site_url=url,
            admin_url=url + "wp-admin/",
            admin_user=service.admin_user,
            admin_password=password,
        )

    def delete_site(self, data: ChangeRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._locked(session, data.service_id)
            if service is None:
                return Answer(
                    {
                        "success": True,
                        "service_id": data.service_id,
                        "state": ServiceState.DELETED,
                        "heading_to": None,
                        "job_id": None,
                    }
                )
            if service.state == ServiceState.DELETED:
                return self._accepted(session, service, None)
            unfinished = self._unfinished(session, service.service_id)
            pending = [job for job in unfinished if job.kind == "delete"]
            if pending:
                return self._accepted(session, service, pending[0])
            for job in unfinished:
                if job.state == JobState.QUEUED:
                    self._cancel_queued(session, service, job, "Cancelled: the site is being deleted.")
            domains = [domain.domain for domain in service.domains]
            job = self._job(
                session,
                service,
                "delete",
                {"subdomain": service.subdomain, "domains": domains},
                heading_to=ServiceState.DELETED,
            )
            return self._accepted(session, service, job)

        return self.runtime.db.write(work)

    @staticmethod
    def _cancel_queued(session: Session, service: Service, job: Job, message: str) -> None:
        job.state = JobState.CANCELLED
        job.message = message
        job.finished_at = datetime.now(UTC)
        forget_sealed(session, job)
        KINDS[job.kind].on_failure(session, service, job)

    def suspend_site(self, data: ChangeRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_billing(session, data.service_id)
            if self._projected(session, service) == ServiceState.SUSPENDED:
                return self._accepted(session, service, None)
            job = self._job(session, service, "suspend", {}, heading_to=ServiceState.SUSPENDED)
            return self._accepted(session, service, job)

        return self.runtime.db.write(work)

    def unsuspend_site(self, data: ChangeRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_billing(session, data.service_id)
            if self._projected(session, service) != ServiceState.SUSPENDED:
                return self._accepted(session, service, None)
            job = self._job(session, service, "unsuspend", {}, heading_to=ServiceState.ACTIVE)
            return self._accepted(session, service, job)

        return self.runtime.db.write(work)

    def upgrade(self, data: Upgrade) -> Answer:
        new_plan = self._plan(data.plan)

        def work(session: Session) -> Answer:
            service = self._for_billing(session, data.service_id)
            pending = [job for job in self._unfinished(session, service.service_id) if job.kind == "upgrade"]
            target = pending[-1].params["plan"] if pending else service.plan
            if target == data.plan and service.state != ServiceState.FAILED:
                return self._accepted(session, service, pending[-1] if pending else None, plan=data.plan)
            current = self.runtime.inventory.plans.get(target)
            if current is not None and new_plan.disk_gb < current.disk_gb:
                # a container's disk cannot shrink; refuse before anything runs
                raise unprocessable(
                    "disk_too_small",
                    f"The plan {data.plan} has a {new_plan.disk_gb} GB disk, smaller than this site's "
                    f"{current.disk_gb} GB; a disk cannot shrink.",
                )
            job = self._job(session, service, "upgrade", {"plan": data.plan, "previous_plan": service.plan})
            return self._accepted(session, service, job, plan=data.plan)

        return self.runtime.db.write(work)

    def power(self, data: Power) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            params = {"power_action": data.action}
            if data.action == "reset":  # a reset may move the site: its proxy hosts follow
                params.update(subdomain=service.subdomain, domains=[d.domain for d in service.domains])
            if data.status is not None:
                params["paymenter_status"] = data.status
            job = self._job(session, service, "power", params, heading_to=POWER_HEADING[data.action])
            return self._accepted(session, service, job, action=data.action)

        return self.runtime.db.write(work)

    # ---- WordPress login ----------------------------------------------------------------------------

    def login_link(self, data: ChangeRequest) -> Answer:
        """A single-use link that logs the customer in as the site's administrator, answered at once; or, for a
        site that does not hold its login key yet, the job that gives it one (the link comes after it)."""

        def work(session: Session) -> Answer:
            service = self._running(session, data.service_id, "log in to WordPress")
            key = login_links.site_key(self.runtime.secret_box, service)
            if service.login_key_id != login_links.key_id(key):
                return self._accepted(session, service, self._login_setup(session, service, key), login_url=None)
            signed, expires = login_links.token(key, service.admin_user, self.runtime.settings.login_link_seconds)
            return self._accepted(
                session,
                service,
                None,
                login_url=login_links.link(presenters.site_url(service), signed),
                expires_at=expires.isoformat(),
                admin_user=service.admin_user,
            )

        return self.runtime.db.write(work)

    def _login_setup(self, session: Session, service: Service, key: bytes) -> Job:
        for job in self._unfinished(session, service.service_id):
            if job.kind in ("login_setup", "admin_password"):
                return job
        return self._job(
            session,
            service,
            "login_setup",
            self._login_params(service, key),
            sealed=self.runtime.secret_box.seal({"login_key": key.hex()}),
        )

    @staticmethod
    def _login_params(service: Service, key: bytes) -> dict:
        return {
            "subdomain": service.subdomain,
            "admin_user": service.admin_user,
            "login_key_id": login_links.key_id(key),
        }

    def admin_password(self, data: ChangeRequest) -> Answer:
        """A new password for the site's administrator, made here and answered once; the job sets it (and the
        login key) in the site, ending the sessions logged in with the old one."""

        def work(session: Session) -> Answer:
            service = self._running(session, data.service_id, "set a new password")
            key = login_links.site_key(self.runtime.secret_box, service)
            password = secrets.token_urlsafe(18)
            job = self._job(
                session,
                service,
                "admin_password",
                self._login_params(service, key),
                sealed=self.runtime.secret_box.seal({"admin_password": password, "login_key": key.hex()}),
            )
            return self._accepted(session, service, job, admin_user=service.admin_user, admin_password=password)

        return self.runtime.db.write(work)

    def _running(self, session: Session, service_id: int, what: str) -> Service:
        """A service the customer may act on whose site runs (or will, once its queued jobs end): WordPress must
        answer to log in or to take a password."""
        service = self._for_customer(session, service_id)
        projected = self._projected(session, service)
        if projected != ServiceState.ACTIVE:
            raise conflict("not_active", f"This site is not running (it is {projected}); start it first to {what}.")
        return service

    # ---- backups -------------------------------------------------------------------------------------

    def make_backup(self, data: ChangeRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            plan = self._plan(service.plan)
            if len(service.backups) >= plan.backups:
                raise unprocessable(
                    "backup_quota",
                    f"The plan allows {plan.backups} backups and all are used; delete one first.",
                )
            name = self._next_backup_name(session, service)
            session.add(Backup(service_id=service.service_id, name=name, state="pending"))
            job = self._job(session, service, "mkbak", {"bak": name})
            return self._accepted(session, service, job, bak=name)

        return self.runtime.db.write(work)

    @staticmethod
    def _next_backup_name(session: Session, service: Service) -> str:
        prefix = "BAK" + datetime.now(UTC).strftime("%d%m%Y") + "-"
        names = session.scalars(
            select(Backup.name).where(Backup.service_id == service.service_id, Backup.name.startswith(prefix))
        ).all()
        numbers = [int(m.group(1)) for n in names if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", n))]
        return f"{prefix}{max(numbers, default=0) + 1}"

    def _backup(self, session: Session, service: Service, name: str) -> Backup:
        backup = session.scalar(select(Backup).where(Backup.service_id == service.service_id, Backup.name == name))
        if backup is None:
            raise not_found("unknown_backup", f"This site has no backup named {name}.")
        return backup

    def delete_backup(self, data: BackupRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            backup = self._backup(session, service, data.bak)
            if backup.state == "deleting":
                return self._accepted(
                    session, service, self._pending_job(session, service, "delbak", data.bak), bak=data.bak
                )
            if backup.state != "present":
                raise conflict("backup_busy", f"Backup {data.bak} is still being made.")
            backup.state = "deleting"
            job = self._job(session, service, "delbak", {"bak": data.bak})
            return self._accepted(session, service, job, bak=data.bak)

        return self.runtime.db.write(work)

    def rollback(self, data: BackupRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            backup = self._backup(session, service, data.bak)
            if backup.state != "present":
                raise conflict("backup_busy", f"Backup {data.bak} is not available ({backup.state}).")
            # a restore by clone moves the site: its proxy hosts are pointed at the new container
            params = {"bak": data.bak, "subdomain": service.subdomain, "domains": [d.domain for d in service.domains]}
            job = self._job(session, service, "rollback", params, heading_to=ServiceState.ACTIVE)
            return self._accepted(session, service, job, bak=data.bak)

        return self.runtime.db.write(work)

    def _pending_job(self, session: Session, service: Service, kind: str, key: str) -> Job | None:
        for job in reversed(self._unfinished(session, service.service_id)):
            if job.kind == kind and key in job.params.values():
                return job
        return None

    def backups(self, data: ServiceRef) -> dict:
        return self._listing(data.service_id, "backups", presenters.backup_view)

    def _listing(self, service_id: int, key: str, view) -> dict:
        """The answer of getbak or getdomain: the service's backups or domains (`key`, oldest first, shown by `view`)
        and the plan's quota of the same name, from one prebuilt statement of rows (api/reads.py). 404 for a service
        that does not exist or is deleted."""

        def answer(reader: Reader) -> dict:
            found = reads.listing(reader, service_id, key)
            if found is None:
                raise not_found("unknown_service", f"There is no site for service {service_id}.")
            plan_name, listed = found
            plan = self.runtime.inventory.plans.get(plan_name)
            return {
                "success": True,
                "service_id": service_id,
                key: [view(row) for row in listed],
                "quota": presenters.quota(getattr(plan, key) if plan else 0, len(listed)),
            }

        return self.runtime.db.kept((key, service_id), answer)

    # ---- domains -------------------------------------------------------------------------------------

    def set_domain(self, data: DomainRequest) -> Answer:
        # The DNS check is network I/O: it runs between a read and the write transaction, so no lock is held while
        # resolvers answer. The write transaction makes every check again, as another request may have run since.
        with self.runtime.db.session() as session:
            service = self._for_customer(session, data.service_id, lock=False)
            domain = self._attachable(session, service, data.domain)
            verify = domain is None or domain.state == "failed"  # an attached domain answers its state unchecked
            subdomain, public_ip = service.subdomain, service.public_ip
        if verify:
            settings = self.runtime.settings
            domain_dns.check(data.domain, subdomain, public_ip, settings.dns_resolvers, settings.dns_timeout)

        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            domain = self._attachable(session, service, data.domain)
            if domain is not None and domain.state != "failed":
                return self._domain_answer(
                    session, service, domain, self._pending_job(session, service, "domain_add", data.domain)
                )
            if domain is None:
                domain = Domain(service_id=service.service_id, domain=data.domain)
                session.add(domain)
            domain.state, domain.message = "pending", None
            job = self._job(
                session,
                service,
                "domain_add",
                {"domain": data.domain, "subdomain": service.subdomain, "public_ip": service.public_ip},
            )
            return self._domain_answer(session, service, domain, job)

        return self.runtime.db.write(work)

    def _attachable(self, session: Session, service: Service, name: str) -> Domain | None:
        """The site's row for the domain, if any; refuses a domain of another site, or a new one over the quota."""
        domain = session.scalar(select(Domain).where(Domain.domain == name))
        if domain is not None and domain.service_id != service.service_id:
            raise conflict("domain_taken", f"The domain {name} is already attached to another site.")
        if domain is None:
            plan = self._plan(service.plan)
            if len(service.domains) >= plan.domains:
                raise unprocessable(
                    "domain_quota",
                    f"The plan allows {plan.domains} custom domains and all are used; remove one first.",
                )
        return domain

    def _domain_answer(self, session: Session, service: Service, domain: Domain, job: Job | None) -> Answer:
        return self._accepted(
            session,
            service,
            job,
            domain=domain.domain,
            domain_unicode=validation.unicode_domain(domain.domain),
            domain_state=domain.state,
        )

    def delete_domain(self, data: DomainRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            domain = session.scalar(
                select(Domain).where(Domain.domain == data.domain, Domain.service_id == service.service_id)
            )
            if domain is None:
                raise not_found("unknown_domain", f"The domain {data.domain} is not attached to this site.")
            if domain.state == "removing":
                return self._domain_answer(
                    session,
                    service,
                    domain,
                    self._pending_job(session, service, "domain_remove", data.domain),
                )
            domain.state = "removing"
            job = self._job(session, service, "domain_remove", {"domain": data.domain})
            return self._domain_answer(session, service, domain, job)

        return self.runtime.db.write(work)

    def domains(self, data: ServiceRef) -> dict:
        return self._listing(data.service_id, "domains", presenters.domain_view)

    # ---- proxy -----------------------------------------------------------------------------------------

    def toggle(self, data: ChangeRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            toggles = [job for job in self._unfinished(session, service.service_id) if job.kind == "toggle"]
            current = toggles[-1].params["proxy_enabled"] if toggles else service.proxy_enabled
            params = {
                "proxy_enabled": not current,
                "subdomain": service.subdomain,
                "domains": [domain.domain for domain in service.domains],
            }
            job = self._job(session, service, "toggle", params)
            return self._accepted(session, service, job, proxy_enabled=not current)

        return self.runtime.db.write(work)

    # ---- certificates ----------------------------------------------------------------------------------

    def retry_certificates(self, data: SslRetryRequest) -> Answer:
        def work(session: Session) -> Answer:
            service = self._for_customer(session, data.service_id)
            if self._projected(session, service) != ServiceState.ACTIVE:
                raise conflict(
                    "not_active",
                    f"Certificates are asked for only for an active site; this one is "
                    f"{self._projected(session, service)}.",
                )
            if not service.proxy_enabled:
                raise conflict(
                    "proxy_off", "The site's proxy hosts are switched off; switch them on to get certificates."
                )
            failed = ssl_retry.in_error(service)
            if data.domain is not None:
                if data.domain not in site_names(service):
                    raise not_found("unknown_domain", f"The domain {data.domain} is not a name of this site.")
                if data.domain not in failed:
                    raise conflict(
                        "no_certificate_error",
                        f"The certificate of {data.domain} is not in error; there is nothing to retry.",
                    )
                failed = [data.domain]
            elif not failed:
                raise conflict(
                    "no_certificate_error", "No certificate of this site is in error; there is nothing to retry."
                )
            for job in self._unfinished(session, service.service_id):
                if job.kind == "ssl_retry" and set(failed) <= set(job.params.get("names", [])):
                    return self._accepted(session, service, job, names=job.params["names"])
            job = self._job(session, service, "ssl_retry", ssl_retry.params(service, failed))
            return self._accepted(session, service, job, names=failed)

        return self.runtime.db.write(work)

    # ---- reads -----------------------------------------------------------------------------------------

    def status(self, data: ServiceRef) -> dict:
        def answer(reader: Reader) -> dict:
            found = reads.status(reader, data.service_id)
            if found is None:
                raise not_found("unknown_service", f"There is no site for service {data.service_id}.")
            return presenters.status_view(found, self.runtime.inventory.plans.get(found.service.plan))

        return self.runtime.db.kept(("status", data.service_id), answer)

    def job(self, job_id: int) -> dict:
        if not 1 <= job_id <= JOB_ID_MAX:
            raise not_found("unknown_job", f"There is no job {job_id}.")
        with self.runtime.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise not_found("unknown_job", f"There is no job {job_id}.")
            return presenters.job_view(job)

    def jobs(self, service_id: int, limit: int) -> list[dict]:
        with self.runtime.db.session() as session:
            if session.scalar(select(func.count()).select_from(Service).where(Service.service_id == service_id)) == 0:
                raise not_found("unknown_service", f"There is no site for service {service_id}.")
            jobs = session.scalars(
                select(Job).where(Job.service_id == service_id).order_by(Job.id.desc()).limit(limit)
            ).all()
            return [presenters.job_view(job) for job in jobs]

    # ---- after the transaction -------------------------------------------------------------------------

    def dispatch(self, answer: Answer, wait: int) -> tuple[dict, int]:
        """Queue the answer's new job, optionally wait for it, and give the body and HTTP status."""
        if answer.job_id is None and answer.body.get("job_id") is None:
            return answer.body, 200
        if answer.job_id is not None:
            self.runtime.queue.enqueue(answer.job_id)
        job_id = answer.body["job_id"]
        if wait <= 0:
            return answer.body, 202
        try:
            job = wait_for(
                lambda: (seen := self.job(job_id))["state"] not in UNFINISHED and seen,
                timeout=wait,
                what=f"job {job_id} to end",
            )
        except TimedOut:
            return answer.body, 202
        body = dict(answer.body, job=job)
        with self.runtime.db.session() as session:
            service = session.get(Service, answer.body["service_id"])
            body["state"] = service.state
            body["heading_to"] = self.heading_to(session, service)
        if job["state"] == JobState.SUCCEEDED:
            return body, 200
        reason = job["message"] or "The job failed."
        if job["failed_task"]:
            reason = f"Task '{job['failed_task']}' failed: {reason}"
        raise ApiError(503, "job_failed", reason, job_id=job_id)

"""Request and answer schemas. The same models validate requests and generate /openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from api import validation

# One validator (not a union) so that every wrong value gets the same readable sentence.
ServiceIdIn = Annotated[
    int | str,
    PlainValidator(validation.service_id),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": validation.SERVICE_ID_MAX},
                {"type": "string", "pattern": validation.SERVICE_ID_PATTERN},
            ],
            "description": "Paymenter's numeric service id (1 to 18 digits), as a number or a string.",
        }
    ),
]
# 600 is the most PROXMOXWP_MAX_WAIT_SECONDS may be; /openapi.json states the server's own limit.
Wait = Annotated[int, Strict(), Field(ge=0, le=600, description="Seconds to wait for the job to finish.")]
BackupName = Annotated[str, Strict(), Field(pattern=validation.BACKUP_PATTERN, max_length=40)]
PlanName = Annotated[str, Strict(), Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceRef(Request):
    service_id: ServiceIdIn


class ChangeRequest(ServiceRef):
    wait: Wait = 0

    @field_validator("wait")
    @classmethod
    def _bounded_wait(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_wait", 600)
        if value > limit:
            raise ValueError(f"must be at most {limit} seconds")
        return value


class CreateSite(ChangeRequest):
    email: Annotated[str, Strict(), Field(min_length=3, max_length=254), AfterValidator(validation.email)]
    plan: PlanName
    public_ip: Annotated[
        str,
        Strict(),
        Field(min_length=2, max_length=45, json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
        AfterValidator(validation.public_ip),
    ]

    @field_validator("public_ip")
    @classmethod
    def _allowed_ip(cls, value: str, info: ValidationInfo) -> str:
        if not validation.ip_allowed(value, (info.context or {}).get("public_ips", [])):
            raise ValueError("is not one of this platform's public addresses")
        return value


class Upgrade(ChangeRequest):
    plan: PlanName


class Power(ChangeRequest):
    action: Literal["start", "stop", "restart", "reset"]
    status: Annotated[str, Strict(), Field(max_length=32)] | None = Field(
        default=None, description="Paymenter's own status of the service, recorded with the job."
    )


class DomainRequest(ChangeRequest):
    domain: Annotated[str, Strict(), Field(min_length=1, max_length=253)]

    @field_validator("domain")
    @classmethod
    def _normalise(cls, value: str, info: ValidationInfo) -> str:
        name = validation.domain(value)
        zone = (info.context or {}).get("base_zone")
        if zone and validation.within_zone(name, zone):
            raise ValueError(f"cannot be inside this platform's own zone {zone}")
        return name


class BackupRequest(ChangeRequest):
    bak: BackupName


class SslRetryRequest(ChangeRequest):
    domain: Annotated[str, Strict(), Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description="The one name to retry: the subdomain or a custom domain. Default: every name whose "
        "certificate is in error.",
    )

    @field_validator("domain")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        return None if value is None else validation.domain(value)


# ---- answers -------------------------------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="One sentence a customer may read.")
    code: str = Field(description="Machine-readable reason.")
    job_id: int | None = None
    found: dict[str, list[str]] | None = Field(
        default=None,
        description="setdomain refused for its DNS: the records seen, {'A': [...], 'AAAA': [...], 'CNAME': [...]}.",
    )
    expected: dict[str, str] | None = Field(
        default=None,
        description="setdomain refused for its DNS: what would do, {'A' or 'AAAA': public IP, 'CNAME': subdomain}.",
    )


class JobView(BaseModel):
    id: int
    service_id: int
    kind: str
    params: dict
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    heading_to: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress: dict = Field(
        description="{'done': tasks that have run (a looped task once, an included file's tasks each time it is "
        "included), 'total': tasks expected: while the job runs, the number the last successful job of its kind "
        "ran, null when none has or this run has done more; never below done; once succeeded, equal to done}"
    )
    rc: int | None
    stats: dict | None
    failed_task: str | None
    failed_host: str | None
    message: str | None


class Accepted(BaseModel):
    success: Literal[True] = True
    service_id: int
    state: str = Field(description="The service's state now.")
    heading_to: str | None = Field(description="The state the service is heading to when the job succeeds.")
    job_id: int | None = Field(description="The job that carries out the change; null when nothing to do.")
    job: JobView | None = Field(default=None, description="The job, when the caller waited for it.")


class SiteCreated(Accepted):
    subdomain: str
    site_url: str
    admin_url: str
    admin_user: str
    admin_password: str | None = Field(
        description="Generated WordPress admin password; given until the job has used it, then null."
    )


class LoginLink(Accepted):
    login_url: str | None = Field(
        description="Opens wp-admin logged in as the site's administrator: once, within expires_at. Null while the "
        "site is being given its login key (job_id); ask again when that job has ended."
    )
    expires_at: datetime | None = Field(default=None, description="When the link stops working.")
    admin_user: str | None = Field(default=None, description="The administrator the link logs in as.")


class PasswordAccepted(Accepted):
    admin_user: str
    admin_password: str = Field(
        description="The administrator's new password, answered this once and never stored in the clear; it logs "
        "in once the job has ended, and the old one no longer does."
    )


class BackupAccepted(Accepted):
    bak: str


class DomainAccepted(Accepted):
    domain: str
    domain_unicode: str
    domain_state: str


class ToggleAccepted(Accepted):
    proxy_enabled: bool


class SslRetryAccepted(Accepted):
    names: list[str] = Field(description="The names whose certificates the job asks for again (A-labels).")


class Quota(BaseModel):
    limit: int
    used: int
    available: int


class DomainView(BaseModel):
    domain: str
    domain_unicode: str
    state: str
    message: str | None
    created_at: datetime


class DomainList(BaseModel):
    success: Literal[True] = True
    service_id: int
    domains: list[DomainView]
    quota: Quota


class BackupView(BaseModel):
    name: str
    state: str
    created_at: datetime


class BackupList(BaseModel):
    success: Literal[True] = True
    service_id: int
    backups: list[BackupView]
    quota: Quota


class Leftovers(BaseModel):
    state: Literal["removing", "left"] = Field(
        description="removing: a job is removing them; left: they could not be removed (see message)."
    )
    job_id: int = Field(description="The clean-up job.")
    message: str


class DriftView(BaseModel):
    key: str = Field(description="What was checked, e.g. `container`, `proxy_host:<name>`, `dns:<name>`.")
    what: str = Field(description="One sentence an operator may read.")
    expected: str = Field(description="What the record says.")
    found: str = Field(description="What the cluster or the edge has.")
    found_at: datetime = Field(description="When a reconcile first found it so; kept while it stays the same.")


class CertificateView(BaseModel):
    name: str = Field(description="The subdomain or a custom domain, as an A-label.")
    name_unicode: str
    state: Literal["active", "error", "none"] = Field(
        description="active: issued; error: it could not be issued (see message), the site is served over HTTP; "
        "none: none asked for (yet) or the edge issues none."
    )
    message: str | None = Field(description="With error: why the last attempt failed, as the job found it.")
    attempts: int = Field(description="Failed attempts in a row.")
    next_retry_at: datetime | None = Field(
        description="With error: when it is tried again on its own (later after each failure); null when not."
    )
    checked_at: datetime | None = Field(description="When a job last asked for or checked it; null: never.")


class StatusAnswer(BaseModel):
    success: Literal[True] = True
    service_id: int
    subdomain: str
    site_url: str
    state: str
    heading_to: str | None
    failure_reason: str | None
    plan: str
    email: str
    vmid: int | None
    node: str | None
    ip: str | None
    proxy_enabled: bool
    quotas: dict[str, Quota]
    last_job: JobView | None
    leftovers: Leftovers | None = Field(
        description="What a creation that was cut off (worker killed, timeout, cancel) may have left on the "
        "cluster and the edge, while it is being removed or when it could not be; null when nothing is left."
    )
    drift: list[DriftView] = Field(
        description="Where the cluster or the edge differs from the record, as the last reconcile found it and "
        "did not repair (docs/operations.md, Reconcile); empty when nothing differs or nothing was checked yet."
    )
    certificates: list[CertificateView] = Field(
        description="The certificate of each of the site's names: the subdomain first, then each custom domain."
    )


class JobAnswer(BaseModel):
    success: Literal[True] = True
    job: JobView


class JobListQuery(Request):
    service_id: ServiceIdIn
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class JobList(BaseModel):
    success: Literal[True] = True
    jobs: list[JobView]


class HealthQuery(Request):
    deep: bool = Field(
        default=False,
        description="Also check the database, the queue, the inventory and the SSH key (the cheap part of "
        "`proxmoxwp doctor`); needs the bearer token.",
    )


class DoctorCheck(BaseModel):
    id: str = Field(description="The check: `database`, `queue`, `inventory`, `ssh.key`.")
    ok: bool
    summary: str = Field(description="What was found.")
    fix: str = Field(description="How to fix it; empty when ok.")


class PoolStatus(BaseModel):
    size: int = Field(description="Members wanted per node (`proxmoxwp_pool.size`); 0: no pool.")
    plan: str | None = Field(description="The plan members are made at; null without a pool.")
    image: str | None = Field(description="The golden image members are made from; null without a pool.")
    paused: bool = Field(description="`proxmoxwp pool drain` emptied it and keeps it empty until `pool fill`.")
    ready: dict[str, int] = Field(description="Members waiting for a site, per node.")
    claimed: dict[str, int] = Field(description="Members given to sites being created, per node.")
    removing: dict[str, int] = Field(description="Members being removed, per node.")


class Health(BaseModel):
    success: Literal[True] = True
    status: Literal["ok", "failing"] = Field(
        default="ok", description="`failing` only with deep=1, when a check failed; the API itself still answers."
    )
    version: str
    waiters: int = Field(description="Requests waiting for their job (`wait`) now, in the process that answered.")
    max_waiters: int = Field(description="How many may wait at once in that process; more are refused (503).")
    checks: list[DoctorCheck] | None = Field(default=None, description="With deep=1: each check and what it found.")
    pool: PoolStatus | None = Field(default=None, description="With deep=1: the warm pool (docs/pool.md).")

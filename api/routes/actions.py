"""What the customer does from the client area: power, backups, custom domains, the proxy toggle, certificates, and
the login to WordPress."""

from flask import Blueprint, jsonify

from api import schemas
from api.openapi import route
from api.routes import lifecycle, reply

bp = Blueprint("actions", __name__, url_prefix="/action")

CHANGE_ERRORS = (400, 404, 409)
# WordPress must answer: to log in, or to take a new password.
NOT_RUNNING = {409: "State conflict, or the site is not running (not_active)"}


@route(
    bp,
    "/power",
    "POST",
    "Start, stop, restart, or reset to the installed state",
    {202: schemas.Accepted},
    body=schemas.Power,
    errors=CHANGE_ERRORS,
)
def power(data: schemas.Power):
    return reply(lifecycle().power(data), data)


@route(
    bp,
    "/login-link",
    "POST",
    "A single-use link that logs in to the site's WordPress",
    {200: schemas.LoginLink, 202: schemas.LoginLink},
    body=schemas.ChangeRequest,
    errors=CHANGE_ERRORS,
    error_notes=NOT_RUNNING,
)
def login_link(data: schemas.ChangeRequest):
    # 200 with the link. A site that does not hold its login key is given it by a job first: 202 with the job, or
    # with `wait`, the link once the job has ended within it.
    body, status = lifecycle().dispatch(lifecycle().login_link(data), data.wait)
    if status == 200 and body.get("login_url") is None:
        body, status = lifecycle().dispatch(lifecycle().login_link(data), 0)
    return jsonify(body), status


@route(
    bp,
    "/admin-password",
    "POST",
    "Set a new password for the site's WordPress administrator",
    {202: schemas.PasswordAccepted},
    body=schemas.ChangeRequest,
    errors=CHANGE_ERRORS,
    error_notes=NOT_RUNNING,
)
def admin_password(data: schemas.ChangeRequest):
    return reply(lifecycle().admin_password(data), data)


@route(bp, "/getbak", "GET", "List the site's backups", {200: schemas.BackupList}, query=schemas.ServiceRef)
def getbak(data: schemas.ServiceRef):
    return jsonify(lifecycle().backups(data))


@route(
    bp,
    "/mkbak",
    "POST",
    "Make a backup (snapshot)",
    {202: schemas.BackupAccepted},
    body=schemas.ChangeRequest,
    errors=(400, 404, 409, 422),
)
def mkbak(data: schemas.ChangeRequest):
    return reply(lifecycle().make_backup(data), data)


@route(
    bp,
    "/delbak",
    "POST",
    "Delete a backup",
    {200: schemas.BackupAccepted, 202: schemas.BackupAccepted},
    body=schemas.BackupRequest,
    errors=CHANGE_ERRORS,
)
def delbak(data: schemas.BackupRequest):
    return reply(lifecycle().delete_backup(data), data)


@route(
    bp,
    "/rollback",
    "POST",
    "Restore a backup",
    {202: schemas.BackupAccepted},
    body=schemas.BackupRequest,
    errors=CHANGE_ERRORS,
)
def rollback(data: schemas.BackupRequest):
    return reply(lifecycle().rollback(data), data)


@route(
    bp,
    "/getdomain",
    "GET",
    "List the site's custom domains",
    {200: schemas.DomainList},
    query=schemas.ServiceRef,
)
def getdomain(data: schemas.ServiceRef):
    return jsonify(lifecycle().domains(data))


@route(
    bp,
    "/setdomain",
    "POST",
    "Attach a custom domain",
    {200: schemas.DomainAccepted, 202: schemas.DomainAccepted},
    body=schemas.DomainRequest,
    errors=(400, 404, 409, 422),
    error_notes={
        422: "All custom domains of the plan are used (domain_quota), or the domain's DNS does not point to the "
        "site (dns_not_pointing, dns_no_records; `found` lists the A, AAAA and CNAME records seen, `expected` what "
        "would do)",
        503: "The DNS resolvers did not answer (dns_unavailable; try again later), the database is unreachable, "
        "or the awaited job failed",
    },
)
def setdomain(data: schemas.DomainRequest):
    return reply(lifecycle().set_domain(data), data)


@route(
    bp,
    "/deldomain",
    "POST",
    "Remove a custom domain",
    {200: schemas.DomainAccepted, 202: schemas.DomainAccepted},
    body=schemas.DomainRequest,
    errors=CHANGE_ERRORS,
)
def deldomain(data: schemas.DomainRequest):
    return reply(lifecycle().delete_domain(data), data)


@route(
    bp,
    "/toggle",
    "POST",
    "Switch the site's proxy hosts on or off",
    {202: schemas.ToggleAccepted},
    body=schemas.ChangeRequest,
    errors=CHANGE_ERRORS,
)
def toggle(data: schemas.ChangeRequest):
    return reply(lifecycle().toggle(data), data)


@route(
    bp,
    "/ssl-retry",
    "POST",
    "Ask again for certificates that could not be issued",
    {200: schemas.SslRetryAccepted, 202: schemas.SslRetryAccepted},
    body=schemas.SslRetryRequest,
    errors=CHANGE_ERRORS,
    error_notes={
        409: "State conflict, or the site is not active (not_active), its proxy hosts are off (proxy_off), or no "
        "certificate of it (of `domain`) is in error (no_certificate_error)",
    },
)
def ssl_retry(data: schemas.SslRetryRequest):
    return reply(lifecycle().retry_certificates(data), data)
